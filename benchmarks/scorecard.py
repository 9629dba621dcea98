"""The shipped model's scorecard: it and every classical filler on held-out scans.

Runs ``bidsfill-train --scorecard`` on the shipped ``pseudo3d`` weights with the held-out
participants of its training (sub-head01, the right half of sub-gd01), which writes the
numbers into the model card, then records the table, the bar of issue 4 and the machine
in the ``## Default model scorecard`` section of ``benchmarks/RESULTS.md`` and one row per
fill in ``benchmarks/scorecard.tsv``.

    python benchmarks/scorecard.py [--cases 4] [--bids-dir /work/shared/data/healthy-t1w]

The masks are placed with tissue priors registered to each held-out scan (antspyx) and
cached in ``RUN_DIR/cache``; registration is not bit-reproducible across machines, so a
fresh cache draws other masks of the same kinds (the card lists each case's volume).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

from _results import write_section

HERE = Path(__file__).resolve().parent
MODEL = HERE.parent / "bidsfill" / "data" / "models" / "pseudo3d.safetensors"
SECTION = "Default model scorecard"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bids-dir", default="/work/shared/data/healthy-t1w")
    p.add_argument("--held-out", nargs="+", default=["head01", "gd01:right"])
    p.add_argument("--cases", type=int, default=4, help="masks per held-out volume")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--run-dir", default="runs/pseudo3d-default",
                   help="its cache/ keeps the registered tissue priors that place the masks")  # fmt: skip
    args = p.parse_args()
    from bidsfill.cli.train import main as train_main

    start = time.perf_counter()
    tsv = HERE / "scorecard.tsv"
    argv = [
        "--scorecard", str(MODEL), "--bids-dir", args.bids_dir,
        "--val-participant-label", *args.held_out, "--scorecard-cases", str(args.cases),
        "--threads", str(args.threads), "--run-dir", args.run_dir, "--scorecard-tsv", str(tsv),
    ]  # fmt: skip
    if train_main(argv) != 0:
        raise SystemExit("scorecard failed")
    card = json.loads(MODEL.with_suffix(".json").read_text())
    entry = card["scorecard"]
    from bidsfill.train.scorecard import markdown_table

    sampling = card.get("sampling", {})
    checks = entry["bar_vs_nawm"]
    lines = [
        f"Model `{MODEL.name}` (sha256 `{card['sha256'][:12]}…`), sampled with its card "
        f"defaults (DDIM {sampling.get('steps', 20)} steps, mean of "
        f"{sampling.get('n_samples', 1)} fill(s)). Held-out scans it never saw: "
        f"{', '.join(entry['held_out'])}; {len(entry['cases'])} masks from the training "
        f"mask generator (seed {entry['masks']['seed']}, kinds {entry['masks']['kinds']}), "
        f"{min(c['mask_ml'] for c in entry['cases']):.1f}-"
        f"{max(c['mask_ml'] for c in entry['cases']):.1f} ml. Every filler fills the same "
        "masks through `fill_image`; masked PSNR and 3D SSIM against the healthy truth; "
        "Dice of GM/WM/CSF inside the mask with the truth and the fill segmented alike "
        f"({entry['segmenter']}; a tissue absent from both segmentations of a case is left "
        "out of that mean).",
        "",
        markdown_table(entry["fillers"]),
        "",
        "Issue 4's bar against `nawm`: "
        + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in checks.items() if k != "all")
        + f" → **{'met' if checks['all'] else 'not met'}**.",
        "",
        f"`python benchmarks/scorecard.py {' '.join(sys.argv[1:])}` "
        f"({time.strftime('%Y-%m-%d')}). "
        f"Machine: {platform.machine()}, {platform.system()} {platform.release()}, "
        f"{args.threads} thread(s); {time.perf_counter() - start:.0f} s in all. "
        "Rows per fill: `benchmarks/scorecard.tsv`.",
    ]
    body = "\n".join(lines)
    print(body)
    write_section(HERE / "RESULTS.md", SECTION, body)


if __name__ == "__main__":
    main()
