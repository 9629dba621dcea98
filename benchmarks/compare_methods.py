"""Compare every fill method on simulated lesions in the demo brains: quality and cost.

Lesion sets are drawn with the training mask generator (MS-like WM lesions, seeded) in
the lesion-free demo brains and made T1-hypointense with ``apply_lesions``; each set
scales the lesion volume range so the plot has a spread. Every method fills every set
through :func:`bidsfill.fill.fill_image`; each method runs in its own subprocess (one
torch/ITK thread) whose resident memory is sampled during the fills. The parent scores
the fills with :mod:`bidsfill.evaluate.metrics` (BraTS 2023 metrics, 3D SSIM, MAE, edge
band, tissue Dice inside the mask and whole-brain volume error) and writes:

- the ``## Method comparison`` section of ``benchmarks/RESULTS.md`` (one table, mean ± sd
  per method, with the papers' numbers as anchor rows),
- one row per case and method in ``benchmarks/compare_methods.tsv``,
- each metric against lesion volume per method in ``benchmarks/compare_methods.png``.

    python benchmarks/compare_methods.py [--n-sets 3] [--n-lesions 2 6] [--steps 10 20]
        [--n-samples 1 3] [--no-tissues] [--methods nawm ring ...]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bidsfill.fill.methods import FILL_METHODS, fill_method

HERE = Path(__file__).resolve().parent
SECTION = "Method comparison"

#: Durrer et al. (the papers' numbers, printed beside ours; their data and segmenter differ).
ANCHORS: list[dict[str, Any]] = [
    {
        "method": "paper: Durrer Pseudo3D (Table 2, 3)",
        "brats_ssim": 0.8527,
        "brats_psnr": 20.93,
        "brats_mse": 0.0103,
        "dice_CSF": 0.857,
        "dice_GM": 0.823,
        "dice_WM": 0.985,
    },
    {
        "method": "paper: FSL lesion_filling (Table 3)",
        "dice_CSF": 0.523,
        "dice_GM": 0.585,
        "dice_WM": 0.954,
    },
]

#: (key, column header, format) of the quality columns, in table order.
METRICS: list[tuple[str, str, str]] = [
    ("brats_ssim", "BraTS SSIM", ".4f"),
    ("brats_psnr", "BraTS PSNR (dB)", ".2f"),
    ("brats_psnr_01", "BraTS PSNR01 (dB)", ".2f"),
    ("brats_mse", "BraTS MSE", ".4f"),
    ("ssim3d", "3D SSIM", ".4f"),
    ("mae", "MAE", ".4f"),
    ("band_ssim3d", "band 3D SSIM", ".4f"),
    ("band_mae", "band MAE", ".4f"),
    ("dice_CSF", "Dice CSF", ".3f"),
    ("dice_GM", "Dice GM", ".3f"),
    ("dice_WM", "Dice WM", ".3f"),
    ("vol_diff_pct_CSF", "ΔV CSF (%)", "+.2f"),
    ("vol_diff_pct_GM", "ΔV GM (%)", "+.2f"),
    ("vol_diff_pct_WM", "ΔV WM (%)", "+.2f"),
]
BASELINE = "lesioned (no fill)"
#: The diffusion methods without shipped weights (every one of the registry but the default).
NO_WEIGHTS = tuple(n for n, m in FILL_METHODS.items() if m.uses_model and n != "pseudo3d")


@dataclass
class Case:
    """One simulated lesion set in one lesion-free brain.

    Args:
        case_id: short name ("set0-sub-01_ses-1").
        truth: lesion-free image (float32, scanner units).
        lesioned: the same image with the simulated lesions.
        mask: the lesion mask (bool).
        affine: voxel-to-world affine.
        brain_mask: brain mask used for both segmentations of the tissue metrics.
        truth_seg: cached segmentation of ``truth`` (None: segment it when needed).
    """

    case_id: str
    truth: np.ndarray
    lesioned: np.ndarray
    mask: np.ndarray
    affine: np.ndarray
    brain_mask: np.ndarray | None = None
    truth_seg: Any = None

    @property
    def zooms(self) -> tuple[float, float, float]:
        return tuple(float(z) for z in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore[return-value]

    @property
    def lesion_ml(self) -> float:
        return float(self.mask.sum()) * float(np.prod(self.zooms)) / 1000.0

    @property
    def n_lesions(self) -> int:
        from scipy import ndimage

        return int(ndimage.label(self.mask, structure=np.ones((3, 3, 3), bool))[1])


@dataclass(frozen=True)
class MethodSpec:
    """A method and the parameters it is run with, under a table label.

    Args:
        label: row name in the table ("pseudo3d DDIM 10").
        method: ``fill_image`` method, or :data:`BASELINE` for the unfilled image.
        params: extra ``fill_image`` parameters (sampler, steps, n_samples, ...).
    """

    label: str
    method: str
    params: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------- cases


def demo_brains(work_dir: Path, seed: int = 0, downsample: int = 1) -> list[tuple[str, Any]]:
    """The demo's lesion-free T1w images as (name, nibabel image), written under work_dir."""
    import nibabel as nib

    from bidsfill.demo import make_demo_dataset

    paths = make_demo_dataset(work_dir / "demo", seed=seed, downsample=downsample)
    out = []
    for image in paths.images:
        name = f"sub-{image.subject}" + (f"_ses-{image.session}" if image.session else "")
        out.append((name, nib.load(str(image.truth))))
    return out


def threshold_brain_mask(image: np.ndarray, fraction: float = 0.15) -> np.ndarray:
    """Brain mask of a skull-stripped image with a noisy background, bit-reproducible.

    ``estimate_brain_mask`` registers the MNI mask when the background is not clean (as
    in the demo images), and that registration is not bit-reproducible; a threshold of
    the smoothed image at ``fraction`` of its 99th percentile, the largest component,
    closed and hole-filled, is (it keeps the outer CSF).
    """
    from scipy import ndimage

    above = ndimage.gaussian_filter(image.astype(np.float32), 1.0) > fraction * float(
        np.percentile(image, 99)
    )
    labels, n = ndimage.label(above)
    if n == 0:
        raise ValueError("the image has no foreground to make a brain mask from")
    largest = labels == int(np.argmax(np.bincount(labels.ravel())[1:])) + 1
    return ndimage.binary_fill_holes(ndimage.binary_closing(largest, iterations=2))


def simulate_cases(
    brains: Sequence[tuple[str, Any]],
    n_sets: int,
    *,
    seed: int = 0,
    n_lesions: tuple[int, int] = (2, 6),
    volume_scale: tuple[float, float] = (0.5, 12.0),
    contrast: tuple[float, float] = (0.3, 0.55),
) -> list[Case]:
    """Draw ``n_sets`` lesion sets, cycling through ``brains``.

    Set ``i`` gets its own generator ``default_rng([seed, i])``, a lesion count drawn in
    ``n_lesions`` and a per-lesion volume range of ``(0.05, 0.4) * k`` ml with ``k``
    log-spaced over ``volume_scale``, so the sets span small to large lesion loads.

    Args:
        brains: (name, nibabel image) of lesion-free T1w images.
        n_sets: number of lesion sets.
        seed: base seed.
        n_lesions: (min, max) number of lesions per set.
        volume_scale: (first, last) multiplier of the per-lesion volume range.
        contrast: darkening relative to local WM, drawn per lesion.
    """
    from bidsfill.evaluate.simulate import apply_lesions
    from bidsfill.lesions import lesion_sites, sample_lesion_mask
    from bidsfill.segment import segment_tissues

    prepared = []
    for name, img in brains[: max(n_sets, 1)]:
        truth = np.asarray(img.get_fdata(dtype=np.float32))
        zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
        brain = threshold_brain_mask(truth)
        seg = segment_tissues(truth, img.affine, brain_mask=brain, seed=seed, n_threads=1)
        sites = lesion_sites(
            seg.probseg["WM"], zooms, brain_mask=brain, csf_prob=seg.probseg["CSF"]
        )
        prepared.append((name, img.affine, truth, seg, sites, zooms, brain))
    scales = np.geomspace(volume_scale[0], volume_scale[1], n_sets) if n_sets > 1 else [1.0]
    cases = []
    for i in range(n_sets):
        name, affine, truth, seg, sites, zooms, brain = prepared[i % len(prepared)]
        rng = np.random.default_rng([seed, i])
        k = float(scales[i])
        mask = sample_lesion_mask(
            sites,
            zooms,
            rng,
            kind="ms",
            n_lesions=int(rng.integers(n_lesions[0], n_lesions[1] + 1)),
            volume_ml=(0.05 * k, 0.4 * k),
        )
        lesioned = apply_lesions(
            truth, mask, seg.probseg["WM"], rng, contrast=contrast, edge_sigma=1.0, zooms=zooms
        )
        cases.append(Case(f"set{i}-{name}", truth, lesioned, mask, affine, brain, seg))
    return cases


# ---------------------------------------------------------------------------- methods


def default_specs(
    steps: Sequence[int] = (10, 20),
    n_samples: Sequence[int] = (1, 3),
    sampler: str = "ddim",
    methods: Sequence[str] | None = None,
) -> list[MethodSpec]:
    """Baseline, classical methods, and pseudo3d at each step count (and n_samples > 1
    at the first step count), plus the diffusion methods without shipped weights."""
    from bidsfill.fill import available_methods

    order = [BASELINE, "nawm", "ring", "nonlocal", "fsl", "pseudo3d", *NO_WEIGHTS]
    names = list(methods) if methods else [BASELINE, *available_methods()]
    names.sort(key=lambda n: order.index(n) if n in order else len(order))
    specs = []
    for name in names:
        if fill_method(name).uses_model:
            combos = [(s, 1) for s in steps] + [(steps[0], n) for n in n_samples if n > 1]
            for s, n in combos:
                label = f"{name} {sampler.upper()} {s}" + (f" ×{n}" if n > 1 else "")
                params = {"sampler": sampler, "steps": s, "n_samples": n, "omp_nthreads": 1}
                specs.append(MethodSpec(label, name, params))
                if name in NO_WEIGHTS:
                    break  # one row says "no weights shipped"
        else:
            specs.append(MethodSpec(name, name))
    return specs


def _no_weights(spec: MethodSpec) -> str | None:
    from bidsfill.diffusion.weights import default_model_path

    if spec.method in NO_WEIGHTS and "model" not in spec.params:
        if default_model_path(spec.method) is None:
            return "no weights shipped"
    return None


class _RssSampler:
    """Peak resident memory of this process while a block runs (sampled every 10 ms).

    getrusage's peak cannot be reset between fills, so a thread samples psutil's RSS.
    """

    def __init__(self, interval: float = 0.01) -> None:
        import psutil

        self._proc = psutil.Process()
        self._interval = interval
        self._stop = threading.Event()
        self.peak = self.start = 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            self._stop.wait(self._interval)

    def __enter__(self) -> _RssSampler:
        self.start = self.peak = self._proc.memory_info().rss
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)


def fill_cases(spec: MethodSpec, cases: Sequence[Case]) -> list[dict[str, Any]]:
    """Fill every case with ``spec`` in this process; filled image, seconds, peak RSS."""
    from bidsfill.fill import FillError, available_methods, fill_image

    available_methods()  # imports (torch, registry) before timing
    out: list[dict[str, Any]] = []
    for case in cases:
        if spec.method == BASELINE:
            out.append({"filled": case.lesioned, "seconds": math.nan, "rss_mib": math.nan})
            continue
        try:
            with _RssSampler() as rss:
                start = time.perf_counter()
                result = fill_image(
                    case.lesioned,
                    case.mask,
                    method=spec.method,
                    zooms=case.zooms,
                    seed=0,
                    affine=case.affine,
                    **spec.params,
                )
                seconds = time.perf_counter() - start
        except FillError as err:
            out.append({"filled": None, "note": str(err)})
            continue
        params = {k: v for k, v in result.params.items() if k in ("Crops", "ModelCalls")}
        out.append(
            {
                "filled": result.filled,
                "seconds": seconds,
                "rss_mib": rss.peak / 2**20,
                "rss_fill_mib": (rss.peak - rss.start) / 2**20,
                "note": json.dumps(params) if params else "",
            }
        )
    return out


def fill_cases_isolated(
    spec: MethodSpec, cases: Sequence[Case], work_dir: Path
) -> list[dict[str, Any]]:
    """:func:`fill_cases` in a fresh subprocess, so its memory is the method's own."""
    work_dir.mkdir(parents=True, exist_ok=True)
    cases_npz = work_dir / "cases.npz"
    if not cases_npz.exists():
        arrays = {}
        for i, c in enumerate(cases):
            arrays.update({f"lesioned{i}": c.lesioned, f"mask{i}": c.mask, f"affine{i}": c.affine})
        np.savez(cases_npz, **arrays)
    out_npz = work_dir / "filled.npz"
    out_npz.unlink(missing_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS": "1"}
    cmd = [sys.executable, __file__, "--worker", json.dumps(spec.__dict__), str(cases_npz)]
    proc = subprocess.run([*cmd, str(out_npz)], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        reason = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"
        return [{"filled": None, "note": reason} for _ in cases]
    data = np.load(out_npz, allow_pickle=False)
    meta = json.loads(str(data["meta"]))
    for i, m in enumerate(meta):
        m["filled"] = data[f"filled{i}"] if f"filled{i}" in data else None
    return meta


def _worker(spec_json: str, cases_npz: str, out_npz: str) -> None:
    import torch

    torch.set_num_threads(1)
    spec = MethodSpec(**json.loads(spec_json))
    data = np.load(cases_npz)
    n = sum(1 for k in data.files if k.startswith("mask"))
    cases = [
        Case(
            str(i), data[f"lesioned{i}"], data[f"lesioned{i}"], data[f"mask{i}"], data[f"affine{i}"]
        )
        for i in range(n)
    ]
    results = fill_cases(spec, cases)
    arrays = {
        f"filled{i}": r.pop("filled") for i, r in enumerate(results) if r["filled"] is not None
    }
    for r in results:
        r.pop("filled", None)
    np.savez(out_npz, meta=np.array(json.dumps(results)), **arrays)


# ---------------------------------------------------------------------------- scoring


def score(case: Case, filled: np.ndarray, *, tissues: bool = True, seed: int = 0) -> dict[str, Any]:
    """All metrics of one fill; the truth's segmentation is computed once per case."""
    from bidsfill.evaluate.metrics import image_metrics, tissue_metrics
    from bidsfill.segment import segment_tissues

    result: dict[str, Any] = dict(image_metrics(case.truth, filled, case.mask))
    if tissues:

        def segment(image: np.ndarray, affine: np.ndarray, **kw: Any) -> Any:
            if case.truth_seg is not None and np.array_equal(image, case.truth):
                return case.truth_seg
            seg = segment_tissues(image, affine, n_threads=1, **kw)
            if np.array_equal(image, case.truth):
                case.truth_seg = seg
            return seg

        result.update(
            tissue_metrics(
                case.truth,
                filled,
                case.mask,
                case.affine,
                seed=seed,
                brain_mask=case.brain_mask,
                segment=segment,
            )
        )
    return result


def compare(
    cases: Sequence[Case],
    specs: Sequence[MethodSpec],
    *,
    tissues: bool = True,
    isolate: bool = True,
    work_dir: Path | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> list[dict[str, Any]]:
    """Run every method on every case and score it: one row per (method, case).

    Args:
        cases: simulated lesion sets.
        specs: methods to run.
        tissues: also segment and report tissue Dice and volume errors.
        isolate: run each method in its own subprocess (cost figures are its own).
        work_dir: scratch folder for the subprocess hand-over (a temporary one if None).
        log: progress callback.

    Returns:
        Rows with ``method``, ``case``, ``lesion_ml``, ``n_lesions``, ``seconds``,
        ``rss_mib``, ``note`` and the metrics (NaN when the method did not run).
    """
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(work_dir or tmp)
        for spec in specs:
            skip = _no_weights(spec)
            if skip:
                fills = [{"filled": None, "note": skip} for _ in cases]
            elif isolate and spec.method != BASELINE:
                fills = fill_cases_isolated(spec, cases, scratch)
            else:
                fills = fill_cases(spec, cases)
            for case, fill in zip(cases, fills, strict=True):
                row: dict[str, Any] = {
                    "method": spec.label,
                    "case": case.case_id,
                    "lesion_ml": case.lesion_ml,
                    "n_lesions": case.n_lesions,
                    "seconds": fill.get("seconds", math.nan),
                    "rss_mib": fill.get("rss_mib", math.nan),
                    "rss_fill_mib": fill.get("rss_fill_mib", math.nan),
                    "note": fill.get("note", ""),
                }
                if fill["filled"] is not None:
                    row.update(score(case, np.asarray(fill["filled"]), tissues=tissues))
                rows.append(row)
            log(f"{spec.label}: {rows[-1]['note'] or 'done'}")
    return rows


def summarise(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per method (first-seen order): mean and sd of each metric, mean seconds, peak RSS."""
    out = []
    for label in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == label]
        ran = [r for r in mine if "brats_ssim" in r]
        summary: dict[str, Any] = {"method": label, "n": len(ran)}
        for key, _, _ in METRICS:
            values = np.array([r.get(key, math.nan) for r in ran], dtype=float)
            values = values[np.isfinite(values)]
            summary[key] = (
                (float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else math.nan)
                if len(values)
                else None
            )
        secs = [r["seconds"] for r in ran if np.isfinite(r["seconds"])]
        rss = [r["rss_mib"] for r in ran if np.isfinite(r["rss_mib"])]
        summary["seconds"] = (
            (float(np.mean(secs)), float(np.std(secs, ddof=1)))
            if len(secs) > 1
            else ((float(secs[0]), math.nan) if secs else None)
        )
        summary["rss_mib"] = float(max(rss)) if rss else None
        grow = [r["rss_fill_mib"] for r in ran if np.isfinite(r.get("rss_fill_mib", math.nan))]
        summary["rss_fill_mib"] = float(max(grow)) if grow else None
        notes = list(dict.fromkeys(r["note"] for r in mine if r["note"] and "brats_ssim" not in r))
        calls = [json.loads(r["note"]).get("ModelCalls") for r in ran if r["note"].startswith("{")]
        if calls:
            notes.insert(0, "model calls per case: " + ", ".join(str(c) for c in calls))
        summary["note"] = "; ".join(notes)
        out.append(summary)
    return out


def _cell(value: Any, fmt: str) -> str:
    if value is None:
        return "–"
    if isinstance(value, tuple):
        mean, sd = value
        return f"{mean:{fmt}}" + ("" if math.isnan(sd) else f" ± {sd:{fmt.lstrip('+')}}")
    return f"{value:{fmt}}"


def table(summary: Sequence[dict[str, Any]], anchors: Sequence[dict[str, Any]] = ANCHORS) -> str:
    """Markdown table: one row per method, then the papers' anchor rows."""
    head = ["method", "n", *(h for _, h, _ in METRICS), "seconds", "peak RSS (MiB)", "notes"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 2) + "---|"]
    for s in summary:
        cells = [s["method"], str(s["n"])]
        cells += [_cell(s[k], f) for k, _, f in METRICS]
        cells += [
            _cell(s["seconds"], ".1f"),
            _cell(s["rss_mib"], ".0f")
            + ("" if s.get("rss_fill_mib") is None else f" (+{s['rss_fill_mib']:.0f})"),
            s["note"].replace("|", "/"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    for a in anchors:
        cells = [f"*{a['method']}*", "–"]
        cells += [_cell(a.get(k), f) for k, _, f in METRICS]
        cells += ["–", "–", "published; other data and segmenter (FAST)"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_tsv(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """One line per (method, case), all metrics; NaN as 'n/a'."""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(keys)
        for r in rows:
            cells = []
            for k in keys:
                v = r.get(k, math.nan)
                if isinstance(v, float):
                    v = "n/a" if math.isnan(v) else f"{v:.6g}"
                cells.append(v)
            writer.writerow(cells)


def read_tsv(path: Path) -> list[dict[str, Any]]:
    """Rows written by :func:`write_tsv` (numbers back as floats, 'n/a' as NaN)."""
    rows = []
    with path.open(newline="") as fh:
        for raw in csv.DictReader(fh, delimiter="\t"):
            row: dict[str, Any] = {}
            for k, v in raw.items():
                if v == "n/a":
                    row[k] = math.nan
                    continue
                try:
                    row[k] = float(v)
                except ValueError:
                    row[k] = v
            for k in ("method", "case", "note", "segmenter"):
                if k in row:
                    row[k] = str(raw[k])
            rows.append(row)
    return rows


def plot(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """Each metric against lesion volume, one marker series per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    metrics = [(k, h) for k, h, _ in METRICS if any(np.isfinite(r.get(k, math.nan)) for r in rows)]
    ncol = 4
    nrow = math.ceil(len(metrics) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4 * ncol, 3.2 * nrow), squeeze=False)
    labels = [
        m
        for m in dict.fromkeys(r["method"] for r in rows)
        if any(np.isfinite(r.get("brats_ssim", math.nan)) for r in rows if r["method"] == m)
    ]
    markers = "osD^v<>ph*X"
    for ax, (key, head) in zip(axes.flat, metrics, strict=False):
        for j, label in enumerate(labels):
            pts = sorted(
                (r["lesion_ml"], r.get(key, math.nan)) for r in rows if r["method"] == label
            )
            x, y = zip(*pts, strict=True)
            ax.plot(x, y, marker=markers[j % len(markers)], label=label, lw=1, ms=5)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xticks(sorted({round(r["lesion_ml"], 1) for r in rows}))
        ax.set_xlabel("lesion volume (ml)")
        ax.set_title(head, fontsize=10)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(metrics) :]:
        ax.axis("off")
    handles, names = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=min(len(names), 5), fontsize=9)
    fig.tight_layout(rect=(0, 0.06 + 0.02 * (len(names) > 5), 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------------------- main


def _machine() -> str:
    import psutil
    import torch

    ram = psutil.virtual_memory().total / 2**30
    return (
        f"{platform.platform()}, {os.cpu_count()} CPUs, {ram:.0f} GiB RAM, "
        f"Python {platform.python_version()}, torch {torch.__version__} (1 thread)"
    )


def _weights_line() -> str:
    from bidsfill.diffusion.weights import default_model_path, file_sha256

    path = default_model_path("pseudo3d")
    if path is None:
        return "pseudo3d weights: none shipped."
    card = json.loads(path.with_suffix(".json").read_text())
    sha = file_sha256(path.with_suffix(".safetensors"))
    training = card.get("training", {})
    return (
        f"pseudo3d weights: `{path.with_suffix('.safetensors').name}` sha256 `{sha}` "
        f"(card: `{card.get('sha256')}`), {training.get('steps')} training steps of "
        f"{training.get('hyperparameters', {}).get('steps')} planned "
        f"({training.get('weights', '?')} weights) — an early snapshot, not a trained model."
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--n-sets", type=int, default=3, help="lesion sets (default 3)")
    parser.add_argument("--n-lesions", type=int, nargs=2, default=(2, 6), metavar=("MIN", "MAX"))
    parser.add_argument(
        "--volume-scale",
        type=float,
        nargs=2,
        default=(0.5, 12.0),
        metavar=("FIRST", "LAST"),
        help="multiplier of the per-lesion volume range (0.05-0.4 ml) from first to last set",
    )
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 20], help="DDIM steps")
    parser.add_argument(
        "--n-samples",
        type=int,
        nargs="+",
        default=[1, 3],
        help="diffusion samples averaged (values > 1 run at the first --steps)",
    )
    parser.add_argument("--sampler", default="ddim", choices=["ddim", "ddpm"])
    parser.add_argument("--methods", nargs="+", default=None, help="subset of methods")
    parser.add_argument("--no-tissues", action="store_true", help="skip Dice and volumes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--tsv", type=Path, default=HERE / "compare_methods.tsv")
    parser.add_argument("--png", type=Path, default=HERE / "compare_methods.png")
    parser.add_argument(
        "--replot", action="store_true", help="only redraw the PNG from the existing TSV"
    )
    args = parser.parse_args(argv)
    if args.worker:
        _worker(*args.worker)
        return
    if args.replot:
        plot(read_tsv(args.tsv), args.png)
        return

    import torch

    torch.set_num_threads(1)
    sys.path.insert(0, str(HERE))
    from _results import write_section

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    load_start = os.getloadavg()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        brains = demo_brains(Path(tmp), seed=args.seed)
        cases = simulate_cases(
            brains,
            args.n_sets,
            seed=args.seed,
            n_lesions=tuple(args.n_lesions),
            volume_scale=tuple(args.volume_scale),
        )
        log("cases: " + ", ".join(f"{c.case_id} {c.lesion_ml:.1f} ml/{c.n_lesions}" for c in cases))
        specs = default_specs(args.steps, args.n_samples, args.sampler, args.methods)
        rows = compare(
            cases, specs, tissues=not args.no_tissues, work_dir=Path(tmp) / "work", log=log
        )
    total = time.perf_counter() - start
    summary = summarise(rows)
    body_table = table(summary)
    write_tsv(rows, args.tsv)
    plot(rows, args.png)
    segmenter = next((r["segmenter"] for r in rows if "segmenter" in r), "not run")
    cmd = "python benchmarks/compare_methods.py" + (
        " " + " ".join(sys.argv[1:]) if argv is None and sys.argv[1:] else ""
    )
    lesions = ", ".join(f"{c.lesion_ml:.1f} ml ({c.n_lesions} lesions)" for c in cases)
    body = f"""`{cmd}` ({time.strftime("%Y-%m-%d")}, {total / 60:.1f} min in all).

Cases: {len(cases)} simulated MS-like lesion sets (training mask generator, seed {args.seed}; \
T1-hypointense with `apply_lesions`, contrast 0.3-0.55) in the lesion-free demo brains \
(MNI152 2009 at 2 mm, deformed; `make_demo_dataset(seed={args.seed})`): {lesions}. \
Quality: mean ± sd over the cases of the `bidsfill.evaluate.metrics` scores against the \
lesion-free truth — BraTS 2023 challenge SSIM (2D SSIM applied to the volume)/PSNR/MSE \
inside the mask; 3D SSIM and MAE (BraTS-normalised intensities) inside the mask and in \
the ±2-voxel edge band; Dice of CSF/GM/WM inside the mask and whole-brain volume \
difference (filled − truth, %) with the workflow's segmenter ({segmenter}, both images \
in one thresholded brain mask per brain, `threshold_brain_mask`). Cost: fill seconds (mean ± sd) and the peak resident memory \
sampled during the fills (whole process: interpreter, torch and the images included; in \
parentheses the largest growth during one fill), each method in its own subprocess with \
one torch/ITK thread. Diffusion rows name the \
sampler, its steps and the number of samples averaged (×n). Per-case rows: \
[`compare_methods.tsv`](compare_methods.tsv); plot against lesion volume: \
[`compare_methods.png`](compare_methods.png).

Machine: {_machine()}; load average at start {", ".join(f"{x:.1f}" for x in load_start)} \
(2 cores shared with other jobs, so seconds are contended).

{_weights_line()}

{body_table}

Anchor rows are Durrer et al.'s published numbers (Table 2: BraTS 2023 test set, 1 mm; \
Table 3: MS scans, FSL FAST Dice inside the lesion mask); our cases are 2 mm simulated \
lesions and the segmenter differs, so they show the scale, not a like-for-like comparison. \
On small WM lesions the challenge SSIM is near 1 for every fill (its 2D windows over the \
masked images are mostly zeros) and the challenge PSNR is low (its peak is the range of \
the truth inside the mask, narrow in homogeneous WM); 3D SSIM, MAE, PSNR01 and the band \
metrics separate the methods better.
"""
    write_section(args.results, SECTION, body)
    print(body_table)


if __name__ == "__main__":
    main()
