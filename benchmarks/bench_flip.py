"""The default's left-right flip (its card's ``sampling.flip``), measured on scans that are
neither in its training set nor in its scorecard.

    python benchmarks/bench_flip.py [--subjects ms07 ms19 ms26 tcgadu7294] [--threads 1]

With ``flip`` every other one of the fills the default averages is made from the
left-right mirrored crop and mirrored back, at no extra cost. Whether that is on by
default is decided here, not on the scorecard: the T1w scans of the multi-contrast
patients (``shared/data/multicontrast``; the default was trained on healthy scans only)
get one mask per kind in their healthy tissue (their own lesions, grown by 2 voxels, are
cut out of every mask, so the T1w under it is the truth), and are filled by ``nonlocal``
and by the default with and without the flip, the card's other sampling settings kept.
Metrics in the mask and in the 2-voxel band around its edge; no tissue segmentation.
Recorded in "## Flip on unseen patients" of RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from _heldout import PATIENT_CACHE, PATIENTS, patient_cases
from _results import filler_means, metric_cells, run_line, write_section

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MODEL = ROOT / "bidsfill" / "data" / "models" / "pseudo3d.safetensors"
SECTION = "Flip on unseen patients"
COLUMNS = [
    ("brats_psnr_01", "PSNR01", "{:.2f}"),
    ("brats_ssim", "SSIM", "{:.3f}"),
    ("brats_mse", "MSE", "{:.4f}"),
    ("ssim3d", "3D SSIM", "{:.3f}"),
    ("band_psnr_01", "edge PSNR01", "{:.2f}"),
    ("seconds", "fill s", "{:.1f}"),
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--subjects", nargs="+", default=list(PATIENTS))
    p.add_argument("--kinds", nargs="+", default=["real-ms", "tumour"])
    p.add_argument("--model", type=Path, default=MODEL)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cache-dir", type=Path, default=PATIENT_CACHE,
                   help="registrations (shared with compare_flair.py) and scored rows")  # fmt: skip
    args = p.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    from bidsfill.train.scorecard import FillerSpec, model_params, per_volume, score_cases

    start, load = time.perf_counter(), os.getloadavg()[0]
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    cases = patient_cases(args.subjects, args.kinds, args.cache_dir)
    base = model_params(args.model)
    sha = base["model_sha"]
    fillers = [
        FillerSpec("nonlocal", "nonlocal"),
        FillerSpec("default, no flip", "pseudo3d", {**base, "flip": False}),
        FillerSpec("default, flip", "pseudo3d", {**base, "flip": True}),
    ]
    rows = score_cases(cases, fillers, tissues=False, n_threads=args.threads, log=print,
                       cache=args.cache_dir / "flip_rows.jsonl")  # fmt: skip
    means = filler_means(rows, [f.label for f in fillers])
    head = ["filler", *(c[1] for c in COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for f in fillers:
        lines.append(
            "| " + " | ".join([f"`{f.label}`", *metric_cells(means[f.label], COLUMNS)]) + " |"
        )
    by_scan = per_volume(rows)
    per_scan = ["| scan | " + " | ".join(f.label for f in fillers) + " |",
                "|---|" + "---|" * len(fillers)]  # fmt: skip
    for scan, got in by_scan.items():
        per_scan.append(
            f"| {scan} | "
            + " | ".join(f"{got.get(f.label, float('nan')):.2f}" for f in fillers)
            + " |"
        )
    body = "\n".join(
        [
            f"Model `{args.model.name}` (sha256 `{sha[:12]}…`), its card's sampling with "
            f"`flip` off and on. {len(cases)} cases on patients it never saw "
            f"({', '.join(args.subjects)}; kinds {', '.join(args.kinds)}), masks in healthy "
            "tissue with each patient's own lesions cut out.",
            "",
            *lines,
            "",
            "PSNR01 per scan:",
            "",
            *per_scan,
            "",
            run_line("bench_flip.py", args.threads, load, start) + ".",
        ]
    )
    print(body)
    write_section(HERE / "RESULTS.md", SECTION, body)


if __name__ == "__main__":
    main()
