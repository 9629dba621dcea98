"""How a diffusion fill samples, decided once: :class:`SamplingPlan`.

The user's options (or a library caller's) become a plan; :meth:`SamplingPlan.resolve`
fills in what the model decides (its default steps and samples, and what DDPM means for
its schedule), so the sampler, the provenance and the report all read the same numbers.
No torch import: the workflow builds plans before any model is loaded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bidsfill.diffusion.card import ModelCard

__all__ = ["DEFAULT_STEPS", "SAMPLERS", "SamplingPlan"]

SAMPLERS = ("ddim", "ddpm")

#: DDIM steps when neither the user nor the model card gives any (a few tens suffice
#: for the conditional models; see benchmarks/RESULTS.md).
DEFAULT_STEPS = 20


@dataclass(frozen=True)
class SamplingPlan:
    """The sampling of one diffusion fill.

    Args:
        sampler: "ddim" (``steps`` model calls) or "ddpm" (all T training steps, eta 1).
        steps: DDIM steps; None: the model card's default, else :data:`DEFAULT_STEPS`.
        eta: DDIM stochasticity (0 = deterministic given the initial noise).
        n_samples: fills averaged into the mean; None: the card's default, else 1.
        device: "auto", "cpu", "cuda" or "cuda:N" (resolved where the fill runs).
        jump_length, jump_n_sample: RePaint resampling (unconditional models only).
        feather: blend the first layer inside the mask toward its known neighbours.
        adapt_steps: fine-tune a copy of the model on the scan first (0: no).
        flip: fill every other sample of the mean from the left-right mirrored crop and
            mirror it back (test-time augmentation: the models are trained with these
            flips, so the two views err differently and their mean errs less, at no extra
            cost); None: the card's default, else off.
        edge_taper_mm: a residual model's correction rises linearly from the mask edge to
            full strength at this depth (mm), so the voxels next to known tissue stay
            close to the classical prefill, which is good there; 0: off; None: the
            card's default, else off.
        shift_voxels: fill sample i of the mean from the crop box moved by a fixed
            in-plane offset of this many model voxels (sample 0 unmoved; test-time
            augmentation: the U-Net's downsampling meets the anatomy at another phase, so
            the views err differently); 0: off; None: the card's default, else off.
        antithetic: sample 2k+1 of the mean starts from the negated starting noise of
            sample 2k (mirrored with its view), so the part of the fill that moves with
            the noise cancels in their mean, at no extra cost (antithetic variates);
            None: the card's default, else off.
    """

    sampler: str = "ddim"
    steps: int | None = None
    eta: float = 0.0
    n_samples: int | None = None
    device: str = "auto"
    jump_length: int = 5
    jump_n_sample: int = 2
    feather: bool = False
    adapt_steps: int = 0
    flip: bool | None = None
    edge_taper_mm: float | None = None
    shift_voxels: int | None = None
    antithetic: bool | None = None

    def __post_init__(self) -> None:
        sampler = (self.sampler or "ddim").lower()
        if sampler not in SAMPLERS:
            raise ValueError(f"Unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}.")
        if self.n_samples is not None and int(self.n_samples) < 1:
            raise ValueError(f"--n-samples must be at least 1, got {self.n_samples}.")
        if int(self.adapt_steps or 0) < 0:
            raise ValueError(f"--adapt-steps must be at least 0, got {self.adapt_steps}.")
        if self.edge_taper_mm is not None and float(self.edge_taper_mm) < 0:
            raise ValueError(f"--edge-taper must be at least 0 mm, got {self.edge_taper_mm}.")
        set_ = object.__setattr__
        set_(self, "sampler", sampler)
        set_(self, "steps", int(self.steps) if self.steps else None)
        set_(self, "eta", float(self.eta or 0.0))
        set_(self, "n_samples", int(self.n_samples) if self.n_samples else None)
        set_(self, "device", (self.device or "auto").strip().lower())
        set_(self, "adapt_steps", int(self.adapt_steps or 0))
        set_(self, "feather", bool(self.feather))
        set_(self, "flip", None if self.flip is None else bool(self.flip))
        set_(self, "antithetic", None if self.antithetic is None else bool(self.antithetic))
        taper = self.edge_taper_mm
        set_(self, "edge_taper_mm", None if taper is None else float(taper))
        shift = self.shift_voxels
        if shift is not None and int(shift) < 0:
            raise ValueError(f"--shift must be at least 0 voxels, got {shift}.")
        set_(self, "shift_voxels", None if shift is None else int(shift))

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> SamplingPlan:
        """The plan named by the keys of ``params`` that are plan fields (others ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in params.items() if k in names and v is not None})

    def to_params(self) -> dict[str, Any]:
        """The plan as JSON-able keyword arguments (how it travels to the fill node)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    def resolve(self, card: ModelCard) -> SamplingPlan:
        """The plan with the model's decisions filled in.

        DDPM runs all T training steps with eta 1. DDIM takes the user's steps, else the
        card's default (capped at T), else :data:`DEFAULT_STEPS`; samples, flips, the
        edge taper, the crop shift and antithetic noise likewise default to the card's,
        else 1, off, off, off and off.

        Raises:
            ValueError: DDIM steps outside 1..T; an edge taper for a model that does not
                correct a prefill (there is no correction to taper); antithetic noise for
                an unconditional (RePaint) model.
        """
        T = card.num_train_timesteps
        n = self.n_samples or card.sampling.n_samples or 1
        flip = bool(card.sampling.flip) if self.flip is None else self.flip
        taper = self.edge_taper_mm
        if taper is None:
            taper = float(card.sampling.edge_taper_mm or 0.0)
        if taper and card.preprocessing.residual_scale is None:
            raise ValueError(
                f"--edge-taper needs a model that corrects a classical prefill; {card.name} "
                "fills the mask itself."
            )
        shift = self.shift_voxels
        if shift is None:
            shift = int(card.sampling.shift_voxels or 0)
        antithetic = self.antithetic
        if antithetic is None:
            antithetic = bool(card.sampling.antithetic)
        if antithetic and not card.conditional:
            raise ValueError(
                f"--antithetic needs a model that starts each sample from its own noise; "
                f"{card.name} is unconditional and mixes fresh noise in at every RePaint step."
            )
        keep = {"n_samples": n, "flip": flip, "edge_taper_mm": taper, "shift_voxels": shift,
                "antithetic": antithetic}  # fmt: skip
        if self.sampler == "ddpm":
            return dataclasses.replace(self, steps=T, eta=1.0, **keep)
        k = self.steps or min(card.sampling.steps or DEFAULT_STEPS, T)
        if not 1 <= k <= T:
            raise ValueError(
                f"--steps must be between 1 and the model's {T} training steps, got {k}."
            )
        return dataclasses.replace(self, steps=k, **keep)

    @property
    def wants_gpu(self) -> bool:
        """Whether a fill with this plan runs on a GPU (``auto`` asks torch if there is one)."""
        if self.device.startswith("cuda"):
            return True
        if self.device == "auto":
            import torch

            return torch.cuda.is_available()
        return False

    def on_cpu(self) -> SamplingPlan:
        """The same plan on the CPU (a node that holds no GPU slot must not take a GPU)."""
        return dataclasses.replace(self, device="cpu")
