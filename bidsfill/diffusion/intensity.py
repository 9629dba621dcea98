"""The normalisation: scanner units <-> the model's intensity range, fitted per crop.

Intensity normalisation is fitted on the known (unmasked, nonzero) tissue of each crop,
not on whole-volume percentiles, which move with skull, neck fat and scanner scaling:
fitted on whole volumes, a model trained on skull-stripped templates fills a scan with
skull far too bright. Whole-volume landmarks (:class:`TissueReference`) only steady the
per-crop fit. Training and inference both normalise through
:class:`bidsfill.diffusion.pipeline.Preparation`, which uses this module.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import ndimage

__all__ = [
    "MAX_PEAK_RATIO",
    "IntensityMap",
    "TissueReference",
    "fit_intensity_map",
    "normalise_extras",
    "tissue_reference",
]


@dataclass(frozen=True)
class IntensityMap:
    """Affine map from scanner units to the model's range, and back.

    ``zero`` (background) maps to ``low`` and ``peak`` (the brightest large tissue mode,
    white matter in T1w) to ``peak_value``. ``apply`` clips to ``clip``; ``inverse``
    undoes the affine part exactly.
    """

    zero: float
    peak: float
    low: float = -1.0
    peak_value: float = 0.5
    clip: tuple[float, float] = (-1.5, 1.5)

    @property
    def scale(self) -> float:
        """Model units per scanner unit."""
        return (self.peak_value - self.low) / (self.peak - self.zero)

    def apply(self, x: np.ndarray, clip: bool = True) -> np.ndarray:
        y = (np.asarray(x, dtype=np.float32) - self.zero) * self.scale + self.low
        return np.clip(y, *self.clip).astype(np.float32) if clip else y.astype(np.float32)

    def inverse(self, y: np.ndarray) -> np.ndarray:
        return ((np.asarray(y, dtype=np.float64) - self.low) / self.scale + self.zero).astype(
            np.float32
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["clip"] = list(self.clip)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IntensityMap:
        data = dict(data)
        if "clip" in data:
            data["clip"] = tuple(data["clip"])
        return cls(**data)


def _tissue_peak(values: np.ndarray, percentiles: tuple[float, float]) -> float:
    lo, hi = np.percentile(values, percentiles)
    if hi <= lo:
        return float(hi)
    hist, edges = np.histogram(values, bins=100, range=(lo, hi))
    hist = ndimage.gaussian_filter1d(hist.astype(np.float64), 2.0)
    centres = (edges[:-1] + edges[1:]) / 2
    # The brightest large mode: WM in T1w. Search only above the median so a large CSF
    # or GM share cannot win.
    upper = centres >= np.median(values)
    return float(centres[upper][np.argmax(hist[upper])])


#: A crop's own tissue peak may differ from the whole volume's by this factor at most.
#: Bias fields move the local WM peak by some 10-30 %; a crop whose known voxels are mostly
#: background or skull (a lesion at the edge of the brain) would otherwise be normalised
#: to the wrong tissue and filled far too dark or bright.
MAX_PEAK_RATIO = 1.35


@dataclass(frozen=True)
class TissueReference:
    """Whole-volume intensity landmarks that steady the per-crop normalisation.

    ``floor``: intensities at or below it are background (air, noise), not tissue.
    ``peak``: the whole volume's brightest large tissue mode (white matter in T1w).
    """

    floor: float
    peak: float


def tissue_reference(
    volume: np.ndarray,
    exclude: np.ndarray | None = None,
    percentiles: tuple[float, float] | list[float] = (2.0, 99.5),
) -> TissueReference:
    """Background floor and tissue peak of a whole volume (lesions in ``exclude`` left out).

    The floor is the midpoint of the two Otsu classes' means of the nonzero voxels. Otsu's
    threshold alone can sit anywhere in an empty gap between background noise and tissue
    (synthetic or exported scans), often just above the noise; the class-mean midpoint
    lies inside the gap there and between dark and bright tissue otherwise, and only the
    bright (WM) mode is needed from what is left. Computed once per volume at inference
    and once per training region, by this function in both places.
    """
    from skimage.filters import threshold_otsu

    volume = np.asarray(volume, dtype=np.float32)
    valid = np.isfinite(volume) & (volume != 0)
    if exclude is not None:
        valid &= ~np.asarray(exclude, dtype=bool)
    values = volume[valid]
    if values.size < 32 or float(values.max()) <= float(values.min()):
        return TissueReference(floor=0.0, peak=float(values.max()) if values.size else 0.0)
    otsu = float(threshold_otsu(values))
    floor = max(
        0.0, 0.5 * (float(values[values <= otsu].mean()) + float(values[values > otsu].mean()))
    )
    tissue = values[values > floor]
    peak = _tissue_peak(tissue, tuple(percentiles)) if tissue.size >= 32 else float(values.max())
    return TissueReference(floor=floor, peak=peak)


def fit_intensity_map(
    image_crop: np.ndarray,
    known_mask: np.ndarray,
    *,
    low: float = -1.0,
    peak_value: float = 0.5,
    clip: tuple[float, float] | list[float] = (-1.5, 1.5),
    percentiles: tuple[float, float] | list[float] = (2.0, 99.5),
    reference: TissueReference | None = None,
    **_: Any,
) -> IntensityMap:
    """Fit the map on the known (unmasked, nonzero) voxels of a crop.

    Args:
        image_crop: crop in scanner units.
        known_mask: True where the image is known (outside the lesion mask).
        low, peak_value, clip, percentiles: the model card's "intensity" rule.
        reference: the whole volume's landmarks (:func:`tissue_reference`): voxels at or
            below its floor are not used as tissue, and the crop's peak is kept within
            :data:`MAX_PEAK_RATIO` of its peak (its peak alone when the crop holds too
            little tissue).

    Raises:
        ValueError: fewer than 32 known nonzero voxels to fit on (without a reference).
    """
    image_crop = np.asarray(image_crop, dtype=np.float64)
    known = np.asarray(known_mask, dtype=bool) & np.isfinite(image_crop)
    tissue = known & (image_crop != 0)
    if reference is not None:
        tissue &= image_crop > reference.floor
    values = image_crop[tissue]
    zero = min(0.0, float(np.percentile(image_crop[known], 0.5))) if known.any() else 0.0
    if values.size >= 32:
        peak = _tissue_peak(values, tuple(percentiles))
        if reference is not None and reference.peak > 0:
            lo, hi = reference.peak / MAX_PEAK_RATIO, reference.peak * MAX_PEAK_RATIO
            peak = float(np.clip(peak, lo, hi))
    elif reference is not None and reference.peak > 0:
        peak = reference.peak
    else:
        raise ValueError(
            "Too little known tissue around the lesion to normalise intensities "
            f"({values.size} voxels)."
        )
    if peak <= zero:
        raise ValueError("The known tissue around the lesion has no positive intensity peak.")
    return IntensityMap(
        zero=zero, peak=peak, low=float(low), peak_value=float(peak_value), clip=tuple(clip)
    )


def normalise_extras(
    names: list[str] | tuple[str, ...],
    crops: list[np.ndarray],
    imap: IntensityMap,
    known: np.ndarray,
) -> list[np.ndarray]:
    """Normalise extra channels: the mirrored T1w with the T1w's map, other contrasts
    (FLAIR) with their own map fitted on the same known voxels."""
    out = []
    for name, crop in zip(names, crops, strict=True):
        # The mirrored image and the prefill are T1w intensities: the T1w's own map.
        emap = imap if name in ("mirror", "prefill") else fit_intensity_map(crop, known)
        out.append(emap.apply(crop))
    return out
