"""The shipped model's scorecard: it and every classical filler on held-out real scans.

Runs ``bidsfill-train --scorecard`` on the shipped ``pseudo3d`` weights with the subjects
its training held out (four real scans: with and without skull, 0.87 to 2 mm, four
sources), one real MS mask, one real stroke mask and synthetic MS-like and tumour masks
each, which writes the numbers into the model card; then records the tables, issue 12's
bar and the machine in the ``## Default model scorecard`` section of
``benchmarks/RESULTS.md`` and one row per fill in ``benchmarks/scorecard.tsv``.

    python benchmarks/scorecard.py [--adapt-steps N] [--threads 1]

Rows are cached in ``RUN_DIR/cache/scorecard_rows.jsonl`` (keyed by case, filler, its
parameters and the model's sha256), so a rerun only fills what changed. Masks are placed
through each scan's MNI registration (antspyx, cached in ``RUN_DIR/cache``); that
registration differs between machines, and the synthetic kinds pick lesion centres by
index among white-matter voxels, so the masks scored are kept in
``benchmarks/scorecard_masks.npz`` and every later run scores those (a case not in it is
drawn and added).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from _results import write_section

HERE = Path(__file__).resolve().parent
MODEL = HERE.parent / "bidsfill" / "data" / "models" / "pseudo3d.safetensors"
DATA = HERE.parent.parent / "shared" / "data"
SECTION = "Default model scorecard"
#: The scored masks, kept so that every machine scores the same ones (bit-packed, small).
MASKS = HERE / "scorecard_masks.npz"
HELD_OUT = ["ixi015", "fsconf01", "ds2748s61", "head01"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bids-dir", default=str(DATA / "healthy-t1w"))
    p.add_argument("--real-masks", default=str(DATA / "lesion-masks"))
    p.add_argument("--held-out", nargs="+", default=HELD_OUT)
    p.add_argument("--kinds", nargs="+", default=["real-ms", "real-stroke", "ms", "tumour"])
    p.add_argument("--adapt-steps", type=int, default=0, help="also score --adapt-steps N")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--run-dir", default=str(HERE.parent / "runs" / "scorecard"),
                   help="its cache/ keeps the registrations and the scored rows")  # fmt: skip
    args = p.parse_args()
    from bidsfill.cli.train import main as train_main
    from bidsfill.train.scorecard import markdown_table

    start = time.perf_counter()
    load = os.getloadavg()[0]
    tsv = HERE / "scorecard.tsv"
    argv = [
        "--scorecard", str(MODEL), "--bids-dir", args.bids_dir, "--real-masks",
        args.real_masks, "--val-participant-label", *args.held_out, "--scorecard-kinds",
        *args.kinds, "--threads", str(args.threads), "--run-dir", args.run_dir,
        "--scorecard-tsv", str(tsv), "--scorecard-adapt-steps", str(args.adapt_steps),
        "--scorecard-masks", str(MASKS),
    ]  # fmt: skip
    if train_main(argv) != 0:
        raise SystemExit("scorecard failed")
    card = json.loads(MODEL.with_suffix(".json").read_text())
    entry = card["scorecard"]
    sampling = card.get("sampling", {})
    bar = entry["bar"]
    volumes = entry["psnr01_per_volume"]
    fillers = list(entry["fillers"])
    per_volume = [
        "| held-out scan | " + " | ".join(fillers) + " |",
        "|---|" + "---|" * len(fillers),
        *(
            f"| {name} | " + " | ".join(f"{d[f]:.2f}" if f in d else "—" for f in fillers) + " |"
            for name, d in volumes.items()
        ),
    ]
    lines = [
        f"Model `{MODEL.name}` (sha256 `{card['sha256'][:12]}…`), sampled with its card "
        f"defaults (DDIM {sampling.get('steps', 20)} step(s), mean of "
        f"{sampling.get('n_samples', 1)} fill(s)). Held-out real scans no stage saw, at "
        "their own resolution: "
        + ", ".join(
            f"{v['name']} ({'x'.join(f'{z:g}' for z in v['zooms'])} mm)" for v in entry["held_out"]
        )  # fmt: skip
        + f". Masks: one per kind ({', '.join(entry['masks']['kinds'])}) per scan, seed "
        f"{entry['masks']['seed']}; real masks from the shared lesion-mask sets moved in "
        "through each scan's MNI registration; "
        f"{min(c['mask_ml'] for c in entry['cases']):.1f}-"
        f"{max(c['mask_ml'] for c in entry['cases']):.1f} ml. Every filler fills the same "
        "masks through `fill_image`. BraTS 2023 inpainting metrics inside the mask, 3D SSIM, "
        "in-mask Dice and whole-brain tissue-volume error with the truth and the fill "
        f"segmented alike ({entry['segmenter']}); fill seconds on 1 thread beside other jobs.",
        "",
        markdown_table(entry["fillers"]),
        "",
        "PSNR01 (dB) per held-out scan:",
        "",
        *per_volume,
        "",
        "By mask kind (PSNR01 / SSIM / Dice GM / Dice WM):",
        "",
        "| kind | " + " | ".join(fillers) + " |",
        "|---|" + "---|" * len(fillers),
        *(
            f"| {kind} | "
            + " | ".join(
                "{:.2f} / {:.3f} / {} / {}".format(
                    s[f]["brats_psnr_01"],
                    s[f]["brats_ssim"],
                    *(
                        ("—" if s[f][m] is None else f"{s[f][m]:.3f}")
                        for m in ("dice_GM", "dice_WM")
                    ),
                )  # fmt: skip
                if f in s and s[f].get("brats_psnr_01") is not None
                else "—"
                for f in fillers
            )
            + " |"
            for kind, s in entry["by_kind"].items()
        ),
        "",
        "Issue 12's bar: "
        + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in bar.items() if k != "all")
        + f" → **{'met' if bar['all'] else 'not met'}**.",
        "",
        f"`python benchmarks/scorecard.py {' '.join(sys.argv[1:])}` "
        f"({time.strftime('%Y-%m-%d')}). "
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, {platform.system()} "
        f"{platform.release()}, {args.threads} thread(s), load average {load:.1f} at the "
        f"start; {time.perf_counter() - start:.0f} s in this run (cached rows reused). "
        "Rows per fill: `benchmarks/scorecard.tsv`.",
    ]
    body = "\n".join(lines)
    print(body)
    write_section(HERE / "RESULTS.md", SECTION, body)


if __name__ == "__main__":
    main()
