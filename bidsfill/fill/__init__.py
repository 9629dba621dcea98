"""Lesion fillers: classical (FSL-style, ANTs-style, non-local, FSL itself) and diffusion."""

from bidsfill.fill.base import (
    FillError,
    FillResult,
    available_methods,
    fill_image,
    get_filler,
    register_filler,
)

__all__ = [
    "FillError",
    "FillResult",
    "available_methods",
    "fill_image",
    "get_filler",
    "register_filler",
]
