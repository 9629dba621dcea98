"""Preparation shared by training and inference, so the two never drift apart.

Intensity normalisation is fitted on the known (unmasked, nonzero) tissue of each crop,
not on whole-volume percentiles, which move with skull, neck fat and scanner scaling:
fitted on whole volumes, a model trained on skull-stripped templates fills a scan with
skull far too bright. Geometry: one crop per lesion cluster (bounding box plus a context
margin, grown to a size the network accepts), overlapping z-windows blended with smooth
weights, and paste-back; every step is invertible.

Array layout: volumes are ``(X, Y, Z)`` with Z the axial (inferior-superior) axis, as
nibabel gives for RAS-like images; each architecture's network layout is given by its
spec (:mod:`bidsfill.diffusion.architectures`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from bidsfill.diffusion.architectures import ArchitectureSpec, get_architecture
from bidsfill.diffusion.card import Preprocessing

__all__ = [
    "Crop",
    "IntensityMap",
    "TissueReference",
    "TrainingExample",
    "blend_weights",
    "build_condition",
    "crop_around",
    "extra_channels",
    "fit_intensity_map",
    "lesion_components",
    "lesion_crops",
    "make_training_example",
    "mirror_lr",
    "residual_scale",
    "normalise_extras",
    "slices_to_volume",
    "tissue_reference",
    "to_network",
    "training_patch",
    "volume_to_slices",
    "z_windows",
]

def residual_scale(preprocessing: Preprocessing | dict[str, Any]) -> float | None:
    """The residual model's scale (model units per normalised unit), None for image models."""
    return Preprocessing.coerce(preprocessing).residual_scale


# -- intensity ------------------------------------------------------------------------------
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


def build_condition(
    x_norm: np.ndarray | torch.Tensor,
    mask: np.ndarray | torch.Tensor,
    extras: tuple[np.ndarray | torch.Tensor, ...] | list = (),
) -> torch.Tensor:
    """Conditioning channels ``(2 + len(extras), *spatial)``: voided image b = x (1 - m), m, extras."""
    x = torch.as_tensor(np.asarray(x_norm, dtype=np.float32))
    m = torch.as_tensor(np.asarray(mask, dtype=np.float32))
    chans = [x * (1 - m), m] + [torch.as_tensor(np.asarray(e, dtype=np.float32)) for e in extras]
    return torch.stack(chans, dim=0)


def mirror_lr(volume: np.ndarray) -> np.ndarray:
    """Left-right mirrored volume (axis 0), the contralateral context of Santorum et al."""
    return np.ascontiguousarray(np.asarray(volume)[::-1])


def extra_channels(
    image: np.ndarray,
    names: list[str] | tuple[str, ...],
    extra_images: dict[str, np.ndarray] | None = None,
) -> list[np.ndarray]:
    """Full-volume extra conditioning images, in scanner units, in card order."""
    out = []
    for name in names:
        if name == "mirror":
            out.append(mirror_lr(image))
        elif extra_images and name in extra_images:
            out.append(np.asarray(extra_images[name], dtype=np.float32))
        else:
            raise ValueError(f"The model needs a {name!r} image as extra conditioning.")
    return out


# -- geometry -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Crop:
    """A box of a volume grown to a multiple of ``divisor``, padded where it leaves the volume.

    ``start``/``stop`` are the box inside the volume; ``pad`` the (before, after) zero
    padding per axis that completes the divisible size.
    """

    start: tuple[int, int, int]
    stop: tuple[int, int, int]
    pad: tuple[tuple[int, int], ...] = field(default=((0, 0), (0, 0), (0, 0)))
    labels: tuple[int, ...] = ()  # lesion components (of lesion_crops' labelling) it fills

    @property
    def slices(self) -> tuple[slice, ...]:
        return tuple(slice(a, b) for a, b in zip(self.start, self.stop, strict=True))

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(
            b - a + p0 + p1 for a, b, (p0, p1) in zip(self.start, self.stop, self.pad, strict=True)
        )

    def extract(self, volume: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """The crop of ``volume`` (padding with ``fill``)."""
        return np.pad(np.asarray(volume)[self.slices], self.pad, constant_values=fill)

    def inner(self, crop: np.ndarray) -> np.ndarray:
        """The part of a crop-shaped array that lies inside the volume."""
        return crop[
            tuple(slice(p0, s - p1) for (p0, p1), s in zip(self.pad, crop.shape, strict=True))
        ]

    def paste(self, crop: np.ndarray, volume: np.ndarray) -> np.ndarray:
        """Write a crop-shaped array back into (a copy of) ``volume``."""
        out = np.array(volume, copy=True)
        out[self.slices] = self.inner(crop)
        return out


def crop_around(
    lo: np.ndarray,
    hi: np.ndarray,
    vol_shape: tuple[int, ...],
    min_size: tuple[int, ...],
    divisor: tuple[int, ...],
) -> Crop:
    """Crop containing ``[lo, hi)``, at least ``min_size``, sizes a multiple of ``divisor``.

    The box grows symmetrically inside the volume first (more real context) and is
    zero-padded only where the volume is too small.
    """
    start, stop, pad = [], [], []
    for a, b, n, mn, d in zip(lo, hi, vol_shape, min_size, divisor, strict=True):
        a, b = max(0, int(a)), min(n, int(b))
        want = max(b - a, mn)
        want = -(-want // d) * d
        grow = want - (b - a)
        a2 = max(0, a - grow // 2)
        b2 = min(n, a2 + want)
        a2 = max(0, b2 - want)
        missing = want - (b2 - a2)
        start.append(a2)
        stop.append(b2)
        pad.append((missing // 2, missing - missing // 2))
    return Crop(tuple(start), tuple(stop), tuple(pad))


def lesion_components(mask: np.ndarray) -> np.ndarray:
    """26-connected lesion components, labelled 1..n (the labels :class:`Crop` refers to)."""
    return ndimage.label(np.asarray(mask, dtype=bool), structure=np.ones((3, 3, 3)))[0]


def lesion_crops(
    mask: np.ndarray,
    margin: int,
    min_size: tuple[int, int, int],
    divisor: tuple[int, int, int],
    *,
    context_fraction: float = 0.0,
) -> list[Crop]:
    """One crop per lesion cluster, with at least ``margin`` voxels of context on each side.

    A lesion's margin grows with its size (``context_fraction`` of its largest extent), so
    a large stroke or cavity sees tissue well beyond its border. Two clusters are filled
    in one crop only when the merged box is no larger than their two boxes together: close
    lesions then see each other, and scattered ones (15 MS lesions across both
    hemispheres) never merge into one crop around the whole brain, which cost 40 model
    calls on 5.8 M voxels (49 minutes on a core) before this rule. Each crop records the
    components it fills; each lesion is written by its own crop only.
    """
    labels = lesion_components(mask)
    shape = np.array(mask.shape)
    boxes = []
    for lab, sl in enumerate(ndimage.find_objects(labels), start=1):
        lo = np.array([s.start for s in sl])
        hi = np.array([s.stop for s in sl])
        m = max(int(margin), int(np.ceil(context_fraction * float((hi - lo).max()))))
        boxes.append((np.maximum(lo - m, 0), np.minimum(hi + m, shape), {lab}))

    def volume(lo: np.ndarray, hi: np.ndarray) -> int:
        return int(np.prod(np.maximum(hi - lo, np.asarray(min_size))))

    merged = True
    while merged:
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                (alo, ahi, al), (blo, bhi, bl) = boxes[i], boxes[j]
                lo, hi = np.minimum(alo, blo), np.maximum(ahi, bhi)
                if volume(lo, hi) <= volume(alo, ahi) + volume(blo, bhi):
                    boxes[i] = (lo, hi, al | bl)
                    del boxes[j]
                    merged = True
                    break
            if merged:
                break
    crops = []
    for lo, hi, labs in boxes:
        crop = crop_around(lo, hi, mask.shape, min_size, divisor)
        crops.append(Crop(crop.start, crop.stop, crop.pad, tuple(sorted(labs))))
    return crops


def volume_to_slices(volume: np.ndarray) -> np.ndarray:
    """``(X, Y, Z)`` -> ``(Z, X, Y)``: axial slices first, for the slice models."""
    return np.ascontiguousarray(np.moveaxis(np.asarray(volume), 2, 0))


def slices_to_volume(slices: np.ndarray) -> np.ndarray:
    """Inverse of :func:`volume_to_slices`."""
    return np.ascontiguousarray(np.moveaxis(np.asarray(slices), 0, 2))


def z_windows(nz: int, window: int, overlap: int) -> list[int]:
    """Start indices of windows of ``window`` slices covering ``range(nz)`` (nz >= window)."""
    if nz < window:
        raise ValueError(f"{nz} slices cannot hold a window of {window}.")
    if not 0 <= overlap < window:
        raise ValueError(f"window_overlap must be in 0..{window - 1}, got {overlap}.")
    stride = window - overlap
    starts = list(range(0, nz - window + 1, stride))
    if starts[-1] != nz - window:
        starts.append(nz - window)
    return starts


def blend_weights(window: int, overlap: int) -> np.ndarray:
    """Per-slice weights of a window: 1 in the middle, linear ramps over the overlap."""
    w = np.ones(window, dtype=np.float32)
    ramp = np.arange(1, overlap + 1, dtype=np.float32) / (overlap + 1)
    if overlap:
        w[:overlap] = ramp
        w[-overlap:] = ramp[::-1]
    return w


# -- training examples ----------------------------------------------------------------------
@dataclass(frozen=True)
class TrainingExample:
    """One training pair built exactly as inference builds its inputs.

    ``x0`` is the target in the network's layout, ``condition`` the channels after x_t
    (empty for unconditional models), ``mask`` the mask in the same layout as the image
    where that layout is voxelwise (slice models), else in image space ``(1, X, Y, Z)``.
    """

    x0: torch.Tensor
    condition: torch.Tensor
    mask: torch.Tensor
    intensity: IntensityMap


def to_network(
    arch: str | ArchitectureSpec,
    image_norm: np.ndarray,
    mask: np.ndarray,
    extras_norm: list[np.ndarray],
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x0, condition) of a normalised crop in the network's layout (no batch axis)."""
    spec = get_architecture(arch)
    x = torch.as_tensor(np.asarray(image_norm, np.float32))[None]
    cond = build_condition(image_norm, mask, extras_norm)
    return spec.to_network(x), spec.to_network(cond)


def make_training_example(
    volume: np.ndarray,
    mask: np.ndarray,
    *,
    arch: str | ArchitectureSpec,
    config: dict[str, Any],
    preprocessing: Preprocessing | dict[str, Any],
    rng: np.random.Generator,
    extra_images: dict[str, np.ndarray] | None = None,
    reference: TissueReference | None = None,
) -> TrainingExample:
    """Crop a patch around a random mask voxel and build (x0, condition) as inference does.

    Args:
        volume: healthy volume ``(X, Y, Z)`` in scanner units (the ground truth).
        mask: synthetic lesion mask on the same grid (the region to inpaint).
        arch: network architecture.
        config: network config (``in_channels`` tells whether it is conditional).
        preprocessing: the model card's "preprocessing".
        rng: random generator choosing the patch centre.
        extra_images: images named in the preprocessing's extras other than "mirror".
        reference: landmarks of the whole volume; computed from ``volume`` when None.
    """
    spec, pre = get_architecture(arch), Preprocessing.coerce(preprocessing)
    volume = np.asarray(volume, dtype=np.float32)
    mask = np.asarray(mask, dtype=bool)
    if volume.shape != mask.shape:
        raise ValueError(f"Volume {volume.shape} and mask {mask.shape} differ in shape.")
    names = list(pre.extras)
    extras = extra_channels(volume, names, extra_images)
    crop = training_patch(mask, arch=spec, config=config, preprocessing=pre, rng=rng)
    img_c, mask_c = crop.extract(volume), crop.extract(mask).astype(bool)
    if reference is None:
        reference = tissue_reference(volume, mask, pre.intensity.percentiles)
    imap = fit_intensity_map(img_c, ~mask_c, reference=reference, **pre.intensity.to_dict())
    extras_n = normalise_extras(names, [crop.extract(e) for e in extras], imap, ~mask_c)
    x0, cond = to_network(spec, imap.apply(img_c), mask_c.astype(np.float32), extras_n)
    if pre.residual_scale is not None:  # the target is the correction of the prefill
        prefill_n = extras_n[names.index("prefill")]
        x0 = x0 - to_network(spec, prefill_n, mask_c.astype(np.float32), [])[0]
        x0 = x0 * pre.residual_scale
    if not spec.is_conditional(int(config["in_channels"])):
        cond = cond[:0]
    m = torch.as_tensor(mask_c[None].astype(np.float32))
    # The loss mask: in the network's layout where that is voxelwise, else image space.
    return TrainingExample(x0, cond, spec.to_network(m) if spec.voxelwise else m, imap)


def training_patch(
    mask: np.ndarray,
    *,
    arch: str | ArchitectureSpec,
    config: dict[str, Any],
    preprocessing: Preprocessing | dict[str, Any],
    rng: np.random.Generator,
) -> Crop:
    """The patch a training example is cut from: centred on a random mask voxel.

    Separate from :func:`make_training_example` so the dataset can compute the prefill
    only around this patch (a generator in the same state gives the same patch).
    """
    spec, pre = get_architecture(arch), Preprocessing.coerce(preprocessing)
    size = tuple(int(s) for s in pre.patch_size)
    idx = np.argwhere(mask)
    centre = idx[rng.integers(len(idx))] if len(idx) else np.array(mask.shape) // 2
    lo = centre - np.array(size) // 2
    return crop_around(lo, lo + np.array(size), mask.shape, size, spec.crop_divisor(config))


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
