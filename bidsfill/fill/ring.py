"""ANTs-style lesion filling: random picks from the voxels just around each lesion.

The algorithm of ANTs ``LesionFilling`` (Examples/LesionFilling.cxx): for each connected
lesion, dilate it by one voxel, keep the ring voxels at least as bright as the lesion's
mean (in T1w this drops CSF and keeps the white matter a hypointense lesion sits in), and
set every lesion voxel to a value drawn at random from those ring voxels.

Differences from ANTs, each for robustness: other lesions' voxels never enter a ring
(ANTs reads them from its partly filled output); when a WM mask is given, the ring's WM
voxels replace the brightness rule; a ring with fewer than ``min_ring_voxels`` usable
voxels grows by one voxel at a time, and if the brightness rule leaves none, all ring
voxels are used (where ANTs would index an empty list).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from bidsfill.fill._lesions import iter_lesions
from bidsfill.fill.base import FillError, FillResult, register_filler

__all__ = ["fill_ring"]

# One dilation step with the face-connected (6-neighbour) structuring element.
_CROSS = ndimage.generate_binary_structure(3, 1)


@register_filler("ring")
def fill_ring(
    image: np.ndarray,
    mask: np.ndarray,
    *,
    zooms: tuple[float, float, float],
    seed: int,
    wm_mask: np.ndarray | None = None,
    ring_width: int = 1,
    max_ring_width: int = 6,
    min_ring_voxels: int = 10,
    **_: Any,
) -> FillResult:
    """Fill each lesion with random picks from its dilation ring.

    Args:
        image: T1w intensities (float32).
        mask: lesion mask (bool), same shape.
        zooms: voxel sizes in mm (unused: ANTs works in voxels).
        seed: seed of the random picks.
        wm_mask: optional white-matter mask; its ring voxels are the source when given.
        ring_width: dilation steps of the first ring (ANTs: 1).
        max_ring_width: the ring grows up to this many steps while it is too small.
        min_ring_voxels: usable ring voxels wanted before picking from them.
        **_: other methods' parameters, ignored so one call site can serve every method.

    Returns:
        The filled image and the parameters used.
    """
    rng = np.random.default_rng(seed)
    mask = mask.astype(bool)
    ring_width = int(ring_width)
    max_ring_width = max(int(max_ring_width), ring_width)
    wm = None
    if wm_mask is not None:
        wm = np.asarray(wm_mask, dtype=bool)
        if wm.shape != image.shape:
            raise FillError(
                f"The WM mask shape {wm.shape} differs from the image shape {image.shape}."
            )

    filled = image.astype(np.float32, copy=True)
    n_lesions = n_grown = n_all_ring = 0
    for lesion in iter_lesions(mask, pad=max_ring_width + 1):
        n_lesions += 1
        img_box = image[lesion.box]
        free = ~mask[lesion.box]
        lesion_mean = float(img_box[lesion.inside].mean())
        ring = lesion.inside
        for width in range(1, max_ring_width + 1):
            ring = ndimage.binary_dilation(ring, structure=_CROSS)
            if width < ring_width:
                continue
            around = ring & free
            usable = around & (wm[lesion.box] if wm is not None else img_box >= lesion_mean)
            if usable.sum() >= min_ring_voxels:
                break
        n_grown += width > ring_width
        if not usable.any():
            n_all_ring += 1
            usable = around
        if not usable.any():
            raise FillError("A lesion has no tissue around it to fill from; check the mask.")
        filled[lesion.box][lesion.inside] = rng.choice(
            img_box[usable], size=int(lesion.inside.sum()), replace=True
        )

    return FillResult(
        filled=filled,
        params={
            "algorithm": "ANTs LesionFilling",
            "ring_width": ring_width,
            "max_ring_width": max_ring_width,
            "min_ring_voxels": int(min_ring_voxels),
            "ring_source": "wm_mask" if wm is not None else "brighter_than_lesion_mean",
            "n_lesions": n_lesions,
            "n_rings_grown": int(n_grown),
            "n_rings_all_voxels": n_all_ring,
            "seed": int(seed),
        },
    )
