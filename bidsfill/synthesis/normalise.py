"""Per-contrast normalisation of cWDM and the rule back to scanner-like units.

Friedrich et al. 2024 (section 4.1): every volume is clipped at its 0.1st and 99.9th
intensity percentiles and scaled linearly to [0, 1]. The percentiles are taken over the
whole volume, as in the paper, so the zero background of skull-stripped images stays 0.

Back to scanner-like units (a synthetic contrast has no scanner scale of its own): the
[0, 1] output is mapped linearly onto the target contrast's *reference range*, the
median over the training subjects of their own 0.1st and 99.9th percentiles of that
contrast, stored in the model card: ``scanner = lo_ref + y * (hi_ref - lo_ref)``. The
result has the contrast's typical range on the training data; its absolute values carry
no physical meaning (MR intensities have none), only the contrast between tissues does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "PERCENTILES",
    "IntensityRange",
    "denormalise",
    "intensity_range",
    "normalise",
    "reference_range",
]

#: The paper's clipping percentiles.
PERCENTILES = (0.1, 99.9)


@dataclass(frozen=True)
class IntensityRange:
    """The values mapped to 0 and 1."""

    lo: float
    hi: float

    def to_list(self) -> list[float]:
        return [float(self.lo), float(self.hi)]


def intensity_range(
    image: np.ndarray, percentiles: Sequence[float] = PERCENTILES
) -> IntensityRange:
    """The clipping range of one volume (whole-volume percentiles, finite voxels)."""
    values = np.asarray(image, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise ValueError("The image has no finite voxels to normalise.")
    lo, hi = np.percentile(values, list(percentiles))
    if hi <= lo:
        raise ValueError("The image has no intensity range to normalise (it is constant).")
    return IntensityRange(float(lo), float(hi))


def normalise(
    image: np.ndarray,
    rng: IntensityRange | None = None,
    percentiles: Sequence[float] = PERCENTILES,
) -> tuple[np.ndarray, IntensityRange]:
    """Clip to the percentile range and scale to [0, 1]; return the image and its range."""
    rng = rng or intensity_range(image, percentiles)
    image = np.nan_to_num(np.asarray(image, dtype=np.float64))
    out = (np.clip(image, rng.lo, rng.hi) - rng.lo) / (rng.hi - rng.lo)
    return out.astype(np.float32), rng


def denormalise(normalised: np.ndarray, rng: IntensityRange) -> np.ndarray:
    """Inverse of :func:`normalise` on [0, 1] (values outside are clipped first)."""
    y = np.clip(np.asarray(normalised, dtype=np.float64), 0.0, 1.0)
    return (rng.lo + y * (rng.hi - rng.lo)).astype(np.float32)


def reference_range(ranges: Sequence[IntensityRange]) -> IntensityRange:
    """The scanner-like range of a contrast: medians of the training subjects' ranges."""
    if not ranges:
        raise ValueError("reference_range needs at least one range.")
    return IntensityRange(float(np.median([r.lo for r in ranges])),
                          float(np.median([r.hi for r in ranges])))  # fmt: skip
