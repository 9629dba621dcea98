"""Report figures of one filled T1w: lesion mosaics, zoomed per-lesion flickers,
segmentation before/after and the uncertainty map.

Every function writes one file into the subject's ``figures/`` folder and returns its
path; the HTML only links them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from bidsfill.io.atomic import part_file
from bidsfill.report.flicker import flicker_svg
from bidsfill.report.render import (
    ORIENTATIONS,
    Volume,
    compose,
    label,
    lesion_slices,
    png_bytes,
    render_tile,
    save_png,
)

__all__ = [
    "Cluster",
    "box_around",
    "cluster_flickers",
    "find_clusters",
    "lesion_mosaic",
    "segmentation_flicker",
    "uncertainty_figure",
]

_CONN26 = np.ones((3, 3, 3), bool)  # the connectivity of the sidecars' LesionCount


@dataclass(frozen=True)
class Cluster:
    """One connected lesion (26-connectivity), largest first."""

    index: int
    voxels: int
    volume_ml: float
    centre: tuple[int, int, int]
    box: tuple[slice, slice, slice]


def box_around(
    region: np.ndarray, zooms: tuple[float, ...], margin_mm: float, min_mm: float = 0.0
) -> tuple[slice, slice, slice]:
    """Bounding box of ``region`` grown by ``margin_mm`` and to at least ``min_mm`` a side."""
    if not region.any():
        return tuple(slice(0, s) for s in region.shape)  # type: ignore[return-value]
    coords = np.nonzero(region)
    box = []
    for ax, size in enumerate(region.shape):
        lo, hi = int(coords[ax].min()), int(coords[ax].max()) + 1
        grow = int(np.ceil(margin_mm / zooms[ax]))
        lo, hi = lo - grow, hi + grow
        short = int(np.ceil(min_mm / zooms[ax])) - (hi - lo)
        if short > 0:
            lo, hi = lo - short // 2, hi + short - short // 2
        box.append(slice(max(0, lo), min(size, hi)))
    return tuple(box)  # type: ignore[return-value]


def find_clusters(mask: np.ndarray, zooms: tuple[float, ...]) -> list[Cluster]:
    """Connected lesions, largest first, with their volume and a 3D box for zooming."""
    labels, count = ndimage.label(mask, structure=_CONN26)
    if count == 0:
        return []
    sizes = np.bincount(labels.ravel())[1:]
    voxel_ml = float(np.prod(zooms[:3])) / 1000.0
    clusters = []
    for rank, lab in enumerate(np.argsort(-sizes, kind="stable") + 1, start=1):
        region = labels == lab
        coords = np.nonzero(region)
        # The centre is the voxel of the cluster nearest its centroid (always inside it).
        centroid = np.array([c.mean() for c in coords])
        nearest = np.argmin(((np.stack(coords).T - centroid) ** 2).sum(1))
        centre = tuple(int(c[nearest]) for c in coords)
        clusters.append(
            Cluster(
                index=rank,
                voxels=int(sizes[lab - 1]),
                volume_ml=round(int(sizes[lab - 1]) * voxel_ml, 3),
                centre=centre,  # type: ignore[arg-type]
                box=box_around(region, zooms, margin_mm=10.0, min_mm=32.0),
            )
        )
    return clusters


def lesion_mosaic(
    t1w: Volume,
    mask: np.ndarray,
    vrange: tuple[float, float],
    brain_box: tuple[slice, slice, slice],
    out_file: Path,
    n_slices: int = 7,
) -> Path:
    """Rows of axial, coronal and sagittal slices through the lesions, red lesion outline."""
    rows = []
    px_per_mm = _scale(brain_box, t1w.zooms, 160)
    for name, axis in ORIENTATIONS.items():
        row = []
        for index in lesion_slices(mask, axis, n_slices):
            tile = render_tile(t1w.data, t1w.zooms, axis, index, vrange=vrange,
                               box=brain_box, mask=mask, px_per_mm=px_per_mm)  # fmt: skip
            row.append(label(tile, f"{name} {index}"))
        rows.append(row)
    return save_png(compose(rows), out_file)


def cluster_flickers(
    original: Volume,
    filled: np.ndarray,
    mask: np.ndarray,
    clusters: list[Cluster],
    vrange: tuple[float, float],
    out_dir: Path,
    stem: str,
    max_clusters: int = 8,
) -> list[tuple[Cluster, Path]]:
    """Per lesion: zoomed axial/coronal/sagittal views, before and after, as a flicker SVG."""
    written = []
    for cluster in clusters[:max_clusters]:
        px_per_mm = _scale(cluster.box, original.zooms, 150)
        frames = []
        for image in (original.data, filled):
            tiles = [
                render_tile(image, original.zooms, axis, cluster.centre[axis], vrange=vrange,
                            box=cluster.box, mask=mask, px_per_mm=px_per_mm)
                for axis in ORIENTATIONS.values()
            ]  # fmt: skip
            frames.append(compose([tiles]))
        height, width = frames[0].shape[:2]
        svg = flicker_svg(
            png_bytes(frames[0]), png_bytes(frames[1]), width, height,
            labels=("original", "filled"),
            title=f"lesion {cluster.index}: {cluster.volume_ml} ml",
        )  # fmt: skip
        written.append((cluster, _write_text(svg, out_dir / f"{stem}_desc-lesion{cluster.index:02d}_T1w.svg")))  # fmt: skip
    return written


def segmentation_flicker(
    original: Volume,
    filled: np.ndarray,
    dseg_orig: np.ndarray,
    dseg_filled: np.ndarray,
    mask: np.ndarray,
    centre: tuple[int, int, int],
    vrange: tuple[float, float],
    brain_box: tuple[slice, slice, slice],
    out_file: Path,
) -> Path:
    """GM/WM/CSF over the T1w through ``centre``: original's segmentation, then filled's."""
    frames = []
    px_per_mm = _scale(brain_box, original.zooms, 260)
    for image, dseg in ((original.data, dseg_orig), (filled, dseg_filled)):
        tiles = [
            render_tile(image, original.zooms, axis, centre[axis], vrange=vrange, box=brain_box,
                        mask=mask, labels=dseg, px_per_mm=px_per_mm)
            for axis in ORIENTATIONS.values()
        ]  # fmt: skip
        frames.append(compose([tiles]))
    height, width = frames[0].shape[:2]
    svg = flicker_svg(png_bytes(frames[0]), png_bytes(frames[1]), width, height,
                      labels=("segmentation of the original", "segmentation of the filled"),
                      title="tissue segmentation before and after filling")  # fmt: skip
    return _write_text(svg, out_file)


def uncertainty_figure(
    filled: Volume,
    std: np.ndarray,
    mask: np.ndarray,
    vrange: tuple[float, float],
    out_file: Path,
) -> Path:
    """The standard deviation of the independent fills over the filled T1w, with a scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = np.where(mask, std, 0.0)
    box = box_around(mask, filled.zooms, margin_mm=15.0, min_mm=40.0)
    peak = np.unravel_index(int(np.argmax(shown)), shown.shape) if shown.any() else None
    vmax = float(np.percentile(shown[mask], 99)) if mask.any() else 1.0
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.6), facecolor="black")
    image = None
    for ax, (name, axis) in zip(axes, ORIENTATIONS.items(), strict=True):
        index = int(peak[axis]) if peak is not None else mask.shape[axis] // 2
        sl = list(box)
        sl[axis] = index
        aspect = _aspect(filled.zooms, axis)
        ax.imshow(np.rot90(filled.data[tuple(sl)]), cmap="gray", vmin=vrange[0], vmax=vrange[1],
                  interpolation="nearest", aspect=aspect)  # fmt: skip
        overlay = np.rot90(np.ma.masked_where(~mask[tuple(sl)], shown[tuple(sl)]))
        image = ax.imshow(overlay, cmap="inferno", vmin=0, vmax=max(vmax, 1e-6),
                          interpolation="nearest", aspect=aspect)  # fmt: skip
        ax.set_title(f"{name} {index}", color="white", fontsize=9)
        ax.set_axis_off()
    bar = fig.colorbar(image, ax=list(axes), shrink=0.8)
    bar.set_label("std of the fills (T1w units)", color="white")
    bar.ax.tick_params(colors="white")
    out_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        with part_file(out_file) as tmp:
            fig.savefig(tmp, dpi=90, facecolor="black", format="png")
    finally:
        plt.close(fig)
    return out_file


def _scale(box: tuple[slice, slice, slice], zooms: tuple[float, ...], pixels: int) -> float:
    """Pixels per mm that draw the longest side of ``box`` in about ``pixels`` (>= 1)."""
    extent_mm = max((b.stop - b.start) * z for b, z in zip(box, zooms, strict=True))
    return max(1.0, pixels / max(extent_mm, 1.0))


def _aspect(zooms: tuple[float, float, float], axis: int) -> float:
    a, b = (ax for ax in range(3) if ax != axis)
    return zooms[b] / zooms[a]


def _write_text(text: str, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with part_file(path) as tmp:
        tmp.write_text(text)
    return path
