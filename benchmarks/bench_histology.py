"""Histology repair as in Kropp et al. (issue 18): model vs Telea, biharmonic, nonlocal.

The held-out quarter of each real field (bottom-right, never seen in training) is cut
into square crops; each crop is masked with generated artefact masks (tear, hole,
border in turn) covering 5-50 %, and repaired by the shipped DDPM (RePaint, the card's
defaults), by the two classical inpainters and by bidsfill's nearest-patch
(nonlocal) filler run in 2D. Inside the mask: median relative error of
cell density and mean cell size (Otsu + watershed detector, bidsfill.microscopy.cells,
with the intact crop's threshold for every version), SSIM, PSNR and the radial
power-spectrum distance (bidsfill.microscopy.metrics). Writes histology_repair.tsv and
histology_repair.png here and the "## Histology repair" section of RESULTS.md.

    nice -n 10 .venv/bin/python benchmarks/bench_histology.py --threads 1
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from _results import write_section

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = ROOT.parent / "shared" / "data" / "histology"
FIELDS = {
    "sub-demics01": DATA / "sub-demics01/micr/sub-demics01_sample-01_BF.png",
    "sub-demics02": DATA / "sub-demics02/micr/sub-demics02_sample-01_acq-bestfocus_BF.png",
}
FRACTIONS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5)
KINDS = ("tear", "hole", "border")
METHODS = ("ddpm", "telea", "biharmonic", "nonlocal")


def _machine() -> str:
    return f"{platform.platform()}, {platform.machine()}, {os.cpu_count()} CPUs"


def crops(image: np.ndarray, size: int) -> list[tuple[str, np.ndarray]]:
    from bidsfill.microscopy.train import heldout_quarter

    ys, xs = heldout_quarter(image.shape)
    q = image[ys, xs]
    n = max(1, q.shape[0] // size)
    offs = np.linspace(0, q.shape[0] - size, n).astype(int) if n > 1 else [(q.shape[0] - size) // 2]
    return [(f"{ys.start + y},{xs.start + x}", q[y : y + size, x : x + size])
            for y in offs for x in offs]  # fmt: skip


def rel(a: float, b: float) -> float:
    return abs(a - b) / b if b and np.isfinite(a) and np.isfinite(b) else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--crop", type=int, default=192)
    ap.add_argument("--repeats", type=int, default=1, help="masks per crop and fraction")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="2 fractions, 1 crop (smoke test)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()

    import torch

    from bidsfill.microscopy.baselines import BASELINES
    from bidsfill.microscopy.cells import cell_stats, otsu_threshold
    from bidsfill.microscopy.io import read_image
    from bidsfill.microscopy.masks import artefact_mask
    from bidsfill.microscopy.metrics import masked_psnr, masked_ssim, spectrum_distance
    from bidsfill.microscopy.model import load_model, repaint_image

    torch.set_num_threads(args.threads)
    net, card = load_model(args.model)
    fractions = (0.1, 0.4) if args.quick else FRACTIONS
    rows = []
    t_start = time.monotonic()
    seconds = {m: [] for m in METHODS}
    for subject, path in FIELDS.items():
        image, _ = read_image(path)
        todo = crops(image, args.crop)[:1] if args.quick else crops(image, args.crop)
        for where, crop in todo:
            thr = otsu_threshold(crop)
            for fi, frac in enumerate(fractions):
                for rep in range(args.repeats):
                    seed = 1000 * fi + rep + sum(map(int, where.split(",")))
                    kind = KINDS[(fi + rep + len(rows)) % 3]
                    mask = artefact_mask(crop.shape, frac, kind, rng=seed)
                    truth = cell_stats(crop, mask, threshold=thr)
                    for method in METHODS:
                        t0 = time.monotonic()
                        if method == "ddpm":
                            out, _ = repaint_image(net, card, crop, mask, tile=None,
                                                   steps=args.steps, seed=seed)  # fmt: skip
                        else:
                            out = BASELINES[method](crop, mask)
                        seconds[method].append(time.monotonic() - t0)
                        assert np.array_equal(out[~mask], crop[~mask])
                        st = cell_stats(out, mask, threshold=thr)
                        rows.append({
                            "subject": subject, "crop": where, "fraction": frac, "kind": kind,
                            "method": method, "cells_true": truth["count"],
                            "cells": st["count"],
                            "density_err": rel(st["density_per_mm2"], truth["density_per_mm2"]),
                            "size_err": rel(st["mean_size_um2"], truth["mean_size_um2"]),
                            "ssim": masked_ssim(crop, out, mask, 255),
                            "psnr": masked_psnr(crop, out, mask, 255),
                            "spectrum": spectrum_distance(crop, out, mask),
                        })  # fmt: skip
                    print(f"{subject} {where} {frac:.2f} {kind}: " + ", ".join(
                        f"{r['method']} d{r['density_err']:.2f} s{r['size_err']:.2f} "
                        f"ssim{r['ssim']:.2f} spec{r['spectrum']:.2f}" for r in rows[-len(METHODS):]),
                        flush=True)  # fmt: skip
    wall = time.monotonic() - t_start
    tsv = HERE / "histology_repair.tsv"
    if not args.no_write:
        cols = list(rows[0])
        tsv.write_text("\t".join(cols) + "\n" + "".join(
            "\t".join(f"{r[c]:.4f}" if isinstance(r[c], float) else str(r[c]) for c in cols) + "\n"
            for r in rows))  # fmt: skip

    def med(method, key, frac=None):
        vals = [r[key] for r in rows if r["method"] == method and (frac is None or
                r["fraction"] == frac)]  # fmt: skip
        vals = [v for v in vals if np.isfinite(v)]
        return float(np.median(vals)) if vals else float("nan")

    # plot: errors against the masked fraction (as the paper's Fig. 4)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    titles = {"density_err": "cell density: median rel. error", "size_err":
              "mean cell size: median rel. error", "ssim": "SSIM in mask (median)",
              "spectrum": "power-spectrum distance (median)"}  # fmt: skip
    for ax, key in zip(axes, titles, strict=True):
        for method in METHODS:
            ax.plot([100 * f for f in fractions], [med(method, key, f) for f in fractions],
                    marker="o", label=method)  # fmt: skip
        ax.set_title(titles[key], fontsize=10)
        ax.set_xlabel("masked fraction (%)")
    axes[0].legend()
    fig.tight_layout()
    png = HERE / "histology_repair.png"
    if not args.no_write:
        fig.savefig(png, dpi=110)
    n_img = len(rows) // len(METHODS)
    lines = ["| method | density rel. err | size rel. err | SSIM | PSNR (dB) | spectrum dist. | "
             "s / crop |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for m in METHODS:
        lines.append(f"| {m} | {med(m, 'density_err'):.3f} | {med(m, 'size_err'):.3f} | "
                     f"{med(m, 'ssim'):.3f} | {med(m, 'psnr'):.2f} | {med(m, 'spectrum'):.3f} | "
                     f"{np.median(seconds[m]):.2f} |")  # fmt: skip
    per = ["| masked | " + " | ".join(f"{m} density / size" for m in METHODS) + " |",
           "|---|" + "---|" * len(METHODS)]  # fmt: skip
    for f in fractions:
        per.append(f"| {100 * f:.0f} % | " + " | ".join(
            f"{med(m, 'density_err', f):.3f} / {med(m, 'size_err', f):.3f}" for m in METHODS)
            + " |")  # fmt: skip
    training = card.training
    body = "\n".join([
        f"`benchmarks/bench_histology.py{' ' + ' '.join(sys.argv[1:]) if sys.argv[1:] else ''}`"
        f": {n_img} masked crops of {args.crop}x{args.crop} px from the held-out quarters of the "
        "two real fields (`../shared/data/histology`), masks 5-50 % (tear, hole, border in turn), "
        f"{args.repeats} mask(s) per crop and fraction. Medians over all crops and fractions; "
        "inside the mask only. Cells: Otsu + watershed detector with the intact crop's "
        "threshold; errors are relative to the intact crop. Spectrum distance: mean |log10| "
        "difference of the radially averaged power spectra (0 = same texture).",
        "",
        *lines,
        "",
        "Median relative error of cell density / mean cell size per masked fraction:",
        "",
        *per,
        "",
        f"Model: `{card.name}` (sha256 {str(card.sha256)[:12]}…), {training.get('steps')} "
        f"training steps ({training.get('wall_seconds')} s on 1 CPU thread), RePaint "
        f"{card.sampling.steps} steps, jump length 5, 2 samples per jump, one pass per crop. "
        f"Very little training data (two fields), so read the model's numbers as a pipeline "
        f"check, not as the paper's. Plot: `benchmarks/histology_repair.png`; rows: "
        f"`benchmarks/histology_repair.tsv`.",
        "",
        f"Machine: {_machine()}; {args.threads} torch thread(s); wall {wall:.0f} s; load "
        f"average at the end {', '.join(f'{v:.1f}' for v in os.getloadavg())} (shared with "
        "other jobs, so times are upper bounds).",
    ])  # fmt: skip
    print(body)
    if not args.no_write:
        write_section(HERE / "RESULTS.md", "Histology repair", body)


if __name__ == "__main__":
    main()
