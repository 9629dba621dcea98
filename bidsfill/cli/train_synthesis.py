"""``bidsfill-train --task synthesize``: train a cWDM missing-contrast model.

    bidsfill-train --task synthesize --target FLAIR --sources T1w T2w \\
        --bids-dir DATA --participant-label ms07 ms19 --val-participant-label ms26 \\
        --run-dir runs/cwdm-flair --steps 20000 --max-minutes 60 \\
        --channels 16 32 64 --patch 64 64 64 --export models/cwdm-flair.safetensors

Every session with the target and all sources is used; held-out participants
(--val-participant-label) are never trained on and are recorded in the card. Re-running
the same command resumes from ``<run-dir>/latest.pt``.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
from pathlib import Path
from typing import Any

__all__ = ["main_synthesize"]

LOGGER = logging.getLogger("bidsfill.train")


def _relative(path: Path) -> str:
    """A path that holds on any machine: from the first 'shared' or dataset folder on."""
    parts = Path(path).resolve().parts
    for anchor in ("shared",):
        if anchor in parts:
            return "/".join(parts[parts.index(anchor):])
    return "/".join(parts[-4:])


def main_synthesize(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from bidsfill.bids.training import synthesis_scans
    from bidsfill.synthesis.model import CONTRASTS, SynthesisCard, save_synthesis_model
    from bidsfill.synthesis.regression import LinearBaseline
    from bidsfill.synthesis.training import (
        load_subject,
        target_reference,
        train_synthesis,
        training_record,
    )

    if not args.target or not args.sources:
        print("bidsfill-train: --task synthesize needs --target and --sources.", file=sys.stderr)
        return 64
    bad = [c for c in (args.target, *args.sources) if c not in CONTRASTS]
    if bad or args.target in args.sources:
        print(f"bidsfill-train: contrasts must be distinct and among {', '.join(CONTRASTS)} "
              f"(got {', '.join(bad) or args.target} twice).", file=sys.stderr)  # fmt: skip
        return 64
    if args.bids_dir is None:
        print("bidsfill-train: --task synthesize needs --bids-dir.", file=sys.stderr)
        return 64
    torch.set_num_threads(max(1, args.threads))
    held = {lab.removeprefix("sub-").partition(":")[0] for lab in args.val_participant_label}
    labels = [lab.removeprefix("sub-") for lab in args.participant_label or []]
    try:
        scans = synthesis_scans(args.bids_dir, [args.target, *args.sources],
                                sorted(set(labels) | held) if labels else None)  # fmt: skip
    except ValueError as err:
        print(f"bidsfill-train: {err}", file=sys.stderr)
        return 64
    train_scans = [s for s in scans if s["participant"] not in held]
    val_scans = [s for s in scans if s["participant"] in held]
    if not train_scans:
        print("bidsfill-train: no training session is left after the held-out ones.",
              file=sys.stderr)  # fmt: skip
        return 64
    def name(s: dict[str, Any]) -> str:
        return f"sub-{s['participant']}" + (f"_ses-{s['session']}" if s["session"] else "")

    subjects = [load_subject(name(s), s["paths"], args.target, args.sources) for s in train_scans]
    LOGGER.info("Training on %s; held out: %s", [s.name for s in subjects],
                [name(s) for s in val_scans])  # fmt: skip
    card = SynthesisCard.new(args.target, args.sources, args.channels, args.num_res_blocks,
                             args.norm_groups, target_range=target_reference(subjects),
                             steps=args.sampling_steps or 10)  # fmt: skip
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else (
        "cpu" if args.device == "auto" else args.device)  # fmt: skip
    result = train_synthesis(subjects, card, steps=args.steps, max_minutes=args.max_minutes,
                             patch=args.patch, batch_size=args.batch_size, lr=args.lr,
                             ema_decay=args.ema_decay, seed=args.seed, run_dir=args.run_dir,
                             checkpoint_every=args.checkpoint_every, device=device,
                             log_every=args.log_every)  # fmt: skip
    baseline = LinearBaseline.fit([list(s.sources) for s in subjects],
                                  [s.target for s in subjects], [s.brain for s in subjects])  # fmt: skip
    record = training_record(subjects, result,
        ran_on={"device": device, "machine": platform.machine(), "cpu_threads": args.threads,
                "cpu_count": os.cpu_count(), "load_average_1min": round(os.getloadavg()[0], 2)},
        hyperparameters={"steps": args.steps, "max_minutes": args.max_minutes,
                         "batch_size": args.batch_size, "lr": args.lr, "patch": list(args.patch),
                         "ema_decay": args.ema_decay, "seed": args.seed},
        budget=f"{result.steps} steps in {result.seconds / 60:.1f} min on {device} "
               f"({args.threads} thread(s)); the paper trained 1.2 M steps on an A100",
        training_data=[{"name": f"{s.name}_{args.target}", "source": _relative(s.paths[args.target]),
                        "contrasts": [args.target, *args.sources],
                        "licence": next((t["licence"] for t in train_scans
                                         if name(t) == s.name), None) or "see the dataset"}
                       for s in subjects],
        held_out=[{"participant": name(s), "licence": s["licence"] or "see the dataset"}
                  for s in val_scans],
        regression_baseline=baseline.to_dict(),
        note="Little data: a handful of subjects and a short CPU run, far from the paper's "
             "1251 BraTS cases and 1.2 M steps. Expect blurry, approximate contrast; do not "
             "use a synthetic image for diagnosis.")  # fmt: skip
    card = card.replace(training=record)
    LOGGER.info("Trained %d steps in %.0f s; loss (last 50) %s", result.steps, result.seconds,
                record["final_loss_mean_last_50"])  # fmt: skip
    if args.export is not None:
        print(save_synthesis_model(result.model, card, args.export))
    del np
    return 0
