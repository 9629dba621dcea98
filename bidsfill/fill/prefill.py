"""The "prefill" channel of residual diffusion models: the image with its mask filled by
a classical filler.

A model conditioned on it learns to correct a good first guess instead of inventing the
fill from the context alone, which a small model trained for little time does poorly.
Training, inference and adaptation all call :func:`classical_prefill`, so the channel
cannot drift. It lives with the fillers; the diffusion engine receives it as a function
(``prefill=``) and so never imports the fill package, which imports the engine.
"""

from __future__ import annotations

import numpy as np

from bidsfill.diffusion.card import PREFILL_METHOD
from bidsfill.fill.base import fill_image

__all__ = ["classical_prefill"]


def classical_prefill(
    image: np.ndarray,
    mask: np.ndarray,
    zooms: tuple[float, float, float] = (1.0, 1.0, 1.0),
    method: str = PREFILL_METHOD,
) -> np.ndarray:
    """``image`` (float32) with ``mask`` filled by the classical ``method`` (seed 0)."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return np.asarray(image, dtype=np.float32)
    return fill_image(image, mask, method=method, zooms=zooms, seed=0).filled.astype(np.float32)
