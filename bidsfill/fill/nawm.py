"""FSL-style lesion filling from the surrounding normal-appearing white matter.

The algorithm of FSL's ``lesion_filling`` (Battaglini, Jenkinson & De Stefano 2012,
"Evaluating and reducing the impact of white matter lesions on brain volume
measurements", Hum Brain Mapp 33:2062): for each connected lesion, take a ring of
normal-appearing white matter (NAWM) around it, draw the lesion's voxels from a Gaussian
with the ring's mean and standard deviation, then smooth the lesion's border so the fill
blends into the tissue around it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import ndimage

from bidsfill.fill._lesions import estimate_wm_mask, iter_lesions
from bidsfill.fill.base import FillError, FillResult, register_filler

__all__ = ["fill_nawm"]


@register_filler("nawm")
def fill_nawm(
    image: np.ndarray,
    mask: np.ndarray,
    *,
    zooms: tuple[float, float, float],
    seed: int,
    wm_mask: np.ndarray | None = None,
    ring_mm: float | None = None,
    max_ring_mm: float | None = None,
    min_ring_voxels: int = 30,
    smooth_border: bool = True,
    **_: Any,
) -> FillResult:
    """Fill each lesion with Gaussian draws from the NAWM ring around it.

    Args:
        image: T1w intensities (float32).
        mask: lesion mask (bool), same shape.
        zooms: voxel sizes in mm.
        seed: seed of the random draws.
        wm_mask: white-matter mask; estimated from the image (multi-Otsu) when None.
        ring_mm: initial ring width in mm (default: two voxels).
        max_ring_mm: the ring grows up to this width while it holds fewer than
            ``min_ring_voxels`` NAWM voxels (default: eight voxels).
        min_ring_voxels: NAWM voxels a ring needs before its statistics are trusted.
        smooth_border: replace the lesion's outer layer by its 3x3x3 mean afterwards.
        **_: other methods' parameters, ignored so one call site can serve every method.

    Returns:
        The filled image and the parameters used.
    """
    rng = np.random.default_rng(seed)
    mask = mask.astype(bool)
    step = min(zooms)
    ring_mm = float(ring_mm) if ring_mm is not None else 2.0 * max(zooms)
    max_ring_mm = float(max_ring_mm) if max_ring_mm is not None else 8.0 * max(zooms)
    max_ring_mm = max(max_ring_mm, ring_mm)
    if wm_mask is None:
        wm = estimate_wm_mask(image, mask)
        wm_source = "multi-otsu"
    else:
        wm_mask = np.asarray(wm_mask, dtype=bool)
        if wm_mask.shape != image.shape:
            raise FillError(
                f"The WM mask shape {wm_mask.shape} differs from the image shape {image.shape}."
            )
        wm = wm_mask & ~mask
        wm_source = "given"
    # Anything not in a lesion is a fallback source when a lesion has no WM around it.
    tissue = ~mask & (image > 1e-3 * float(np.percentile(image, 99.9)))

    filled = image.astype(np.float32, copy=True)
    n_lesions = n_grown = n_no_wm = 0
    pad = math.ceil(max_ring_mm / step) + 1
    for lesion in iter_lesions(mask, pad):
        n_lesions += 1
        dist = ndimage.distance_transform_edt(~lesion.inside, sampling=zooms)
        near = dist > 0
        radius = ring_mm
        ring = near & (dist <= radius) & wm[lesion.box]
        # Battaglini: widen the ring until it holds enough NAWM for stable statistics.
        while ring.sum() < min_ring_voxels and radius < max_ring_mm:
            radius = min(radius + step, max_ring_mm)
            ring = near & (dist <= radius) & wm[lesion.box]
        n_grown += radius > ring_mm
        if ring.sum() < 2:
            n_no_wm += 1
            ring = near & (dist <= radius) & tissue[lesion.box]
        if ring.sum() < 2:
            raise FillError("A lesion has no tissue around it to fill from; check the mask.")
        values = image[lesion.box][ring]
        draws = rng.normal(values.mean(), values.std(), size=int(lesion.inside.sum()))
        # Keep draws inside the ring's range so a wide Gaussian cannot leave the tissue.
        filled[lesion.box][lesion.inside] = np.clip(draws, values.min(), values.max())

    if smooth_border:
        border = mask & ~ndimage.binary_erosion(mask, structure=np.ones((3, 3, 3), bool))
        filled[border] = ndimage.uniform_filter(filled, size=3)[border]

    return FillResult(
        filled=filled,
        params={
            "algorithm": "Battaglini 2012 (FSL lesion_filling)",
            "ring_mm": ring_mm,
            "max_ring_mm": max_ring_mm,
            "min_ring_voxels": int(min_ring_voxels),
            "wm_mask": wm_source,
            "smooth_border": bool(smooth_border),
            "n_lesions": n_lesions,
            "n_rings_grown": int(n_grown),
            "n_rings_without_wm": n_no_wm,
            "seed": int(seed),
        },
    )
