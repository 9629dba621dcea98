"""Histology repair (issue 18): 2D microscopy I/O, artefact masks, cell statistics,
classical baselines and an unconditional 2D DDPM with RePaint (Kropp et al.).

Core layer: numpy/torch/scikit-image/tifffile/Pillow only, no Nipype, no pybids.
"""

from bidsfill.microscopy.io import (
    MICROSCOPY_SUFFIXES,
    MicroscopyInputError,
    read_image,
    write_image,
)
from bidsfill.microscopy.masks import artefact_mask

__all__ = [
    "MICROSCOPY_SUFFIXES",
    "MicroscopyInputError",
    "artefact_mask",
    "read_image",
    "write_image",
]
