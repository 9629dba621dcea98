"""The model card, typed: everything a weights file needs to be rebuilt, used and trusted.

The card is the JSON file beside each ``.safetensors`` file. It is read and written here
only, so no other module indexes its keys. Cards without ``card_version`` are version 1
(written before this module) and load unchanged; keys this version does not know are
kept in ``extra`` and written back, so a card never loses what a newer bidsfill wrote.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bidsfill.diffusion.architectures import ArchitectureSpec, get_architecture
from bidsfill.diffusion.schedules import NoiseSchedule

__all__ = [
    "CARD_VERSION",
    "CONTRAST_CHANNELS",
    "EXTRAS",
    "MODEL_VOXEL_MM",
    "PREFILL_METHOD",
    "RESIDUAL_SCALE",
    "IntensityRule",
    "ModelCard",
    "Preprocessing",
    "SamplingDefaults",
    "default_preprocessing",
]

#: Version written by :meth:`ModelCard.save`; version 1 cards carry no version key.
CARD_VERSION = 2

#: Extra conditioning channels a model may take after the mask, in card order.
EXTRAS = ("mirror", "flair", "t2w", "prefill")

#: The extra channels that are other contrasts of the session: channel -> BIDS suffix.
#: The app registers such an image to the T1w and passes it as ``extra_images[channel]``.
CONTRAST_CHANNELS = {"flair": "FLAIR", "t2w": "T2w"}

#: The classical filler whose fill is the "prefill" conditioning channel.
PREFILL_METHOD = "nonlocal"

#: Residual models diffuse ``RESIDUAL_SCALE * (image - prefill)`` in normalised units: the
#: nonlocal prefill's errors have an RMS near 0.15 there, and the factor brings them
#: closer to the unit scale the noise schedule is designed for.
RESIDUAL_SCALE = 2.0

#: Voxel size (mm) of the grid models are trained on; other grids are resampled to it.
MODEL_VOXEL_MM = (1.0, 1.0, 1.0)

_LAYOUT = "volume (X, Y, Z), Z axial; slice models see (C, Z, X, Y)"


@dataclass(frozen=True)
class IntensityRule:
    """How a crop is mapped to the model's range (see ``fit_intensity_map``): background
    to ``low``, the brightest large tissue mode to ``peak_value``, clipped to ``clip``."""

    rule: str = "known-tissue-peak"
    low: float = -1.0
    peak_value: float = 0.5
    clip: tuple[float, float] = (-1.5, 1.5)
    percentiles: tuple[float, float] = (2.0, 99.5)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IntensityRule:
        data = dict(data)
        for key in ("clip", "percentiles"):
            if key in data:
                data[key] = tuple(float(v) for v in data[key])
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "low": self.low,
            "peak_value": self.peak_value,
            "clip": list(self.clip),
            "percentiles": list(self.percentiles),
        }


@dataclass(frozen=True)
class Preprocessing:
    """The card's "preprocessing": crop geometry, intensity rule and conditioning channels.

    Args:
        intensity: the intensity rule.
        margin: context voxels around a lesion (model grid).
        patch_size: training patch ``(X, Y, Z)``.
        window, window_overlap: z-window of slice models (None for volume models).
        context_fraction: each lesion's margin is at least this share of its extent.
        extras: extra conditioning channels, a subset of :data:`EXTRAS` in order.
        voxel_size: the model's grid in mm (None: the scan's own grid, version 1 cards).
        residual_scale: set for residual models, which diffuse the scaled correction of
            the prefill; None for image models.
        prefill_method: the classical filler of the "prefill" channel.
        mirror_hides_mask: the "mirror" channel shows the prefill, not the scan, where
            the contralateral point lies in the mask (the reflected mask): otherwise it
            carries the hidden tissue (in training: the truth; in a patient: the lesion)
            across the midline to the network, next to the mask it must fill.
        extra: keys this version does not know, kept for the round trip.
    """

    intensity: IntensityRule = field(default_factory=IntensityRule)
    margin: int = 8
    patch_size: tuple[int, ...] = (64, 64, 8)
    window: int | None = None
    window_overlap: int | None = None
    context_fraction: float = 0.0
    extras: tuple[str, ...] = ()
    voxel_size: tuple[float, ...] | None = None
    residual_scale: float | None = None
    prefill_method: str | None = None
    mirror_hides_mask: bool = False
    layout: str = _LAYOUT
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def default(
        cls, arch: str, extras: tuple[str, ...] = (), *, residual: bool = False
    ) -> Preprocessing:
        """The constants a new model of ``arch`` is trained with."""
        unknown = set(extras) - set(EXTRAS)
        if unknown:
            raise ValueError(f"Unknown extra channels {sorted(unknown)}; choose from {EXTRAS}.")
        if residual and "prefill" not in extras:
            raise ValueError("A residual model needs the 'prefill' channel it corrects.")
        spec = get_architecture(arch)
        return cls(
            margin=8,
            # Large lesions see more: each lesion's margin is at least this share of its extent.
            context_fraction=0.25,
            window=spec.window,
            window_overlap=spec.window_overlap,
            patch_size=tuple(spec.patch_size),
            extras=tuple(extras),
            # The model's grid: crops are resampled to it and the fill back, inside the mask.
            voxel_size=MODEL_VOXEL_MM,
            residual_scale=RESIDUAL_SCALE if residual else None,
        )

    @property
    def prefill(self) -> str:
        """The classical filler of the "prefill" channel."""
        return self.prefill_method or PREFILL_METHOD

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Preprocessing:
        data = dict(data)
        known = {f.name for f in dataclasses.fields(cls)} - {"residual_scale", "extra"}
        residual = data.pop("residual", None)
        kw = {k: data.pop(k) for k in list(data) if k in known}
        if "intensity" in kw:
            kw["intensity"] = IntensityRule.from_dict(kw["intensity"])
        for key in ("patch_size", "extras", "voxel_size"):
            if kw.get(key) is not None:
                kw[key] = tuple(kw[key])
        if residual:
            kw["residual_scale"] = float(residual["scale"])
        return cls(**kw, extra=data)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "layout": self.layout,
            "intensity": self.intensity.to_dict(),
            "margin": self.margin,
            "context_fraction": self.context_fraction,
            "window": self.window,
            "window_overlap": self.window_overlap,
            "patch_size": list(self.patch_size),
            "extras": list(self.extras),
        }
        if self.voxel_size is not None:
            out["voxel_size"] = list(self.voxel_size)
        if self.residual_scale is not None:
            out["residual"] = {"of": "prefill", "scale": self.residual_scale}
        if self.prefill_method is not None:
            out["prefill_method"] = self.prefill_method
        if self.mirror_hides_mask:  # older cards, whose mirror shows everything, lack it
            out["mirror_hides_mask"] = True
        return {**out, **self.extra}

    @classmethod
    def coerce(cls, value: Preprocessing | Mapping[str, Any]) -> Preprocessing:
        """Accept the typed object or its card dict (training configs hold the dict)."""
        return value if isinstance(value, Preprocessing) else cls.from_dict(value)


def default_preprocessing(
    arch: str, extras: tuple[str, ...] = (), *, residual: bool = False
) -> dict[str, Any]:
    """:meth:`Preprocessing.default` as the card dict a training config holds."""
    return Preprocessing.default(arch, extras, residual=residual).to_dict()


@dataclass(frozen=True)
class SamplingDefaults:
    """The card's "sampling": how the model fills when the user sets nothing (the settings
    its scorecard was made with). None: no default of the model's own."""

    steps: int | None = None
    n_samples: int | None = None
    flip: bool | None = None
    edge_taper_mm: float | None = None
    shift_voxels: int | None = None
    antithetic: bool | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> SamplingDefaults:
        data = dict(data or {})
        flags = {k: None if (v := data.pop(k, None)) is None else bool(v)
                 for k in ("flip", "antithetic")}  # fmt: skip
        taper = data.pop("edge_taper_mm", None)
        ints = {k: int(v) for k, v in data.items() if v is not None}
        return cls(**ints, **flags, edge_taper_mm=None if taper is None else float(taper))

    def to_dict(self) -> dict[str, Any]:
        pairs = (("steps", self.steps), ("n_samples", self.n_samples),
                 ("shift_voxels", self.shift_voxels))  # fmt: skip
        out: dict[str, Any] = {k: int(v) for k, v in pairs if v}
        for key in ("flip", "antithetic"):
            if getattr(self, key) is not None:
                out[key] = bool(getattr(self, key))
        if self.edge_taper_mm is not None:
            out["edge_taper_mm"] = float(self.edge_taper_mm)
        return out


_REQUIRED = ("architecture", "schedule", "preprocessing")


@dataclass(frozen=True)
class ModelCard:
    """A model card (see the module docstring).

    Args:
        architecture: the network's architecture name (:mod:`~bidsfill.diffusion.architectures`).
        config: the network's constructor arguments.
        schedule: the noise schedule it was trained with.
        preprocessing: crop geometry, intensity rule and conditioning channels.
        name, sha256: the weights file's stem and digest (set by ``save_weights``).
        sampling: default sampling settings.
        training, metrics, validation_history, scorecard: how the model was made and how
            it scores; free-form records for people, never read by the engine.
        extra: top-level keys this version does not know.
        version: the card format version read (1 for cards without one).
    """

    architecture: str
    config: dict[str, Any]
    schedule: NoiseSchedule
    preprocessing: Preprocessing
    name: str | None = None
    sha256: str | None = None
    sampling: SamplingDefaults = field(default_factory=SamplingDefaults)
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    validation_history: list[Any] | None = None
    scorecard: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    version: int = CARD_VERSION

    # -- what the engine asks ---------------------------------------------------------
    @property
    def spec(self) -> ArchitectureSpec:
        return get_architecture(self.architecture)

    @property
    def conditional(self) -> bool:
        """True when the network takes conditioning channels after x_t."""
        return self.spec.is_conditional(int(self.config["in_channels"]))

    @property
    def contrasts(self) -> tuple[str, ...]:
        """The other contrasts it is conditioned on (channels of :data:`CONTRAST_CHANNELS`),
        in card order; empty for a T1w-only model."""
        return tuple(e for e in self.preprocessing.extras if e in CONTRAST_CHANNELS)

    @property
    def num_train_timesteps(self) -> int:
        return self.schedule.num_train_timesteps

    def replace(self, **changes: Any) -> ModelCard:
        return dataclasses.replace(self, **changes)

    # -- reading and writing ----------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelCard:
        """A card from its JSON dict, any version.

        Raises:
            ValueError: a required entry is missing or malformed.
        """
        data = dict(data)
        for key in _REQUIRED:
            if key not in data:
                raise ValueError(f"The model card needs a {key!r} entry.")
        version = int(data.pop("card_version", 1))
        if version > CARD_VERSION:
            raise ValueError(
                f"The model card has format version {version}; this bidsfill reads up to "
                f"{CARD_VERSION}. Update bidsfill."
            )
        try:
            return cls(
                architecture=str(data.pop("architecture")),
                config=dict(data.pop("config", None) or {}),
                schedule=NoiseSchedule.from_dict(data.pop("schedule")),
                preprocessing=Preprocessing.from_dict(data.pop("preprocessing")),
                name=data.pop("name", None),
                sha256=data.pop("sha256", None),
                sampling=SamplingDefaults.from_dict(data.pop("sampling", None)),
                training=dict(data.pop("training", None) or {}),
                metrics=dict(data.pop("metrics", None) or {}),
                validation_history=data.pop("validation_history", None),
                scorecard=data.pop("scorecard", None),
                extra=data,
                version=version,
            )
        except (KeyError, TypeError, AttributeError) as err:
            raise ValueError(f"The model card has a malformed entry ({err}).") from None

    def to_dict(self) -> dict[str, Any]:
        """The JSON dict of this card, in the current format version."""
        out: dict[str, Any] = {
            "card_version": CARD_VERSION,
            "name": self.name,
            "architecture": self.architecture,
            "config": self.config,
            "schedule": self.schedule.to_dict(),
            "preprocessing": self.preprocessing.to_dict(),
        }
        if self.sampling.to_dict():
            out["sampling"] = self.sampling.to_dict()
        out["training"] = self.training
        out["metrics"] = self.metrics
        if self.validation_history is not None:
            out["validation_history"] = self.validation_history
        if self.scorecard is not None:
            out["scorecard"] = self.scorecard
        out.update(self.extra)
        out["sha256"] = self.sha256
        return out

    @classmethod
    def load(cls, path: str | Path) -> ModelCard:
        """Read a card file.

        Raises:
            ValueError: not JSON, or not a valid card.
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"Model card {path} is not valid JSON ({err.msg}).") from None
        if not isinstance(data, dict):
            raise ValueError(f"Model card {path} is not a JSON object.")
        try:
            return cls.from_dict(data)
        except ValueError as err:
            raise ValueError(f"Model card {path.name} describes no valid model: {err}") from None

    def save(self, path: str | Path) -> Path:
        """Write the card (current format version) to ``path``."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def coerce(cls, card: ModelCard | Mapping[str, Any]) -> ModelCard:
        """Accept the typed card or its JSON dict (library callers may hold either)."""
        return card if isinstance(card, ModelCard) else cls.from_dict(card)
