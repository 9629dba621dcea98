"""``bidsfill --list-models``: what each installed model is, read from its card alone.

The cards are JSON beside the weights; reading them needs neither torch nor the
network, so the listing is as fast as ``--help``. The weights' sha256 is computed from
the file and compared with the card's, so a damaged install shows here first.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

__all__ = ["describe_model", "installed_models", "list_models"]


def installed_models(folder: Path | None = None) -> list[Path]:
    """The shipped weights (``bidsfill/data/models/<method>.safetensors`` with a card)."""
    if folder is None:
        folder = Path(__file__).resolve().parents[1] / "data" / "models"
    return sorted(p for p in folder.glob("*.safetensors") if p.with_suffix(".json").is_file())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _names(items: list[dict[str, Any]], key: str) -> str:
    names = [str(i.get(key, "?")).removesuffix("_T1w") for i in items]
    return ", ".join(names) if names else "none listed"


def _summary(own: dict[str, Any], fillers: dict[str, Any], others: tuple[str, ...],
             cases: object, what: str) -> str:
    """One line of a model's scores: its PSNR01, the other fillers' beside it, its SSIM."""
    parts = [f"PSNR01 {own.get('brats_psnr_01', float('nan')):.2f} dB"]
    parts += [f"{name} {fillers[name].get('brats_psnr_01', float('nan')):.2f}"
              for name in others if name in fillers]  # fmt: skip
    parts.append(f"SSIM {own.get('brats_ssim', float('nan')):.3f}")
    return f"{cases} {what}: " + ", ".join(parts)


def _scorecard(card: dict[str, Any], arch: str) -> str:
    score = card.get("scorecard") or {}
    fillers = score.get("fillers") or {}
    own = next((v for k, v in fillers.items() if k.startswith(arch)), None)
    if not own:
        return _comparison(card.get("comparison") or {})
    bar = (score.get("bar") or {}).get("all")
    met = "" if bar is None else f"; issue-12 bar {'met' if bar else 'not met'}"
    line = _summary(own, fillers, ("nonlocal", "nawm"), own.get("cases", "?"), "held-out cases")
    return line + met


def _comparison(comparison: dict[str, Any]) -> str:
    """A model without a scorecard of its own (the architecture family): its row of the
    architecture comparison (benchmarks/compare_architectures.py --write-cards)."""
    fillers = comparison.get("fillers") or {}
    own = fillers.get(comparison.get("label", ""))
    if not own:
        return "none"
    return _summary(own, fillers, ("pseudo3d", "nonlocal"), comparison.get("cases", "?"),
                    "held-out cases of the architecture comparison")  # fmt: skip


def _describe_synthesis(path: Path, card: dict[str, Any], sha: str, check: str) -> str:
    """A missing-contrast synthesis (cWDM) model's lines."""
    training = card.get("training") or {}
    sampling = card.get("sampling") or {}
    score = (card.get("metrics") or {}).get("held_out") or {}
    scored = "; ".join(f"{k}: SSIM {v['ssim']:.3f}, PSNR {v['psnr']:.2f} dB"
                       for k, v in score.items()) or "not scored in the card"  # fmt: skip
    return "\n".join([
        f"{path.stem}: --synthesize {card.get('target', '?')} from "
        f"{', '.join(card.get('sources') or [])}, architecture {card.get('architecture', '?')} "
        f"(cWDM), {path.stat().st_size / 1e6:.1f} MB, sha256 {sha[:16]}...{check}",
        f"  trained on: {_names(training.get('training_data') or [], 'name')}; "
        f"{training.get('budget', '?')}",
        f"  held out: {_names(training.get('held_out') or [], 'participant')}",
        f"  sees: {_conditioning(card.get('preprocessing') or {})}",
        f"  default sampling: DDIM {sampling.get('steps', '?')} step(s) over "
        f"{sampling.get('crop', '?')} crops",
        f"  scores: {scored}",
        f"  card: {path.with_suffix('.json')}",
    ])  # fmt: skip


def describe_model(path: Path) -> str:
    """A few lines on one model: method, architecture, size, sha256, data, scorecard."""
    card = json.loads(path.with_suffix(".json").read_text())
    if card.get("task") == "synthesize":
        sha = _sha256(path)
        check = "" if sha == card.get("sha256") else "  (sha256 DIFFERS from its card)"
        return _describe_synthesis(path, card, sha, check)
    training = card.get("training") or {}
    sha = _sha256(path)
    check = "" if sha == card.get("sha256") else "  (sha256 DIFFERS from its card)"
    sampling = card.get("sampling") or {}
    masks = training.get("real_masks") or {}
    steps = training.get("steps", "?")
    ran_on = (training.get("ran_on") or {}).get("device", "?")
    arch = str(card.get("architecture", "?"))
    return "\n".join([
        f"{path.stem}: --method {path.stem}, architecture {arch}, "
        f"{path.stat().st_size / 1e6:.1f} MB, sha256 {sha[:16]}...{check}",
        f"  trained on: {_names(training.get('training_data') or [], 'name')}"
        + (f"; {masks['count']} real lesion masks" if masks.get("count") else "")
        + f"; {steps} steps on {ran_on}",
        f"  held out: {_names(training.get('held_out') or [], 'participant')}",
        f"  sees: {_conditioning(card.get('preprocessing') or {})}",
        f"  default sampling: DDIM {sampling.get('steps', '?')} step(s), mean of "
        f"{sampling.get('n_samples', 1)}"
        + (", every other from the mirrored crop" if sampling.get("flip") else "")
        + (f", correction tapered over {sampling['edge_taper_mm']:g} mm from the mask edge"
           if sampling.get("edge_taper_mm") else "")
        + (f", later samples from crops shifted {sampling['shift_voxels']} voxels"
           if sampling.get("shift_voxels") else "")
        + (", antithetic starting noise" if sampling.get("antithetic") else ""),
        f"  scorecard: {_scorecard(card, arch)}",
        f"  card: {path.with_suffix('.json')}",
    ])  # fmt: skip


def _conditioning(pre: dict) -> str:
    """What the network is given beside the masked scan (the card's extras)."""
    words = {
        "mirror": "the scan reflected about its mid-sagittal plane"
        + (" (the prefill where that shows the mask)" if pre.get("mirror_hides_mask") else ""),
        "prefill": f"a {pre.get('prefill_method', 'nonlocal')} prefill"
        + (" it corrects" if pre.get("residual") else ""),
        "flair": "the FLAIR",
        "t2w": "the T2w",
    }
    extras = [words.get(name, name) for name in pre.get("extras") or []]
    return "the masked scan" + "".join(f", {e}" for e in extras)


def list_models(folder: Path | None = None) -> str:
    """Every installed model, described; or a sentence saying there is none."""
    paths = installed_models(folder)
    if not paths:
        return "No diffusion models are installed; the classical methods need none."
    return "\n\n".join(describe_model(p) for p in paths)
