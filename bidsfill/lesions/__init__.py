"""Lesion masks to fill: synthetic shapes and real masks placed in other brains.

Used by training (:mod:`bidsfill.train.masks` mixes them), ``bidsfill-simulate`` and the
demo, so it sits beside the fillers, not inside the training package.
"""

from bidsfill.lesions.real import (
    RealMask,
    filter_real_masks,
    find_real_masks,
    place_mni_mask,
    warp_real_mask,
)
from bidsfill.lesions.synthetic import KINDS, LesionSites, lesion_sites, sample_lesion_mask

__all__ = [
    "KINDS",
    "LesionSites",
    "RealMask",
    "filter_real_masks",
    "find_real_masks",
    "lesion_sites",
    "place_mni_mask",
    "sample_lesion_mask",
    "warp_real_mask",
]
