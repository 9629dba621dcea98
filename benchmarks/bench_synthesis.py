"""Missing-contrast synthesis on held-out subjects: cWDM against voxelwise regression.

    .venv/bin/python benchmarks/bench_synthesis.py [--model bidsfill/data/models/cwdm-flair]

Reads the model card for the target, sources, training subjects and held-out subjects;
fits the linear regression baseline on the same training subjects; synthesises the
target of each held-out subject and scores both against the real image inside the
brain (SSIM, PSNR, MSE on the [0, 1] normalised images, as in Friedrich et al. 2024
Table 1). Writes the section "## Missing-contrast synthesis" of benchmarks/RESULTS.md
(FLAIR; another target gets "## Missing-contrast synthesis: <target>").
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

from _results import write_section

ROOT = Path(__file__).resolve().parents[1]
SECTION = "Missing-contrast synthesis"


def _machine() -> str:
    return (f"{platform.platform()}, {platform.machine()}, {os.cpu_count()} CPUs, "
            f"Python {platform.python_version()}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=ROOT / "bidsfill/data/models/cwdm-flair")
    p.add_argument("--bids-dir", type=Path, default=ROOT.parent / "shared/data/multicontrast")
    p.add_argument("--steps", type=int, nargs="+", default=None,
                   help="DDIM steps to score (default: the card's).")  # fmt: skip
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--write-card", action="store_true",
                   help="also record the held-out scores in the model card's metrics "
                        "(the weights, and so their sha256, are unchanged)")  # fmt: skip
    p.add_argument("--results", type=Path, default=ROOT / "benchmarks/RESULTS.md")
    args = p.parse_args(argv)

    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from bidsfill.bids.training import synthesis_scans
    from bidsfill.synthesis.model import load_synthesis_model
    from bidsfill.synthesis.regression import LinearBaseline
    from bidsfill.synthesis.sample import brain_foreground, synthesize_normalised
    from bidsfill.synthesis.scores import synthesis_scores
    from bidsfill.synthesis.training import load_subject

    model, card = load_synthesis_model(args.model)
    contrasts = [card.target, *card.sources]
    train_names = {d["name"].split("_")[0] for d in card.training["training_data"]}
    held_names = {h["participant"] for h in card.training["held_out"]}
    scans = synthesis_scans(args.bids_dir, contrasts)

    def subject(s):  # noqa: ANN001, ANN202
        return load_subject(f"sub-{s['participant']}", s["paths"], card.target, card.sources)

    train = [subject(s) for s in scans if f"sub-{s['participant']}" in train_names]
    held = [subject(s) for s in scans if f"sub-{s['participant']}" in held_names]
    if not held:
        print("bench_synthesis: none of the held-out subjects is in the dataset.", file=sys.stderr)
        return 1
    baseline = LinearBaseline.fit([list(s.sources) for s in train], [s.target for s in train],
                                  [s.brain for s in train])  # fmt: skip
    steps_list = args.steps or [card.steps]
    rows = []
    for s in held:
        fg = brain_foreground(list(s.sources))
        pred = np.where(fg, baseline.predict(list(s.sources)), 0.0)
        rows.append((s.name, "linear regression", "-", synthesis_scores(pred, s.target, s.brain), 0.0))
        for k in steps_list:
            t0 = time.monotonic()
            y = synthesize_normalised(model, card, list(s.sources), steps=k, seed=0)
            sec = time.monotonic() - t0
            y = np.where(fg, y, 0.0)
            rows.append((s.name, f"cWDM ({card.name})", k, synthesis_scores(y, s.target, s.brain), sec))
        print(rows[-1], flush=True)
    lines = ["| held-out subject | method | DDIM steps | SSIM | PSNR (dB) | MSE | seconds |",
             "|---|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for name, method, k, sc, sec in rows:
        lines.append(f"| {name} | {method} | {k} | {sc['ssim']:.4f} | {sc['psnr']:.2f} | "
                     f"{sc['mse']:.5f} | {sec:.0f} |")  # fmt: skip
    tr = card.training
    body = "\n".join([
        f"Target {card.target} from {', '.join(card.sources)}; model `{card.name}` "
        f"(sha256 {str(card.sha256)[:12]}), {tr.get('budget', '?')}. Trained on "
        f"{', '.join(sorted(train_names))}; scored on the held-out "
        f"{', '.join(sorted(held_names))} against the real {card.target}. Metrics inside the "
        "brain (voxels where a source and the real target are non-zero) on images normalised "
        "as the paper does (0.1/99.9 percentile clip, [0, 1]); SSIM is 3D (Gaussian window "
        "11, sigma 1.5, data range 1) averaged over the brain; PSNR with data range 1. "
        f"The regression baseline is fitted on the same training subjects: intercept "
        f"{baseline.intercept:.3f}, coefficients "
        f"{', '.join(f'{c}={b:.3f}' for c, b in zip(card.sources, baseline.coefficients, strict=True))}.",
        "",
        *lines,
        "",
        f"Machine: {_machine()}; {args.threads} torch thread(s); load average at the end "
        f"{', '.join(f'{v:.1f}' for v in os.getloadavg())} (shared with other jobs, so "
        "seconds are upper bounds). Little data: two training subjects and a short CPU "
        "run; the paper's model saw 1251 cases and 1.2 M steps.",
    ])  # fmt: skip
    section = SECTION if card.target == "FLAIR" else f"{SECTION}: {card.target}"
    write_section(args.results, section, body)
    if args.write_card:
        import json

        card_path = Path(args.model).with_suffix(".json")
        data = json.loads(card_path.read_text())
        data.setdefault("metrics", {})["held_out"] = {
            f"{name} {method} ({k} steps)" if k != "-" else f"{name} {method}": sc
            for name, method, k, sc, _ in rows
        }
        card_path.write_text(json.dumps(data, indent=2) + "\n")
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
