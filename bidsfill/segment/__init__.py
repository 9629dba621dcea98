"""Tissue segmentation (GM/WM/CSF) and brain masks, on arrays (no Nipype in the API)."""

from bidsfill.segment.brainmask import estimate_brain_mask, looks_skull_stripped
from bidsfill.segment.tissues import LABELS, Segmentation, segment_tissues

__all__ = [
    "LABELS",
    "Segmentation",
    "estimate_brain_mask",
    "looks_skull_stripped",
    "segment_tissues",
]
