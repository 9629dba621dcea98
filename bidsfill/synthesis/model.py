"""The cWDM model: a ``wdm3d`` network and its synthesis card (JSON beside safetensors).

The network is the engine's 3D wavelet U-Net (:class:`~bidsfill.diffusion.networks.WaveletUNet`):
its input is the 8 Haar sub-bands (half resolution) of the noisy target followed by the 8
sub-bands of each available source contrast, ``8 * (1 + len(sources))`` channels; it
predicts the 8 sub-bands of the clean target (x0, the paper's MSE objective).

The card is not a fill model's :class:`~bidsfill.diffusion.card.ModelCard` (it has no
lesion mask, prefill or crop rule); it is written and read here only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from bidsfill.diffusion.architectures import get_architecture
from bidsfill.diffusion.schedules import NoiseSchedule
from bidsfill.diffusion.weights import file_sha256
from bidsfill.synthesis.normalise import PERCENTILES, IntensityRange

__all__ = [
    "CONTRASTS",
    "TASK",
    "SynthesisCard",
    "installed_synthesis_model",
    "load_synthesis_model",
    "save_synthesis_model",
]

#: The task value of a synthesis card (fill model cards have none).
TASK = "synthesize"

#: Contrasts a model may synthesise or take as sources (BIDS suffixes / ce- entities).
CONTRASTS = ("T1w", "T2w", "FLAIR", "ce-gadolinium_T1w")

ARCHITECTURE = "wdm3d"


@dataclass(frozen=True)
class SynthesisCard:
    """Everything needed to rebuild, run and trust a synthesis model.

    Args:
        target: the contrast it writes (BIDS suffix, e.g. "FLAIR").
        sources: the contrasts it is conditioned on, in channel order.
        config: the wdm3d network's constructor arguments.
        schedule: the noise schedule (the paper's: linear, T = 1000, x0 prediction).
        target_range: the target's scanner-like reference range (see :mod:`.normalise`).
        percentiles: the clipping percentiles of the normalisation.
        steps: default DDIM steps; crop, overlap: whole-volume tiling (image voxels).
        training, metrics: records for people; never read by the engine.
    """

    target: str
    sources: tuple[str, ...]
    config: dict[str, Any]
    schedule: NoiseSchedule
    target_range: IntensityRange = IntensityRange(0.0, 1.0)
    percentiles: tuple[float, float] = PERCENTILES
    steps: int = 10
    crop: tuple[int, int, int] = (96, 96, 96)
    overlap: int = 32
    name: str | None = None
    sha256: str | None = None
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def new(
        cls,
        target: str,
        sources: Sequence[str],
        channels: Sequence[int] = (16, 32, 64),
        num_res_blocks: int = 1,
        norm_num_groups: int = 8,
        **kwargs: Any,
    ) -> SynthesisCard:
        """A card for a fresh model (the paper's schedule)."""
        spec = get_architecture(ARCHITECTURE)
        config = {**spec.channels_for(len(sources)), "channels": [int(c) for c in channels],
                  "num_res_blocks": int(num_res_blocks), "norm_num_groups": int(norm_num_groups)}  # fmt: skip
        schedule = NoiseSchedule(1000, "linear", "sample", 1e-4, 0.02)
        return cls(target, tuple(sources), config, schedule, **kwargs)

    @property
    def divisor(self) -> int:
        """Image-space size multiple of every crop."""
        return get_architecture(ARCHITECTURE).spatial_divisor(self.config)

    def build(self) -> torch.nn.Module:
        return get_architecture(ARCHITECTURE).build(**self.config)

    def replace(self, **changes: Any) -> SynthesisCard:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": TASK,
            "name": self.name,
            "architecture": ARCHITECTURE,
            "target": self.target,
            "sources": list(self.sources),
            "config": self.config,
            "schedule": self.schedule.to_dict(),
            "normalisation": {
                "rule": "percentile-clip",
                "percentiles": list(self.percentiles),
                "scope": "whole volume, each contrast on its own, scaled to [0, 1]",
                "back_to_scanner": "lo_ref + y * (hi_ref - lo_ref); [lo_ref, hi_ref] is "
                "target_range, the median over the training subjects of the target's "
                "own percentile range",
                "target_range": self.target_range.to_list(),
            },
            "sampling": {"sampler": "ddim", "eta": 0.0, "steps": int(self.steps),
                         "crop": list(self.crop), "overlap": int(self.overlap)},  # fmt: skip
            "training": self.training,
            "metrics": self.metrics,
            "sha256": self.sha256,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SynthesisCard:
        if data.get("task") != TASK:
            raise ValueError("The card does not describe a synthesis model (task is not 'synthesize').")
        try:
            norm = data["normalisation"]
            sampling = data.get("sampling") or {}
            return cls(
                target=str(data["target"]),
                sources=tuple(data["sources"]),
                config=dict(data["config"]),
                schedule=NoiseSchedule.from_dict(data["schedule"]),
                target_range=IntensityRange(*map(float, norm["target_range"])),
                percentiles=tuple(norm.get("percentiles", PERCENTILES)),
                steps=int(sampling.get("steps", 10)),
                crop=tuple(int(c) for c in sampling.get("crop", (96, 96, 96))),
                overlap=int(sampling.get("overlap", 32)),
                name=data.get("name"),
                sha256=data.get("sha256"),
                training=dict(data.get("training") or {}),
                metrics=dict(data.get("metrics") or {}),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"The synthesis card has a malformed entry ({err}).") from None


def installed_synthesis_model(target: str) -> Path | None:
    """The shipped ``bidsfill/data/models/cwdm-<target>.safetensors`` with its card, or None."""
    folder = Path(__file__).resolve().parents[1] / "data" / "models"
    path = folder / f"cwdm-{target.lower()}.safetensors"
    return path if path.is_file() and path.with_suffix(".json").is_file() else None


def _paths(path: str | Path) -> tuple[Path, Path]:
    path = Path(path)
    base = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
    return base.with_suffix(".safetensors"), base.with_suffix(".json")


def save_synthesis_model(model: torch.nn.Module, card: SynthesisCard, path: str | Path) -> Path:
    """Write ``<name>.safetensors`` and its card ``<name>.json``; return the weights path."""
    st_path, card_path = _paths(path)
    st_path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(st_path), metadata={"architecture": ARCHITECTURE, "task": TASK})
    card = card.replace(name=card.name or st_path.stem, sha256=file_sha256(st_path))
    card_path.write_text(json.dumps(card.to_dict(), indent=2) + "\n")
    return st_path


def load_synthesis_model(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, SynthesisCard]:
    """Load a synthesis model, refusing weights that do not match their card's sha256.

    Raises:
        ValueError: missing files, not a synthesis card, sha256 or tensor mismatch.
    """
    st_path, card_path = _paths(path)
    if not st_path.is_file() or not card_path.is_file():
        raise ValueError(f"Synthesis model {st_path} or its card {card_path.name} is missing.")
    try:
        card = SynthesisCard.from_dict(json.loads(card_path.read_text()))
    except json.JSONDecodeError as err:
        raise ValueError(f"Card {card_path} is not valid JSON ({err.msg}).") from None
    if card.sha256 != file_sha256(st_path):
        raise ValueError(f"Weights {st_path.name} do not match the sha256 in their card.")
    model = card.build()
    try:
        model.load_state_dict(load_file(str(st_path)))
    except RuntimeError as err:
        raise ValueError(f"Weights {st_path.name} do not fit their card ({err}).") from None
    return model.to(device).eval(), card
