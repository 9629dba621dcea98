"""With and without FLAIR (issue 15 part 1): the same fine-tuning of the default model with
and without the FLAIR channel, on multi-contrast patients it never saw.

    python benchmarks/compare_flair.py [--threads 1]

Fills held-out patients of ``shared/data/multicontrast`` (sub-ms26, an MS patient, and
sub-tcgadu7294, a glioma patient; both have a T1w and a FLAIR) with one mask per kind,
placed in their healthy tissue (their own lesions, grown by 2 voxels, are cut out of
every mask, so the T1w under each mask is the truth). Inside each mask the FLAIR shows a
simulated bright lesion (``bright_lesion``), as a patient's FLAIR would, so the FLAIR
tells where the lesion ends, not what lies under it. Rows: ``nonlocal``, the shipped
default, and the two models of ``scripts/train_flair.sh`` (``runs/flair``): fine-tuned
on sub-ms07 and sub-ms19 with the same budget, one with the FLAIR channel and one
without. Metrics in the mask and in the 2-voxel band around its edge; Dice of Atropos
segmentations inside the mask. Recorded in "## With and without FLAIR" of RESULTS.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import sys
import time
from pathlib import Path

import numpy as np
from _results import filler_means, metric_cells, run_line, write_section

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = ROOT.parent / "shared" / "data"
RUNS = ROOT / "runs" / "flair"
SECTION = "With and without FLAIR (issue 15)"
#: The cases' masks, kept by the first run (registration differs between machines).
MASKS = HERE / "flair_masks.npz"
COLUMNS = [
    ("brats_psnr_01", "PSNR01", "{:.2f}"),
    ("brats_ssim", "SSIM", "{:.3f}"),
    ("ssim3d", "3D SSIM", "{:.3f}"),
    ("band_psnr_01", "edge PSNR01", "{:.2f}"),
    ("band_ssim3d", "edge 3D SSIM", "{:.3f}"),
    ("dice_GM", "Dice GM", "{:.3f}"),
    ("dice_WM", "Dice WM", "{:.3f}"),
    ("dice_CSF", "Dice CSF", "{:.3f}"),
    ("seconds", "fill s", "{:.1f}"),
]


def flair_cases(subjects: list[str], kinds: list[str], cache: Path) -> list:
    """Scorecard-style cases on the held-out patients, each with its FLAIR lesion."""
    from bidsfill.bids.training import training_scans
    from bidsfill.evaluate.simulate import bright_lesion
    from bidsfill.train.scorecard import held_out_volumes, kept_scorecard_cases
    from bidsfill.train.validation import ValidationCase

    scans = training_scans(DATA / "multicontrast", subjects, flair=True)
    volumes = held_out_volumes(scans, dict.fromkeys(subjects), cache)
    cases = kept_scorecard_cases(volumes, kinds, real_masks=DATA / "lesion-masks", masks_file=MASKS)
    out = []
    for i, case in enumerate(cases):
        vol = case.volume
        flair = bright_lesion(vol.extras["flair"], case.mask, vol.wm, vol.zooms,
                              np.random.default_rng([2026, i]))  # fmt: skip
        vol = dataclasses.replace(vol, extras={**vol.extras, "flair": flair})
        out.append(ValidationCase(case.name, vol, case.mask))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--subjects", nargs="+", default=["ms26", "tcgadu7294"])
    p.add_argument("--kinds", nargs="+", default=["real-ms", "real-stroke", "ms", "tumour"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", type=Path, default=RUNS)
    args = p.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    from bidsfill.train.scorecard import FillerSpec, score_cases

    start, load = time.perf_counter(), os.getloadavg()[0]
    cache = args.runs / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    cases = flair_cases(args.subjects, args.kinds, cache)
    models = {
        "pseudo3d (shipped default, T1w only)": (ROOT / "bidsfill/data/models/pseudo3d.safetensors", False),
        "pseudo3d fine-tuned, T1w only": (args.runs / "pseudo3d-t1w/pseudo3d-t1w.safetensors", False),
        "pseudo3d fine-tuned + FLAIR": (args.runs / "pseudo3d-flair/pseudo3d-flair.safetensors", True),
    }  # fmt: skip
    fillers = [FillerSpec("nonlocal", "nonlocal")]
    for label, (path, flair) in models.items():
        if not path.exists():
            sys.exit(f"{path} is missing: run scripts/train_flair.sh first.")
        sha = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        params = {"model": str(path), "device": "cpu", "model_sha": sha}
        fillers.append(FillerSpec(label, "pseudo3d", params, contrasts=flair))
    rows = score_cases(cases, fillers, n_threads=args.threads, log=print,
                       cache=cache / "rows.jsonl")  # fmt: skip
    means = filler_means(rows, [f.label for f in fillers])
    head = ["filler", *(c[1] for c in COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for f in fillers:
        cells = [f"`{f.label}`", *metric_cells(means[f.label], COLUMNS)]
        lines.append("| " + " | ".join(cells) + " |")
    per_case = ["| case | mask ml | " + " | ".join(f.label for f in fillers) + " |",
                "|---|---|" + "---|" * len(fillers)]  # fmt: skip
    for case in cases:
        got = {r["filler"]: r for r in rows if r["case"] == case.name}
        ml = next(iter(got.values()))["mask_ml"]
        cells = [f"{got[f.label]['brats_psnr_01']:.2f}" if f.label in got else "—" for f in fillers]
        per_case.append(f"| {case.name} | {ml:.1f} | " + " | ".join(cells) + " |")
    body = "\n".join(
        [
            f"{len(cases)} cases on held-out patients ({', '.join(args.subjects)}; "
            f"kinds {', '.join(args.kinds)}), masks in healthy tissue with each patient's own "
            "lesions cut out, a simulated bright lesion in the FLAIR under each mask. Both "
            "fine-tuned models start from the shipped default and had the same data "
            "(sub-ms07, sub-ms19), masks, seed and wall-clock budget "
            "(`scripts/train_flair.sh`). Edge: the 2-voxel band on both sides of the mask's "
            "edge.",
            "",
            *lines,
            "",
            "PSNR01 per case:",
            "",
            *per_case,
            "",
            run_line("compare_flair.py", args.threads, load, start) + ".",
        ]
    )
    print(body)
    write_section(HERE / "RESULTS.md", SECTION, body)


if __name__ == "__main__":
    main()
