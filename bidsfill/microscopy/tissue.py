"""Where the tissue is: a coarse mask that lets training skip patches of bare glass.

A lab's whole sections hold large empty areas (glass, outside the section); patches
drawn there teach the model nothing. The rule, on a downsampled copy of the image:

1. blocks of ``BLOCK`` (16) pixels on a grid of at most ``MAX_GRID`` (512) blocks a side
   (every block for images up to 8192 pixels a side, evenly spaced blocks beyond);
2. a block is *flat* when the standard deviation of its pixels is at most
   ``FLAT_TOLERANCE`` (3 %) of the image's intensity window (the training window,
   percentiles 0.5-99.5): glass is flat, cortex at ~1 µm never is (cells and grain);
3. background = flat blocks after a binary opening with a 3x3 square, because glass is a
   large area, while a single flat block can lie inside a large soma or a vessel;
4. tissue = every other block; a patch's tissue fraction weights the blocks by their
   overlap with it.

Not an Otsu threshold of the intensities: on the two real fields (all tissue) Otsu
labels only 27-45 % of the pixels as tissue, because it splits dark cell bodies from
paler neuropil, so it would reject real tissue. The flatness rule flags 0.1 % and 0 % of
their blocks before the opening and none after it, and it does not depend on whether
the background is bright (bright field) or dark (dark field, fluorescence).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["BLOCK", "FLAT_TOLERANCE", "MAX_GRID", "TissueGrid", "tissue_grid"]

BLOCK = 16
MAX_GRID = 512
FLAT_TOLERANCE = 0.03


class TissueGrid:
    """Tissue flags of the blocks whose top-left corners are ``ys`` x ``xs``."""

    def __init__(self, tissue: np.ndarray, ys: np.ndarray, xs: np.ndarray, block: int) -> None:
        self.tissue, self.ys, self.xs, self.block = tissue, ys, xs, block

    @property
    def fraction_of_image(self) -> float:
        return float(self.tissue.mean())

    def fraction(self, y: int, x: int, patch: int) -> float:
        """Tissue fraction of the patch: blocks weighted by their overlap with it (the
        block nearest the patch centre when none overlaps, on a sparse grid)."""
        wy = self._overlap(self.ys, y, patch)
        wx = self._overlap(self.xs, x, patch)
        return float(wy @ self.tissue @ wx / (wy.sum() * wx.sum()))

    def _overlap(self, starts: np.ndarray, start: int, patch: int) -> np.ndarray:
        w = np.clip(np.minimum(starts + self.block, start + patch) - np.maximum(starts, start),
                    0, None).astype(np.float64)  # fmt: skip
        if not w.any():
            w[np.argmin(np.abs(starts + self.block / 2 - (start + patch / 2)))] = 1.0
        return w


def _starts(n: int, block: int) -> np.ndarray:
    count = max(1, min(MAX_GRID, n // block))
    return np.linspace(0, n - block, count).round().astype(int)


def tissue_grid(image: np.ndarray, lo: float, hi: float, *, block: int = BLOCK,
                tolerance: float = FLAT_TOLERANCE) -> TissueGrid:  # fmt: skip
    """The tissue mask of ``image`` (2D array or memory map; only the sampled blocks are
    read) given its intensity window ``lo``-``hi``."""
    h, w = image.shape
    block = min(block, h, w)
    ys, xs = _starts(h, block), _starts(w, block)
    cols = (xs[:, None] + np.arange(block)).ravel()
    std = np.empty((len(ys), len(xs)))
    for i, y in enumerate(ys):
        rows = np.asarray(image[y : y + block], np.float64)[:, cols]
        std[i] = rows.reshape(block, len(xs), block).std(axis=(0, 2))
    flat = std <= tolerance * max(hi - lo, 1e-9)
    background = ndimage.binary_opening(flat, np.ones((3, 3), bool))
    return TissueGrid(~background, ys, xs, block)
