"""Durrer et al.'s Table 2 on real held-out scans: every diffusion method and every
classical filler on the same cases (issue 17 part 3).

    python benchmarks/compare_architectures.py [--kinds real-stroke tumour] [--threads 1]

Fills the default model's held-out scans (the scorecard's cases: same scans, masks, seed,
registrations and cached classical rows, ``runs/scorecard/cache``) with the shipped
weights of every diffusion ``--method``, the equal-budget ``pseudo3d`` trained beside them
by ``scripts/train_family.sh`` (``runs/family/pseudo3d``, not shipped) and the classical
fillers. It prints and records in ``benchmarks/RESULTS.md`` one table: BraTS 2023 SSIM,
PSNR, PSNR01 and MSE in the mask, 3D SSIM, edge-band PSNR01 and 3D SSIM, in-mask Dice,
fill seconds (1 thread), the peak memory of a fresh process filling one 1 mm head, and
each model's training steps and CPU-hours from its card; then the paper's Table 2 (BraTS,
GPU-trained, 256^3 volumes) as a separate row group for scale.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from _heldout import CACHE, held_out_cases
from _results import filler_means, metric_cells, run_line, write_section

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MODELS = ROOT / "bidsfill" / "data" / "models"
SECTION = "Architecture comparison (issue 17)"
HELD_OUT = ["ixi015", "fsconf01", "ds2748s61", "head01"]

#: Durrer et al. 2025, Table 2 (BraTS test set, masked regions; mean SSIM, MSE, PSNR).
PAPER = {
    "DDPM 2D slice-wise": (0.7847, 0.0160, 18.7131),
    "DDPM 2D seq-pos": (0.7732, 0.0420, 18.4529),
    "DDPM Pseudo3D": (0.8527, 0.0103, 20.9258),
    "DDPM 3D mem-eff": (0.7010, 0.0523, 14.1384),
    "LDM 3D": (0.5961, 0.0700, 8.7076),
    "WDM 3D": (0.6074, 0.1060, 10.5693),
}

COLUMNS = [
    ("brats_psnr_01", "PSNR01", "{:.2f}"),
    ("brats_psnr", "PSNR", "{:.2f}"),
    ("brats_ssim", "SSIM", "{:.3f}"),
    ("brats_mse", "MSE", "{:.4f}"),
    ("ssim3d", "3D SSIM", "{:.3f}"),
    ("band_psnr_01", "edge PSNR01", "{:.2f}"),
    ("band_ssim3d", "edge 3D SSIM", "{:.3f}"),
    ("dice_CSF", "Dice CSF", "{:.3f}"),
    ("dice_GM", "Dice GM", "{:.3f}"),
    ("dice_WM", "Dice WM", "{:.3f}"),
    ("seconds", "fill s", "{:.1f}"),
]

# ru_maxrss would report the template load's peak (nilearn reads it as float64), which is
# larger than most fills: RSS is sampled from /proc while the fill runs instead.
_PEAK = """
import gc, os, sys, threading, time, numpy as np, torch
torch.set_num_threads({threads})
from nilearn.datasets import load_mni152_template
from bidsfill.fill import fill_image
from bidsfill.lesions import sample_lesion_mask
img = load_mni152_template(resolution=1)
data = np.asarray(img.get_fdata(), np.float32)
img.uncache()
rng = np.random.default_rng(0)
sites = data > np.percentile(data[data > 0], 60)
mask = sample_lesion_mask(sites, (1.0, 1.0, 1.0), rng, kind="tumour", volume_ml=(30.0, 30.0))
gc.collect()
page_mb = os.sysconf("SC_PAGE_SIZE") / 2**20
def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * page_mb
base, peak, running = rss_mb(), [0.0], [True]
def watch():
    while running[0]:
        peak[0] = max(peak[0], rss_mb())
        time.sleep(0.005)
watcher = threading.Thread(target=watch, daemon=True)
watcher.start()
fill_image(data, mask, method=sys.argv[1], zooms=(1.0, 1.0, 1.0), seed=0, affine=img.affine,
           **({{"model": sys.argv[2], "device": "cpu"}} if sys.argv[2] else {{}}))
running[0] = False
watcher.join()
print(max(peak[0], rss_mb()), base, int(mask.sum()))
"""


def _models(methods: list[str], family: bool = True) -> dict[str, Path]:
    """Label -> weights: each shipped ``<method>.safetensors`` (``pseudo3d``: the default,
    labelled as the scorecard labels it so its cached rows are reused) and the
    equal-budget pseudo3d models without and with the contralateral (mirror) channel."""
    out = {
        m: MODELS / f"{m}.safetensors" for m in methods if (MODELS / f"{m}.safetensors").exists()
    }
    if not family:
        return out
    family_dir = ROOT / "runs" / "family"
    for label, name in (("pseudo3d (equal budget)", "pseudo3d"),
                        ("pseudo3d + mirror (equal budget)", "pseudo3d-mirror")):  # fmt: skip
        path = family_dir / name / f"{name}.safetensors"
        if path.exists():
            out[label] = path
    return out


def _peak_mb(method: str, model: Path | None, threads: int) -> tuple[float, float]:
    """Peak RSS (MB) while a fresh process fills a 1 mm head with a 30 ml tumour mask, and
    its RSS just before the fill (data loaded, libraries imported)."""
    res = subprocess.run(
        [sys.executable, "-c", _PEAK.format(threads=threads), method, str(model or "")],
        capture_output=True, text=True, check=True, cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": str(threads)},
    )  # fmt: skip
    peak, base, _ = res.stdout.split()[-3:]
    return float(peak), float(base)


def _training(card_path: Path) -> tuple[str, str]:
    """Steps and training wall hours of a model from its card, over every stage it was
    fine-tuned from (1 torch thread + 1-2 data workers on 2 cores: CPU-hours <= 2x)."""
    if not card_path.exists():
        return "—", "—"
    stage = json.loads(card_path.read_text()).get("training") or {}
    steps, seconds = 0, 0.0
    while stage:
        steps += int(stage.get("steps") or 0)
        seconds += float(stage.get("wall_seconds") or 0.0)
        stage = stage.get("fine_tuned_from")
    return f"{steps:,}", (f"{seconds / 3600:.2f}" if seconds else "—")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--methods", nargs="+",
                   default=["pseudo3d", "slicewise", "seqpos", "ddpm3d", "ldm3d", "wdm3d", "repaint"])  # fmt: skip
    p.add_argument("--kinds", nargs="+", default=["real-stroke", "tumour"])
    p.add_argument("--held-out", nargs="+", default=HELD_OUT)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-family", action="store_true",
                   help="leave out the equal-budget pseudo3d models without/with the mirror")
    p.add_argument("--section", default=SECTION, help="the RESULTS.md section to write")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs")
    p.add_argument("--cache-dir", default=str(CACHE))
    p.add_argument("--write-cards", action="store_true",
                   help="put each shipped non-default model's row (and the default's and "
                        "nonlocal's beside it) into its card, for --list-models")  # fmt: skip
    args = p.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    from bidsfill.fill.methods import classical_methods
    from bidsfill.train.scorecard import FillerSpec, model_params, score_cases

    start, load = time.perf_counter(), os.getloadavg()[0]
    cache = Path(args.cache_dir)
    cases = held_out_cases(args.held_out, args.kinds, cache)
    models = _models(args.methods, family=not args.no_family)
    fillers = [FillerSpec(m, m) for m in classical_methods() if m != "fsl"]
    for label, path in models.items():
        # the scorecard's parameters, so its cached rows of the default are reused
        fillers.append(FillerSpec(label, label.split(" ")[0], model_params(path)))
    rows = score_cases(cases, fillers, n_threads=args.threads, log=print,
                       cache=cache / "scorecard_rows.jsonl")  # fmt: skip
    means = filler_means(rows, [f.label for f in fillers])
    head = ["filler", *(c[1] for c in COLUMNS), "peak MB", "training steps", "training h"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for f in fillers:
        cells = [f"`{f.label}`", *metric_cells(means[f.label], COLUMNS)]
        model = models.get(f.label)
        peak = "—"
        if not args.no_memory:
            peak_mb, base_mb = _peak_mb(f.method, model, args.threads)
            peak = f"{peak_mb:.0f} (+{peak_mb - base_mb:.0f})"
        steps, hours = _training(model.with_suffix(".json")) if model else ("—", "—")
        cells += [peak, steps, hours]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["| *Durrer et al. 2025, Table 2 (BraTS, GPU; SSIM / MSE / PSNR in the mask)* |"
              + " |" * (len(head) - 1)]  # fmt: skip
    for name, (ssim, mse, psnr) in PAPER.items():
        cells = [name, "—", f"{psnr:.2f}", f"{ssim:.3f}", f"{mse:.4f}"] + ["—"] * (len(head) - 5)
        lines.append("| " + " | ".join(cells) + " |")
    body = "\n".join(
        [
            f"{len(cases)} cases: the held-out scans "
            + ", ".join(sorted({c.name.split("#")[0] for c in cases}))
            + f" with one mask per kind ({', '.join(args.kinds)}), as the default model's "
            "scorecard places them. Metrics in the mask (edge: a 2-voxel band on both "
            "sides of its edge); Dice of Atropos segmentations of the fill and the truth "
            "inside the mask; fill seconds on 1 thread; peak MB: resident memory sampled "
            "while a fresh process fills the 1 mm MNI152 head with a 30 ml tumour mask (in "
            "brackets: its growth over the process before the fill, libraries and data loaded). Training steps and wall hours "
            "from each card, every stage included (1 torch thread and 1-2 data workers on a "
            "shared 2-core CPU, so at most twice as many CPU-hours); `pseudo3d` is the "
            "shipped default, `pseudo3d (equal budget)` the same recipe from scratch with "
            "the others' budget, `pseudo3d + mirror` that recipe with Santorum et al.'s "
            "contralateral channel about each scan's estimated mid-sagittal plane.",
            "",
            *lines,
            "",
            run_line("compare_architectures.py", args.threads, load, start) + " (cached rows reused).",
        ]
    )
    print(body)
    write_section(HERE / "RESULTS.md", args.section, body)
    if args.write_cards:
        _write_cards(models, means, len(cases), args.section)


def _write_cards(models: dict[str, Path], means: dict, n_cases: int, section: str) -> None:
    """Each shipped model other than the default (whose card has its own scorecard) gets
    its comparison row in its card; the weights, and so their sha256, are untouched."""
    keys = ("brats_psnr_01", "brats_ssim", "brats_mse", "ssim3d")
    rows = {label: {k: round(float(means[label][k]), 4) for k in keys} for label in means}
    for label, path in models.items():
        card_path = path.with_suffix(".json")
        if label == "pseudo3d" or path.parent != MODELS or not card_path.exists():
            continue
        card = json.loads(card_path.read_text())
        card["comparison"] = {"label": label, "cases": n_cases,
                              "section": f"benchmarks/RESULTS.md, {section}",
                              "fillers": rows}  # fmt: skip
        card_path.write_text(json.dumps(card, indent=2) + "\n")


if __name__ == "__main__":
    main()
