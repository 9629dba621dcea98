"""Fill quality against network evaluations per crop for the shipped default (issue 17).

The shipped model predicts the clean correction directly (``prediction_type: sample``),
so one DDIM step from pure noise is its posterior-mean estimate: the direct-prediction
route of fastWDM3D, used as the few-step sampler instead of a distillation. This script
measures what more steps buy: it fills held-out scorecard cases (the scorecard's
subjects, masks and metrics, without the tissue segmentations; rows cached beside the
scorecard's, keyed by case, sampler and weights) with DDIM at 1, 2, 5, 10
and 20 steps (``--steps`` for others), one sample each, and records masked PSNR01 and
SSIM against evaluations, plus the nonlocal prefill alone, in "## Quality against
network evaluations" of RESULTS.md and ``sampling_steps.png``.

    python benchmarks/bench_sampling_steps.py [--subjects ds2748s61 ixi015] [--steps 1 2 5]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import sys
import time
from pathlib import Path

from _heldout import CACHE, held_out_cases
from _results import write_section

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MODEL = ROOT / "bidsfill" / "data" / "models" / "pseudo3d.safetensors"
SECTION = "Quality against network evaluations"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--subjects", nargs="+", default=["ds2748s61", "ixi015"])
    p.add_argument("--kinds", nargs="+", default=["real-ms", "tumour"])
    p.add_argument("--steps", nargs="+", type=int, default=[1, 2, 5, 10, 20, 50])
    p.add_argument("--model", type=Path, default=MODEL, help="the model of the DDIM curve")
    p.add_argument("--one-step", nargs="*", default=[], metavar="LABEL=WEIGHTS",
                   help="further models scored at one evaluation per crop (e.g. the "
                        "direct-prediction fine-tune, the few-step sampler)")  # fmt: skip
    p.add_argument("--card-sampling", nargs="*", default=[], metavar="LABEL=WEIGHTS",
                   help="further models filled with their card's own sampling (steps x fills "
                        "evaluations per crop, e.g. the shipped default's 1 step x 2 fills)")  # fmt: skip
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    from bidsfill.train.scorecard import FillerSpec, model_params, score_cases, summarise

    cases = held_out_cases(args.subjects, args.kinds)
    base = {**model_params(args.model), "n_samples": 1}  # keyed by the weights' sha256
    fillers = [FillerSpec("nonlocal", "nonlocal")]
    fillers += [FillerSpec(f"ddim{k}", "pseudo3d", {**base, "steps": k}) for k in args.steps]
    extra = []
    for item in args.one_step:
        label, _, path = item.partition("=")
        extra.append(FillerSpec(label, "pseudo3d", {**base, **model_params(path), "steps": 1}))
    for item in args.card_sampling:
        label, _, path = item.partition("=")
        extra.append(FillerSpec(label, "pseudo3d", model_params(path)))
    fillers += extra
    load = os.getloadavg()[0]
    start = time.perf_counter()
    rows = score_cases(cases, fillers, tissues=False, n_threads=args.threads,
                       log=lambda m: print(m, flush=True),
                       cache=CACHE / "sampling_steps_rows.jsonl")  # fmt: skip
    summary = summarise(rows)
    lines = [
        f"`python benchmarks/bench_sampling_steps.py {' '.join(sys.argv[1:])}` "
        f"({time.strftime('%Y-%m-%d')}): `{args.model.name}` (sha256 "
        f"{hashlib.sha256(args.model.read_bytes()).hexdigest()[:12]}) on {len(cases)} "
        f"held-out cases ({', '.join(args.subjects)} x "
        f"{', '.join(args.kinds)}), one sample per fill, DDIM from pure noise (rows of "
        "`--card-sampling`: the card's own sampling). Network evaluations per crop (and "
        "z-window) = steps x fills averaged. The 1-step fill is the model's direct "
        "(posterior-mean) prediction; no distillation is needed for <= 2 evaluations.",
        "",
        f"Machine: {platform.platform()}, {os.cpu_count()} CPUs, {args.threads} thread(s); "
        f"1-min load before {load:.1f}; {time.perf_counter() - start:.0f} s in all.",
        "",
        "| sampler | evaluations per crop | PSNR01 | SSIM | seconds per case |",
        "|---|---:|---:|---:|---:|",
    ]
    points = []
    for f in fillers:
        s = summary.get(f.label, {})
        evals = _evaluations(f.params)
        lines.append(f"| {f.label} | {evals} | {s.get('brats_psnr_01', float('nan')):.2f} | "
                     f"{s.get('brats_ssim', float('nan')):.4f} | "
                     f"{s.get('seconds', float('nan')):.1f} |")  # fmt: skip
        if evals and f not in extra:
            points.append((evals, s.get("brats_psnr_01"), s.get("brats_ssim")))
    singles = [(f.label, _evaluations(f.params), summary.get(f.label, {})) for f in extra]
    text = "\n".join(lines)
    print(text)
    write_section(HERE / "RESULTS.md", SECTION, text)
    _plot(points, summary.get("nonlocal", {}), singles, HERE / "sampling_steps.png")


def _evaluations(params: dict) -> int:
    """Network evaluations per crop: DDIM steps x fills averaged (the card's when unset)."""
    if "model" not in params:
        return 0
    if "steps" in params:
        return int(params["steps"]) * int(params.get("n_samples", 1))
    from bidsfill.diffusion.card import ModelCard

    card = ModelCard.load(Path(params["model"]).with_suffix(".json"))
    return int(card.sampling.steps or 1) * int(card.sampling.n_samples or 1)


def _plot(points, prefill, singles, path: Path) -> None:  # noqa: ANN001
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.7))
    for ax, i, name, key in ((axes[0], 1, "PSNR01 (dB)", "brats_psnr_01"),
                             (axes[1], 2, "SSIM", "brats_ssim")):  # fmt: skip
        ax.plot([p[0] for p in points], [p[i] for p in points], "o-", label="pseudo3d DDIM")
        for (label, evals, entry), marker in zip(singles, "s^Dv", strict=False):
            if key in entry:
                ax.plot([evals], [entry[key]], marker, label=label)
        if key in prefill:
            ax.axhline(prefill[key], color="grey", ls="--", label="nonlocal prefill")
        ax.set_xscale("log")
        ax.set_xlabel("network evaluations per crop")
        ax.set_ylabel(name)
    # below both panels: inside, it hid the 1-2 evaluation points or the curve
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=2, fontsize=7)
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
