"""The report section of one filled T1w: draws its figures and returns its HTML."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bidsfill.report.figures import (
    _scale,
    box_around,
    cluster_flickers,
    find_clusters,
    lesion_mosaic,
    segmentation_flicker,
    uncertainty_figure,
)
from bidsfill.report.html import esc, figure, kv_table, table
from bidsfill.report.intensity import (
    fill_warning,
    histogram_figure,
    intensity_samples,
    intensity_table,
)
from bidsfill.report.midplane import midplane_figure, plane_caption, ras_affine
from bidsfill.report.render import Volume, load_ras, window
from bidsfill.segment.tissues import LABELS

__all__ = ["RunSection", "run_section"]

_CLASSES = tuple(LABELS)  # GM, WM, CSF: the BIDS dseg order


@dataclass
class RunSection:
    """HTML of one run plus what the subject-level summary needs from it."""

    anchor: str
    title: str
    html: str
    warnings: list[str] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)


def _find(files: dict[str, Path], marker: str) -> Path | None:
    return next((p for n, p in files.items() if marker in n), None)


def _summary_rows(summary: dict[str, Any]) -> list[tuple[str, Any]]:
    meta = summary["filled"]
    seg = summary.get("segmentation", {})
    rows = [
        ("Source T1w", summary.get("source")),
        ("Lesion mask", summary.get("mask_source")),
        ("Mask alignment", meta.get("MaskAlignment")),
        ("Mask dilation (voxels)", meta.get("Dilation")),
        ("Lesions", f"{meta.get('LesionCount')} ({meta.get('LesionVolumeML')} ml)"),
        ("Skull-stripped input", meta.get("SkullStripped")),
        ("Method", meta.get("Method")),
    ]
    if meta.get("ModelName"):
        rows += [
            ("Model", meta.get("ModelName")),
            ("Weights sha256", meta.get("ModelSHA256")),
            ("Sampler / steps", f"{meta.get('Sampler')} / {meta.get('Steps')}"),
            ("Samples averaged", meta.get("NSamples", 1)),
        ]
        if meta.get("EdgeTaperMM"):
            rows.append(("Correction taper at the mask edge (mm)", meta["EdgeTaperMM"]))
        if meta.get("ShiftVoxels"):
            rows.append(("Crop shift of the later samples (voxels)", meta["ShiftVoxels"]))
        if meta.get("Antithetic"):
            rows.append(("Antithetic starting noise", "every second sample"))
    if "ConditioningImages" in meta:  # a diffusion model: which contrasts it was given
        rows.append(
            ("Conditioning images", ", ".join(meta["ConditioningImages"]) or "none (T1w only)")
        )
    if meta.get("SyntheticConditioning"):
        rows.append(("Synthetic conditioning", _synthetic_sentence(meta["SyntheticConditioning"])))
    plane = meta.get("MidSagittalPlane")
    if isinstance(plane, dict):  # the symmetry channel's estimated plane
        rows.append(("Mid-sagittal plane", f"tilt {plane.get('TiltDegrees')}°, offset "
                     f"{plane.get('OffsetMM')} mm, normal {plane.get('Normal')}"))  # fmt: skip
    rows += [
        ("Device", meta.get("Device")),
        ("Fill time (s)", meta.get("FillSeconds")),
        ("Seed", meta.get("Seed")),
        ("Segmenter", seg.get("filled", {}).get("Segmenter") or _NOT_SEGMENTED),
    ]
    return rows


_NOT_SEGMENTED = "none (--skip-segmentation)"


def _synthetic_sentence(contrasts: list[str]) -> str:
    """Why a reader should know: a synthetic contrast is a stand-in, not a measurement."""
    return (f"The {' and '.join(contrasts)} that conditioned this fill was synthesised "
            "(cWDM, --synthesize) from the session's other contrasts, not acquired.")  # fmt: skip


def _cheap_labels(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Labels in place of a segmentation: 2 for the brightest Otsu class (WM), 1 elsewhere
    in the foreground; enough for the intensity window and the NAWM comparison."""
    from bidsfill.fill._lesions import estimate_wm_mask

    robust_max = float(np.percentile(image, 99.9)) if image.size else 0.0
    labels = (image > 1e-3 * robust_max).astype(np.int16)
    labels[estimate_wm_mask(image, mask)] = 2
    return labels


def _tissue_table(seg: dict[str, Any]) -> str:
    rows = []
    for c in _CLASSES:
        before = seg.get("orig", {}).get("TissueVolumesML", {}).get(c)
        after = seg.get("filled", {}).get("TissueVolumesML", {}).get(c)
        if isinstance(before, int | float) and isinstance(after, int | float):
            change = after - before
            pct = 100.0 * change / before if before else float("nan")
            rows.append((c, round(before, 2), round(after, 2), f"{change:+.2f}", f"{pct:+.2f} %"))
        else:
            rows.append((c, before, after, "n/a", "n/a"))
    return table(["Tissue", "Original (ml)", "Filled (ml)", "Change (ml)", "Change (%)"], rows)


def run_section(summary: dict[str, Any], output_dir: Path, fig_dir: Path) -> RunSection:
    """Draw the figures of one run into ``fig_dir`` and lay out its section."""
    files = {Path(f).name: Path(output_dir) / f for f in summary["files"]}
    filled_path = _find(files, "_desc-filled_T1w")
    mask_path = _find(files, "_label-lesion_mask")
    if filled_path is None or mask_path is None:
        raise FileNotFoundError("the run summary names no filled T1w or no lesion mask")
    stem = filled_path.name.split("_desc-filled_T1w")[0]
    anchor = stem.replace("sub-", "run-", 1)
    meta = summary["filled"]
    warnings = list(summary.get("mask", {}).get("Warnings") or [])
    if meta.get("SyntheticConditioning"):
        warnings.append(_synthetic_sentence(meta["SyntheticConditioning"]))

    filled = load_ras(filled_path)
    mask = load_ras(mask_path).data > 0
    source = Path(summary.get("bids_dir", "")) / summary.get("source", "")
    if summary.get("bids_dir") and source.is_file():
        original = load_ras(source)
    else:
        warnings.append(f"The original T1w ({summary.get('source')}) could not be read; the "
                        "figures show the filled image only.")  # fmt: skip
        original = filled
    dseg = {}
    for desc in ("orig", "filled"):
        path = _find(files, f"_desc-{desc}_dseg")
        dseg[desc] = load_ras(path, np.int16).data if path else np.zeros(mask.shape, np.int16)
    segmented = _find(files, "_desc-orig_dseg") is not None
    if not segmented:  # --skip-segmentation
        dseg["orig"] = _cheap_labels(original.data, mask)
    inside = (dseg["orig"] > 0) | mask
    vrange = window(original.data, inside)
    brain_box = box_around(inside, original.zooms, margin_mm=4.0)
    clusters = find_clusters(mask, original.zooms)
    figs: list[Path] = []

    parts = [f"<h3>Summary</h3>{kv_table(_summary_rows(summary))}"]
    params = meta.get("MethodParameters")
    if params:
        parts.append("<details><summary>Method parameters</summary>"
                     f"<pre>{esc(json.dumps(params, indent=2))}</pre></details>")  # fmt: skip

    # Lesion mask over the T1w, through the lesions.
    mosaic = lesion_mosaic(original, mask, vrange, brain_box, fig_dir / f"{stem}_desc-lesions_T1w.png")  # fmt: skip
    figs.append(mosaic)
    total_ml = round(sum(c.volume_ml for c in clusters), 3)
    parts.append(
        "<h3>Lesion mask</h3>"
        + figure(_rel(mosaic, output_dir), "lesion mask contour over the T1w",
                 f"Axial, coronal and sagittal slices through the lesions; red: outline of the "
                 f"lesion mask used for filling. {len(clusters)} lesion(s), {total_ml} ml "
                 "(26-connected clusters).")
    )  # fmt: skip
    if clusters:
        parts.append(table(["Lesion", "Voxels", "Volume (ml)", "Centre (RAS voxel)"],
                           [(c.index, c.voxels, c.volume_ml, str(c.centre)) for c in clusters]))  # fmt: skip

    plane = meta.get("MidSagittalPlane")
    if isinstance(plane, dict):  # the symmetry channel's plane, drawn where it cuts
        plane_fig = _midplane(original, source if original is not filled else filled_path,
                              plane, mask, clusters, vrange, brain_box,
                              fig_dir / f"{stem}_desc-midplane_T1w.png")  # fmt: skip
        figs.append(plane_fig)
        where = "through the largest lesion" if clusters else "through the brain's centre"
        parts.append("<h3>Mid-sagittal plane</h3>"
                     + figure(_rel(plane_fig, output_dir), "estimated mid-sagittal plane",
                              f"Axial and coronal slices {where}. {esc(plane_caption(plane))}"))  # fmt: skip

    # Zoomed before/after of each lesion.
    flickers = cluster_flickers(original, filled.data, mask, clusters, vrange, fig_dir, stem)
    figs += [p for _, p in flickers]
    if flickers:
        shown = "".join(
            figure(_rel(p, output_dir), f"lesion {c.index} before and after filling",
                   f"Lesion {c.index}: {c.volume_ml} ml")
            for c, p in flickers
        )  # fmt: skip
        more = (f"<p>The {len(clusters) - len(flickers)} smaller lesion(s) are not shown.</p>"
                if len(clusters) > len(flickers) else "")  # fmt: skip
        parts.append(
            "<h3>Before and after, per lesion</h3><p>Each view alternates between the original "
            "and the filled image (axial, coronal, sagittal through the lesion; red: mask "
            f'outline).</p><div class="flickers">{shown}</div>{more}'
        )

    std_path = _find(files, "_desc-fillstd_T1w")
    if std_path is not None:
        std_fig = uncertainty_figure(filled, load_ras(std_path).data, mask, vrange,
                                     fig_dir / f"{stem}_desc-fillstd_T1w.png")  # fmt: skip
        figs.append(std_fig)
        parts.append(
            "<h3>Uncertainty of the fill</h3>"
            + figure(_rel(std_fig, output_dir), "standard deviation of the fills",
                     f"Voxelwise standard deviation of the {meta.get('NSamples', 'n')} "
                     "independent diffusion fills that were averaged, through its maximum.")
        )  # fmt: skip

    samples = intensity_samples(original.data, filled.data, mask, dseg["orig"], original.zooms)
    hist = histogram_figure(samples, fig_dir / f"{stem}_desc-intensity_T1w.png")
    figs.append(hist)
    verdict = fill_warning(samples)
    if verdict:
        warnings.append(verdict)
    parts.append(
        "<h3>Intensities</h3>"
        + figure(_rel(hist, output_dir), "intensity histograms",
                 "Densities of the lesion voxels before filling, of the filled voxels, of "
                 "normal-appearing white matter (WM of the original at least 4 mm from any "
                 "lesion) and of the lesions' 3 mm ring; dotted: medians. A good fill looks "
                 "like NAWM, not like the lesion.")
        + table(["Region", "Voxels", "Median", "IQR"],
                [tuple(r.values()) for r in intensity_table(samples)])
        + (f'<p class="warn">{esc(verdict)}</p>' if verdict else "")
    )  # fmt: skip

    if not segmented:
        parts.append("<h3>Tissue segmentation</h3><p>Skipped (--skip-segmentation). Above, "
                     "NAWM is the brightest of three Otsu classes of the original, not a "
                     "segmentation's white matter.</p>")  # fmt: skip
        return RunSection(anchor=anchor, title=stem, html="".join(parts), warnings=warnings,
                          figures=figs)  # fmt: skip
    centre = clusters[0].centre if clusters else tuple(s // 2 for s in mask.shape)
    seg_fig = segmentation_flicker(original, filled.data, dseg["orig"], dseg["filled"], mask,
                                   centre, vrange, brain_box,  # type: ignore[arg-type]
                                   fig_dir / f"{stem}_desc-segmentation_dseg.svg")  # fmt: skip
    figs.append(seg_fig)
    parts.append(
        "<h3>Tissue segmentation</h3>"
        + figure(_rel(seg_fig, output_dir), "tissue segmentation before and after filling",
                 "Alternates between the segmentation of the original and of the filled image "
                 "through the largest lesion. Blue: GM, yellow: WM, green: CSF; red: lesion "
                 "outline.")
        + _tissue_table(summary.get("segmentation", {}))
    )  # fmt: skip
    return RunSection(anchor=anchor, title=stem, html="".join(parts), warnings=warnings,
                      figures=figs)  # fmt: skip


def _midplane(t1w: Volume, grid: Path, plane: dict[str, Any], mask: np.ndarray, clusters: list,
              vrange: tuple[float, float], brain_box: tuple[slice, slice, slice],
              out_file: Path) -> Path:  # fmt: skip
    """The plane on axial and coronal slices through the largest lesion (or the brain's
    centre); ``grid`` is the image file whose RAS affine the slices are on."""
    centre = clusters[0].centre if clusters else tuple((b.start + b.stop) // 2 for b in brain_box)
    return midplane_figure(t1w, ras_affine(grid), plane, centre, vrange, brain_box, out_file,
                           mask=mask, px_per_mm=_scale(brain_box, t1w.zooms, 260))  # fmt: skip


def _rel(path: Path, root: Path) -> str:
    return Path(path).relative_to(root).as_posix()
