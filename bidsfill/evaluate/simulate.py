"""Lesion appearance: paint T1-hypointense lesions into a healthy image.

Evaluating a filler needs the truth under the lesion, so we start from a healthy scan and
darken it inside a mask. MS lesions on T1w are darker than the normal-appearing white
matter around them (black holes can reach CSF levels); their edge is a partial-volume
ramp, not a step. Intensities change only inside the mask, so the healthy scan stays the
ground truth everywhere else.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

__all__ = ["apply_lesions", "bright_lesion", "lesion_weights"]


def _as_range(value: float | Sequence[float]) -> tuple[float, float]:
    if isinstance(value, (int, float)):
        return float(value), float(value)
    low, high = (float(v) for v in value)
    if high < low:
        raise ValueError(f"range {value!r} has high < low")
    return low, high


def lesion_weights(
    mask: np.ndarray, edge_sigma: float = 1.0, zooms: Sequence[float] = (1.0, 1.0, 1.0)
) -> np.ndarray:
    """Per-voxel lesion strength in [0, 1]: 0 outside, ramping up to 1 inside each lesion.

    The mask is blurred with a Gaussian of ``edge_sigma`` mm, kept inside the mask and
    divided by each lesion's peak, so a one-voxel lesion still reaches full strength and
    large lesions have a soft rim of partial volume.
    """
    mask = np.asarray(mask).astype(bool)
    if edge_sigma <= 0 or not mask.any():
        return mask.astype(np.float32)
    sigma = [edge_sigma / float(z) for z in zooms]
    blurred = ndimage.gaussian_filter(mask.astype(np.float32), sigma=sigma)
    labels, n = ndimage.label(mask)
    peaks = np.asarray(
        ndimage.maximum(blurred, labels, index=np.arange(1, n + 1)), dtype=np.float32
    )
    peak_map = np.zeros(n + 1, dtype=np.float32)
    peak_map[0] = 1.0  # background; masked out below
    peak_map[1:] = np.maximum(peaks, 1e-6)
    weights = np.where(mask, blurred / peak_map[labels], 0.0)
    return np.clip(weights, 0.0, 1.0).astype(np.float32)


def apply_lesions(
    image: np.ndarray,
    mask: np.ndarray,
    wm_mask_or_prob: np.ndarray,
    rng: np.random.Generator,
    contrast: float | Sequence[float] = (0.25, 0.5),
    edge_sigma: float = 1.0,
    *,
    zooms: Sequence[float] = (1.0, 1.0, 1.0),
    heterogeneity: float = 0.05,
    ring_mm: float = 4.0,
    hyperintense: bool = False,
) -> np.ndarray:
    """Make T1-hypointense lesions relative to the local white matter, with soft edges
    (or, with ``hyperintense``, the bright lesions of a FLAIR or T2w).

    For each connected lesion the reference level is the median intensity of white
    matter in a ring of ``ring_mm`` around it (the whole-brain WM median if the ring has
    none). The lesion core is set to ``level * (1 - contrast)`` with a contrast drawn
    per lesion, modulated by smooth noise (``heterogeneity``, relative), and blended into
    the healthy image with :func:`lesion_weights`.

    Args:
        image: healthy image (any real dtype); returned as float32.
        mask: lesion mask.
        wm_mask_or_prob: WM mask or probability map (voxels >= 0.5 count as WM).
        rng: random generator (same state -> same output).
        contrast: darkening relative to local WM, a number or a (low, high) range.
        edge_sigma: width in mm of the partial-volume rim.
        zooms: voxel size in mm.
        heterogeneity: relative standard deviation of the smooth texture inside lesions.
        ring_mm: width of the ring of WM that sets each lesion's reference level.
        hyperintense: brighten instead: the core is ``level * (1 + contrast)``.

    Returns:
        float32 image equal to ``image`` outside ``mask`` and darker inside it.
    """
    image = np.asarray(image, dtype=np.float32)
    mask = np.asarray(mask).astype(bool)
    if image.shape != mask.shape or image.shape != np.shape(wm_mask_or_prob):
        raise ValueError("image, mask and WM map must have the same shape")
    out = image.copy()
    if not mask.any():
        return out
    low, high = _as_range(contrast)
    if not 0.0 <= low <= high <= 1.0:
        raise ValueError(f"contrast must lie in [0, 1], got {contrast!r}")
    wm = (np.asarray(wm_mask_or_prob, dtype=np.float32) >= 0.5) & ~mask
    global_level = float(np.median(image[wm])) if wm.any() else float(np.median(image[mask]))

    labels, n = ndimage.label(mask)
    ring_vox = [max(1, int(round(ring_mm / float(z)))) for z in zooms]
    target = np.zeros_like(image)
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        # Grow the bounding box by the ring width to look at the neighbourhood only.
        grown = tuple(
            slice(max(0, s.start - r), min(dim, s.stop + r))
            for s, r, dim in zip(box, ring_vox, image.shape, strict=True)
        )
        lesion = labels[grown] == index
        ring = ndimage.binary_dilation(lesion, iterations=max(ring_vox)) & wm[grown]
        level = float(np.median(image[grown][ring])) if ring.sum() >= 5 else global_level
        change = rng.uniform(low, high)
        core = level * (1.0 + change if hyperintense else 1.0 - change)
        target[grown][lesion] = core
    if heterogeneity > 0:
        texture = ndimage.gaussian_filter(
            rng.standard_normal(image.shape).astype(np.float32),
            sigma=[1.0 / float(z) + 0.5 for z in zooms],
        )
        texture /= texture.std() + 1e-8
        target *= 1.0 + heterogeneity * texture
    weights = lesion_weights(mask, edge_sigma, zooms)
    blended = (1.0 - weights) * image + weights * target
    # Only darken (a lesion never brightens T1w), or only brighten; only inside the mask.
    keep = np.maximum if hyperintense else np.minimum
    out[mask] = keep(blended[mask], image[mask])
    return out


def bright_lesion(
    contrast_image: np.ndarray,
    mask: np.ndarray,
    wm_mask_or_prob: np.ndarray,
    zooms: Sequence[float],
    rng: np.random.Generator,
) -> np.ndarray:
    """A FLAIR or T2w crop with the lesion a patient's scan would show under ``mask``.

    Training masks are drawn in healthy tissue, where a FLAIR still shows grey and white
    matter; in a patient the FLAIR is bright and nearly flat there. A model conditioned
    on the FLAIR is trained and scored on this version (30-90 % brighter than the nearby
    white matter, soft edges), so it learns to use the FLAIR for where the lesion ends
    and what surrounds it, not to read the tissue under the lesion from it.
    """
    return apply_lesions(contrast_image, mask, wm_mask_or_prob, rng, contrast=(0.3, 0.9),
                         zooms=zooms, hyperintense=True)  # fmt: skip
