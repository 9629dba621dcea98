"""Export the stage-3 default model and complete its card with provenance.

    .venv/bin/python scripts/export_default.py [--run-dir runs/pseudo3d-residual]

Writes ``bidsfill/data/models/pseudo3d.safetensors`` + ``.json`` from the run's latest
checkpoint (EMA weights) with the default sampling, then adds what the checkpoint cannot
know: each training scan's source and licence (from the dataset's participants.tsv), the
real lesion-mask sets with their licences and counts, the held-out subjects, and where
the stage ran when the checkpoint did not record it. The sha256 in the card covers the
weights only, so completing the card leaves it valid.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
MODEL = ROOT / "bidsfill" / "data" / "models" / "pseudo3d.safetensors"
HELD_OUT = {
    "ixi015": "2 mm whole head with skull (IXI, Philips 3T)",
    "fsconf01": "1 mm FreeSurfer-conformed head with skull (licence unclear: not trainable)",
    "ds2748s61": "0.87 mm skull-stripped, float32 (ds002748 scanner)",
    "head01": "1.6 mm whole head with skull (licence unclear: not trainable)",
}
MASK_LICENCES = {
    "stroke-soop": "BSD-2-Clause (Chris Rorden); SOOP ds004889 CC0",
    "stroke-lesymap": "unclear (LESYMAP Apache-2.0; data courtesy of MRRI)",
    "stroke-lqt": "unclear (LQT GPL-2; example data without terms)",
    "ms-openms": "CC-BY (Lesjak et al. 2017)",
}


def _portable(value: object) -> object:
    """The card with no machine's absolute paths: ``.../shared/data/X`` -> ``shared/data/X``."""
    if isinstance(value, dict):
        return {k: _portable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_portable(v) for v in value]
    if isinstance(value, str) and "/shared/data/" in value and value.startswith("/"):
        return "shared/data/" + value.split("/shared/data/", 1)[1]
    return value


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run-dir", type=Path, default=ROOT / "runs" / "pseudo3d-residual")
    p.add_argument("--out", type=Path, default=MODEL, help="weights path (card beside it)")
    p.add_argument("--steps", type=int, default=1, help="default DDIM steps in the card")
    p.add_argument("--n-samples", type=int, default=1, help="default fills averaged")
    p.add_argument("--flip", action="store_true",
                   help="default: every other sample from the left-right mirrored crop")  # fmt: skip
    p.add_argument("--antithetic", action="store_true",
                   help="default: every second sample starts from the negated noise of the one before")  # fmt: skip
    p.add_argument("--edge-taper", type=float, default=None, metavar="MM",
                   help="default: the correction rises from the mask edge over this depth")  # fmt: skip
    p.add_argument("--sampling", default=None,
                   help="the card's whole default sampling as JSON (overrides the five above)")  # fmt: skip
    p.add_argument("--real-max-ml", type=float, default=120.0)
    p.add_argument("--window-overlap", type=int, default=2,
                   help="z-window overlap at inference (training saw single windows)")  # fmt: skip
    args = p.parse_args()
    from bidsfill.train.export import export_checkpoint

    sampling = {"steps": args.steps, "n_samples": args.n_samples, "flip": args.flip}
    if args.antithetic:
        sampling["antithetic"] = True
    if args.edge_taper is not None:
        sampling["edge_taper_mm"] = args.edge_taper
    export_checkpoint(
        args.run_dir, args.out, sampling=json.loads(args.sampling) if args.sampling else sampling
    )
    card_path = args.out.with_suffix(".json")
    card = json.loads(card_path.read_text())
    with open(DATA / "healthy-t1w" / "participants.tsv", newline="") as fh:
        people = {r["participant_id"]: r for r in csv.DictReader(fh, delimiter="\t")}
    training = card["training"]
    stage = training
    while stage:  # this stage and every earlier one it was fine-tuned from
        for item in stage.get("training_data") or []:
            sub = item["name"].split("_")[0]
            if sub in people:
                item["licence"] = people[sub]["licence"]
                item["kind"] = people[sub]["kind"]
            elif item["name"].startswith("MNI152"):
                item["licence"] = "ICBM 2009 copyright notice (free use with notice), via nilearn"
        stage = stage.get("fine_tuned_from")
    with open(DATA / "lesion-masks" / "index.tsv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh, delimiter="\t")]
    used = [r for r in rows if float(r["volume_ml"]) <= args.real_max_ml]
    training["real_masks"] = {
        "folder": "shared/data/lesion-masks (MNI152 1 mm), placed through each scan's "
        "affine MNI registration",
        "max_ml": args.real_max_ml,
        "count": len(used),
        "by_source": dict(Counter(r["source"] for r in used)),
        "licences": MASK_LICENCES,
    }
    training["held_out"] = [
        {
            "participant": f"sub-{k}",
            "why": v,
            "licence": people.get(f"sub-{k}", {}).get("licence", ""),
        }
        for k, v in HELD_OUT.items()
    ]
    training["data_note"] = (
        "Small data: 12 real single subjects from 4 sources (ds002748, IXI, a Philips "
        "ADNI-protocol volunteer, niimath) and 3 templates; 1,202 real lesion masks. "
        + (
            "Stage 3 held out every scan whose licence is unclear; stages 1-2 (which it "
            "starts from) trained on the left half of sub-gd01 (licence unclear), so "
            "sub-gd01 is not a held-out scan of this model."
            if training.get("fine_tuned_from")
            else "Trained from scratch on these scans only; every scan whose licence is "
            "unclear was left out."
        )
    )
    if not training.get("ran_on"):
        training["ran_on"] = {
            "device": "cpu",
            "machine": platform.machine(),
            "cpu_threads": 1,
            "data_workers": 2,
            "note": "2-core shared machine, recorded at export",
        }
    card["preprocessing"].setdefault("context_fraction", 0.25)
    card["preprocessing"]["window_overlap"] = args.window_overlap
    card_path.write_text(json.dumps(_portable(card), indent=2) + "\n")
    print(f"{args.out} ({os.path.getsize(args.out) / 1e6:.1f} MB), card completed")


if __name__ == "__main__":
    main()
