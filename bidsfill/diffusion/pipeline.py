"""One invertible preparation of a crop, shared by training and inference.

:class:`Preparation` takes a crop of a scan in scanner units (image, mask, extra
channels) to the network's tensors (:meth:`Preparation.forward`) and a network output
back to scanner units on the crop (:meth:`Preparation.inverse`). It records each step it
applied (the crop's model grid, the intensity map fitted on the crop's known tissue, the
residual scale) so the inverse undoes exactly those steps, in reverse order; neither
:func:`bidsfill.diffusion.inference.inpaint_volume` nor
:func:`bidsfill.diffusion.examples.make_training_example` applies an inverse by hand.

TorchIO's transform history and ``inverse()`` are the model. It is written here, not
taken from TorchIO, because the steps are few and specific to this engine (an intensity
map fitted per crop on known tissue, a residual target, a layout per architecture),
TorchIO would be a heavy dependency for some hundred lines, and the engine relies on
exact identities its generic inverse does not promise (a residual model's zero
correction returns the classical prefill bit for bit, also through the model grid).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from bidsfill.diffusion.architectures import ArchitectureSpec, get_architecture
from bidsfill.diffusion.card import Preprocessing
from bidsfill.diffusion.conditioning import to_network
from bidsfill.diffusion.crops import CropGrid
from bidsfill.diffusion.intensity import (
    IntensityMap,
    TissueReference,
    fit_intensity_map,
    normalise_extras,
)

__all__ = ["Preparation"]


@dataclass(frozen=True)
class Preparation:
    """A crop prepared for the network, with what it takes to undo the preparation.

    Built by :meth:`fit`. Steps, in order: native crop -> the model's grid (resampled
    when the scan's voxel size differs, zero-padded to a size the network accepts,
    :class:`~bidsfill.diffusion.crops.CropGrid`); scanner units -> model units (the
    :class:`~bidsfill.diffusion.intensity.IntensityMap` fitted on the crop's known
    tissue, extras normalised with it or their own map); for residual models the target
    is the scaled correction of the prefill; last the architecture's layout
    (:mod:`bidsfill.diffusion.conditioning`).

    Attributes:
        spec: the architecture.
        grid: the crop and its model grid.
        intensity: the map fitted on the crop.
        names: the extra channels' names, in card order.
        image: the normalised image on the model grid.
        mask: the mask on the model grid (bool).
        extras: the normalised extra channels on the model grid, in card order.
        residual_scale: model units per normalised unit of a residual model (None: the
            model predicts the image).
        prefill: the native prefill crop in scanner units (residual models only).
        positions: each model-grid z slice's position in its volume (seq-pos models only).
    """

    spec: ArchitectureSpec
    grid: CropGrid
    intensity: IntensityMap
    names: tuple[str, ...]
    image: np.ndarray
    mask: np.ndarray
    extras: tuple[np.ndarray, ...]
    residual_scale: float | None = None
    prefill: np.ndarray | None = None
    positions: np.ndarray | None = None

    @classmethod
    def fit(
        cls,
        image: np.ndarray,
        mask: np.ndarray,
        grid: CropGrid,
        *,
        arch: str | ArchitectureSpec,
        preprocessing: Preprocessing | dict[str, Any],
        reference: TissueReference | None,
        extras: Sequence[np.ndarray] = (),
        padding_known: bool = False,
    ) -> Preparation:
        """Prepare a native crop (the part of the volume inside ``grid.crop``).

        Args:
            image: the crop in scanner units.
            mask: its lesion mask (the voxels to inpaint).
            grid: the crop and its model grid.
            arch: network architecture.
            preprocessing: the model card's "preprocessing".
            reference: the whole volume's landmarks (:func:`~bidsfill.diffusion.
                intensity.tissue_reference`).
            extras: the native crops of the extra channels named in the card, in order.
            padding_known: count the crop's zero padding as known voxels of the fit, as
                training patches always have; inference fits on voxels inside the scan.
        """
        spec, pre = get_architecture(arch), Preprocessing.coerce(preprocessing)
        names = tuple(pre.extras)
        img_m = grid.to_model(image)
        mask_m = grid.mask_to_model(mask)
        known = ~mask_m if padding_known else ~mask_m & grid.inside()
        imap = fit_intensity_map(img_m, known, reference=reference, **pre.intensity.to_dict())
        extras_n = normalise_extras(names, [grid.to_model(e) for e in extras], imap, known)
        res = pre.residual_scale
        prefill = extras[names.index("prefill")] if res is not None else None
        positions = grid.slice_positions() if spec.slice_position else None
        return cls(spec, grid, imap, names, imap.apply(img_m), mask_m, tuple(extras_n), res,
                   prefill, positions)  # fmt: skip

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x0, condition)`` in the network's layout, without a batch axis.

        ``x0`` is what the network learns to produce (the image, or the scaled correction
        of the prefill for residual models); ``condition`` all conditioning channels
        (voided image, mask, extras, then the slice positions of seq-pos models), of
        which unconditional models take only the positions.
        """
        m = self.mask.astype(np.float32)
        x0, cond = to_network(self.spec, self.image, m, list(self.extras), self.positions)
        if self.residual_scale is not None:  # the target is the correction of the prefill
            prefill_n = self.extras[self.names.index("prefill")]
            x0 = x0 - to_network(self.spec, prefill_n, m, [])[0]
            x0 = x0 * self.residual_scale
        return x0, cond

    def from_network(self, out: torch.Tensor) -> np.ndarray:
        """A batch-of-one network output -> the model-grid crop in the image layout."""
        vol = self.spec.from_network(out.float(), self.image.shape)[0, 0].cpu().numpy()
        return np.ascontiguousarray(vol)

    def inverse(self, crop: np.ndarray) -> np.ndarray:
        """A model-grid crop in model units (image layout) -> the native crop in scanner
        units (float64): the steps of :meth:`fit` undone in reverse order.

        A residual model's correction alone crosses the grids, and the prefill is added
        on the native grid, so a zero correction returns the prefill bit for bit.
        """
        if self.residual_scale is not None:
            corr = self.grid.to_native(crop) / (self.residual_scale * self.intensity.scale)
            return self.prefill + corr.astype(np.float64)
        return self.grid.to_native(self.intensity.inverse(crop)).astype(np.float64)
