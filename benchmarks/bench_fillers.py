"""Benchmark the classical fillers and the tissue segmentation on a demo-like brain.

The brain is the MNI152 2009 template at 2 mm (nilearn wheel) with ten synthetic
hypointense ellipsoid lesions in its white matter, so the lesion-free truth is known.
Each method runs in its own subprocess, so its peak resident memory (getrusage maxrss)
is its own; tracemalloc adds the peak of Python allocations during the call.

    python benchmarks/bench_fillers.py [--results benchmarks/RESULTS.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

N_LESIONS = 10
SEED = 0
SECTION = "## Fillers"


def demo_brain() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(truth, lesioned image, lesion mask, affine) with seeded ellipsoid lesions in WM."""
    from nilearn.datasets import load_mni152_template, load_mni152_wm_template

    tpl = load_mni152_template(resolution=2)
    truth = np.asarray(tpl.dataobj, dtype=np.float32)
    wm = np.asarray(load_mni152_wm_template(resolution=2).dataobj) > 0.6
    rng = np.random.default_rng(SEED)
    grid = np.indices(truth.shape, dtype=np.float32)
    mask = np.zeros(truth.shape, bool)
    centres = np.argwhere(wm)
    while mask.sum() == 0 or len(np.unique(_labels(mask))) - 1 < N_LESIONS:
        c = centres[rng.integers(len(centres))]
        radii = rng.uniform(1.5, 4.0, size=3)
        blob = (((grid - c[:, None, None, None]) / radii[:, None, None, None]) ** 2).sum(0) <= 1
        if (blob & ~wm).sum() < 0.3 * blob.sum() and not (blob & mask).any():
            mask |= blob
    image = truth.copy()
    image[mask] = 0.45 * truth[mask] + rng.normal(0, 0.01, mask.sum()).astype(np.float32)
    return truth, image, mask, tpl.affine


def _labels(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return ndimage.label(mask, structure=np.ones((3, 3, 3), bool))[0]


def _quality(filled: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """In-mask PSNR (peak: the truth's 99.9th percentile) and MAE."""
    err = filled[mask] - truth[mask]
    peak = float(np.percentile(truth, 99.9))
    mse = float(np.mean(err**2))
    return 10 * np.log10(peak**2 / max(mse, 1e-20)), float(np.abs(err).mean())


def _call(method: str, truth, image, mask, affine):
    """Run ``method`` once; return (filled image or None, segmenter or params)."""
    if method == "segmentation":
        from nilearn.datasets import load_mni152_brain_mask

        from bidsfill.segment import segment_tissues

        brain = np.asarray(load_mni152_brain_mask(resolution=2).dataobj) > 0
        seg = segment_tissues(truth, affine, brain_mask=brain, seed=SEED, n_threads=1)
        return None, seg.segmenter
    from bidsfill.fill import fill_image

    result = fill_image(image, mask, method=method, zooms=(2.0, 2.0, 2.0), seed=SEED)
    params = {k: v for k, v in result.params.items() if k not in ("algorithm", "seed")}
    return result.filled, json.dumps(params)


def run_one(method: str) -> dict:
    """Run one method in this process and return its measurements."""
    import resource
    import tracemalloc

    truth, image, mask, affine = demo_brain()
    if method == "lesioned (no fill)":
        seconds, py_peak, (psnr, mae), notes = 0.0, 0, _quality(image, truth, mask), ""
    else:
        # Imports (torch via the filler registry, skimage, ants) happen before timing.
        import skimage.filters  # noqa: F401

        from bidsfill.fill import available_methods

        available_methods()
        if method == "segmentation":
            import ants  # noqa: F401
        start = time.perf_counter()
        filled, notes = _call(method, truth, image, mask, affine)
        seconds = time.perf_counter() - start
        # A second run under tracemalloc (which slows allocation-heavy code) for the
        # peak of Python-level allocations, numpy arrays included.
        tracemalloc.start()
        _call(method, truth, image, mask, affine)
        _, py_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        psnr, mae = _quality(filled, truth, mask) if filled is not None else (None, None)
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        "method": method,
        "seconds": seconds,
        "py_peak_mib": py_peak / 2**20,
        "rss_peak_mib": rss_kib / 1024,
        "psnr": psnr,
        "mae": mae,
        "lesion_voxels": int(mask.sum()),
        "notes": notes,
    }


def _machine() -> str:
    import psutil

    ram = psutil.virtual_memory().total / 2**30
    return (
        f"{platform.platform()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, {ram:.0f} GiB RAM, Python {platform.python_version()}"
    )


def _table(rows: list[dict]) -> str:
    lines = [
        "| method | seconds | peak RSS (MiB) | Python peak (MiB) | PSNR in mask (dB) | MAE in mask | notes |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['method']} | – | – | – | – | – | {r['error']} |")
            continue
        psnr = f"{r['psnr']:.2f}" if r["psnr"] is not None else "–"
        mae = f"{r['mae']:.4f}" if r["mae"] is not None else "–"
        lines.append(
            f"| {r['method']} | {r['seconds']:.2f} | {r['rss_peak_mib']:.0f} | "
            f"{r['py_peak_mib']:.1f} | {psnr} | {mae} | {r['notes']} |"
        )
    return "\n".join(lines)


def write_section(path: Path, body: str) -> None:
    """Replace (or append) the ``## Fillers`` section of ``path``, keeping the others."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    section = f"{SECTION}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1)
    else:
        text = text.rstrip() + "\n\n" + section
    path.write_text(text.rstrip() + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument(
        "--results", type=Path, default=Path(__file__).resolve().parent / "RESULTS.md"
    )
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one)))
        return

    from bidsfill.fill import available_methods

    methods = ["lesioned (no fill)"]
    methods += [m for m in ("nawm", "ring", "nonlocal", "fsl") if m in available_methods()]
    methods += ["segmentation"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS": "1"}
    rows = []
    for method in methods:
        proc = subprocess.run(
            [sys.executable, __file__, "--one", method], capture_output=True, text=True, env=env
        )
        if proc.returncode == 0:
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        else:
            reason = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"
            rows.append({"method": method, "error": reason.replace("|", "/")})
        print(f"{method}: done", file=sys.stderr)

    table = _table(rows)
    voxels = next((r["lesion_voxels"] for r in rows if "lesion_voxels" in r), 0)
    body = (
        f"`python benchmarks/bench_fillers.py` ({time.strftime('%Y-%m-%d')}): MNI152 2009 "
        f"template at 2 mm (99x117x95) with {N_LESIONS} synthetic hypointense ellipsoid "
        f"lesions in the WM ({voxels} voxels, seed {SEED}); quality is in-mask PSNR/MAE "
        "against the lesion-free template (intensities in [0, 1]). Each method runs in its "
        "own subprocess (one thread); peak RSS includes the interpreter and imports. "
        "Segmentation: the lesion-free template inside the nilearn brain mask.\n\n"
        f"Machine: {_machine()}.\n\n{table}"
    )
    print(table)
    write_section(args.results, body)


if __name__ == "__main__":
    main()
