"""Shared pieces of the classical fillers: lesion components and a cheap WM mask.

Every classical filler works lesion by lesion inside a padded bounding box, so the cost
grows with the lesion load and not with the field of view.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["Lesion", "estimate_wm_mask", "iter_lesions"]

# 26-connectivity: two lesion voxels touching by a corner are one lesion, as in FSL.
_CONN26 = np.ones((3, 3, 3), dtype=bool)


@dataclass(frozen=True)
class Lesion:
    """One connected lesion and the padded box it is processed in.

    Args:
        label: component number (1-based) in the label image.
        box: slices of the padded bounding box in the full volume.
        inside: bool array over ``box``, True on this lesion's voxels.
    """

    label: int
    box: tuple[slice, ...]
    inside: np.ndarray


def iter_lesions(mask: np.ndarray, pad: int) -> Iterator[Lesion]:
    """Yield each 26-connected component of ``mask`` with a box padded by ``pad`` voxels."""
    labels, _ = ndimage.label(mask, structure=_CONN26)
    for label, slc in enumerate(ndimage.find_objects(labels), start=1):
        if slc is None:
            continue
        box = tuple(
            slice(max(s.start - pad, 0), min(s.stop + pad, n))
            for s, n in zip(slc, mask.shape, strict=True)
        )
        yield Lesion(label=label, box=box, inside=labels[box] == label)


def estimate_wm_mask(image: np.ndarray, exclude: np.ndarray) -> np.ndarray:
    """A cheap T1w white-matter mask: the brightest of three Otsu classes in the brain.

    Battaglini's filler needs only "normal-appearing WM near the lesion", not a full
    segmentation, so three-class multi-Otsu on the non-background voxels (lesions left
    out so they cannot shift the thresholds) is enough and costs milliseconds, where
    FAST/Atropos would cost seconds to minutes. In T1w, WM is the brightest tissue; in a
    head with skull, bright scalp fat also lands in this class but lies far from lesions,
    so the rings around lesions never reach it.
    """
    from skimage.filters import threshold_multiotsu

    robust_max = float(np.percentile(image, 99.9)) if image.size else 0.0
    brain = (image > 1e-3 * robust_max) & ~exclude
    try:
        thresholds = threshold_multiotsu(image[brain], classes=3)
    except ValueError:  # fewer than three distinct intensities: nothing to split
        return brain
    return brain & (image > thresholds[-1])
