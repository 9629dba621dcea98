"""Training examples, built by the preparation inference uses.

An example is a patch around a random mask voxel (:func:`~bidsfill.diffusion.crops.
training_patch`) put through :class:`~bidsfill.diffusion.pipeline.Preparation`, the
pipeline :func:`~bidsfill.diffusion.inference.inpaint_volume` runs on each crop, so
training and inference never drift apart. Used by the training dataset
(:mod:`bidsfill.train.dataset`) and by adaptation to one scan
(:mod:`bidsfill.diffusion.adapt`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from bidsfill.diffusion.architectures import ArchitectureSpec, get_architecture
from bidsfill.diffusion.card import Preprocessing
from bidsfill.diffusion.conditioning import extra_channels
from bidsfill.diffusion.crops import CropGrid, training_patch
from bidsfill.diffusion.intensity import IntensityMap, TissueReference, tissue_reference
from bidsfill.diffusion.pipeline import Preparation

__all__ = ["TrainingExample", "make_training_example"]


@dataclass(frozen=True)
class TrainingExample:
    """One training pair built exactly as inference builds its inputs.

    ``x0`` is the target in the network's layout, ``condition`` the channels after x_t
    (empty for unconditional models), ``mask`` the mask in the same layout as the image
    where that layout is voxelwise (slice models), else in image space ``(1, X, Y, Z)``.
    """

    x0: torch.Tensor
    condition: torch.Tensor
    mask: torch.Tensor
    intensity: IntensityMap


def make_training_example(
    volume: np.ndarray,
    mask: np.ndarray,
    *,
    arch: str | ArchitectureSpec,
    config: dict[str, Any],
    preprocessing: Preprocessing | dict[str, Any],
    rng: np.random.Generator,
    extra_images: dict[str, np.ndarray] | None = None,
    reference: TissueReference | None = None,
    z_frame: tuple[int, int] | None = None,
) -> TrainingExample:
    """Crop a patch around a random mask voxel and build (x0, condition) as inference does.

    Args:
        volume: healthy volume ``(X, Y, Z)`` in scanner units (the ground truth).
        mask: synthetic lesion mask on the same grid (the region to inpaint).
        arch: network architecture.
        config: network config (``in_channels`` tells whether it is conditional).
        preprocessing: the model card's "preprocessing".
        rng: random generator choosing the patch centre.
        extra_images: images named in the preprocessing's extras other than "mirror".
        reference: landmarks of the whole volume; computed from ``volume`` when None.
        z_frame: where ``volume`` (a region) lies in its scan along z: (index of its
            first slice, the scan's slices), for the slice positions of seq-pos models;
            None: ``volume`` is the whole scan.
    """
    spec, pre = get_architecture(arch), Preprocessing.coerce(preprocessing)
    volume = np.asarray(volume, dtype=np.float32)
    mask = np.asarray(mask, dtype=bool)
    if volume.shape != mask.shape:
        raise ValueError(f"Volume {volume.shape} and mask {mask.shape} differ in shape.")
    extras = extra_channels(volume, list(pre.extras), extra_images)
    crop = training_patch(mask, arch=spec, config=config, preprocessing=pre, rng=rng)
    if reference is None:
        reference = tissue_reference(volume, mask, pre.intensity.percentiles)
    sl = crop.slices
    grid = CropGrid.native(crop, z_frame or (0, volume.shape[2]))
    prep = Preparation.fit(
        volume[sl], mask[sl], grid, arch=spec, preprocessing=pre,
        reference=reference, extras=[e[sl] for e in extras], padding_known=True,
    )  # fmt: skip
    x0, cond = prep.forward()
    taken = spec.condition_channels(cond, spec.is_conditional(int(config["in_channels"])))
    cond = cond[:0] if taken is None else taken
    m = torch.as_tensor(prep.mask[None].astype(np.float32))
    # The loss mask: in the network's layout where that is voxelwise, else image space.
    return TrainingExample(x0, cond, spec.to_network(m) if spec.voxelwise else m, prep.intensity)
