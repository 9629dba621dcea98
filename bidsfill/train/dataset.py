"""Training data: healthy volumes, and examples built around on-the-fly lesion masks.

An example is made in four steps: pick a brain region (weighted toward white matter),
draw a synthetic lesion mask inside it (:mod:`bidsfill.train.masks`, shapes from :mod:`bidsfill.lesions`), augment image and
mask together (:mod:`bidsfill.train.augment`), and hand the region to
:func:`bidsfill.diffusion.examples.make_training_example`, the same crop and
normalisation code that inference uses. Drawing masks in a region instead of the whole
brain keeps a step cheap on a CPU; the network only sees a patch anyway.

Every example is a pure function of ``(seed, index)``, so a resumed run, a DataLoader
worker or another DDP rank gets exactly the example it would have had.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch

from bidsfill.diffusion.card import PREFILL_METHOD
from bidsfill.diffusion.conditioning import hide_reflected_mask
from bidsfill.diffusion.crops import Crop, crop_around, training_patch
from bidsfill.diffusion.examples import make_training_example
from bidsfill.evaluate.simulate import bright_lesion
from bidsfill.fill.prefill import classical_prefill
from bidsfill.lesions import LesionSites, sample_lesion_mask
from bidsfill.train.augment import Augmenter
from bidsfill.train.masks import MaskGenerator
from bidsfill.train.priors import mni_priors, register_priors

__all__ = [
    "InpaintingDataset",
    "TrainVolume",
    "TrainingScan",
    "load_volumes",
    "with_mirror",
    "load_volume",
    "mni_volume",
    "rescaled",
    "split_hemisphere",
]

LOGGER = logging.getLogger("bidsfill.train")

#: Voxels of context around a training patch inside which the prefill is computed.
_PREFILL_MARGIN = (8, 8, 6)


@dataclass
class TrainVolume:
    """A healthy scan reoriented to RAS, with the tissue maps that place lesions.

    Args:
        name: identifier listed in the model card (e.g. "sub-gd01:left").
        image: float32 ``(X, Y, Z)``, Z axial, in scanner units.
        affine: voxel-to-world affine of ``image``.
        zooms: voxel size in mm.
        wm: white-matter probability on the same grid.
        brain: brain mask on the same grid.
        extras: further contrasts on the same grid (e.g. {"flair": ...}).
        source: file it came from.
    """

    name: str
    image: np.ndarray
    affine: np.ndarray
    zooms: tuple[float, float, float]
    wm: np.ndarray
    brain: np.ndarray
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    source: str = ""
    to_mni: np.ndarray | None = None  # 4x4 RAS world -> MNI152 world (real MNI masks)
    lesion: np.ndarray | None = None  # the patient's own lesions, grown: never in a mask
    midplane: Any = None  # the MidPlane the "mirror" extra reflects about (with_mirror)


def _canonical(img: nib.Nifti1Image) -> nib.Nifti1Image:
    return nib.as_closest_canonical(img)


def load_volume(
    path: str | Path,
    name: str,
    *,
    cache_dir: Path | None = None,
    extras: dict[str, str | Path] | None = None,
    voxel_size: Sequence[float] | None = None,
    lesion: str | Path | None = None,
) -> TrainVolume:
    """Load a healthy T1w (any orientation), warp tissue priors onto it.

    Args:
        path: the T1w NIfTI.
        name: identifier for logs and the model card.
        cache_dir: where registered priors are cached.
        extras: other contrasts, resampled onto the T1w grid when needed.
        voxel_size: the model's grid (mm); a scan on another grid is resampled to it
            (linear), as inference resamples each crop to it.
        lesion: the patient's own lesion mask (a patient scan, e.g. an MS patient with a
            FLAIR): its voxels, grown by 2 voxels, are kept out of every drawn mask and out
            of the white matter that places them, so the "truth" inside a mask is never a
            real lesion.
    """
    img = _canonical(nib.load(str(path)))
    if img.ndim != 3:
        raise ValueError(f"{path} is not a 3D image.")
    if voxel_size is not None and not np.allclose(
        img.header.get_zooms()[:3], voxel_size, rtol=0.02
    ):
        from nibabel.processing import resample_to_output

        img = resample_to_output(
            nib.Nifti1Image(np.asarray(img.dataobj, dtype=np.float32), img.affine),
            voxel_sizes=tuple(float(v) for v in voxel_size),
            order=1,
        )
    data = np.asarray(img.dataobj, dtype=np.float32)
    priors = register_priors(img, cache_dir=cache_dir)
    loaded = {}
    for key, extra_path in (extras or {}).items():
        other = _canonical(nib.load(str(extra_path)))
        if other.shape != img.shape or not np.allclose(other.affine, img.affine, atol=1e-3):
            from nibabel.processing import resample_from_to

            other = resample_from_to(other, img, order=1)
        loaded[key] = np.asarray(other.dataobj, dtype=np.float32)
    zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    own, wm = None, priors.wm
    if lesion is not None:
        from nibabel.processing import resample_from_to
        from scipy import ndimage

        mask_img = _canonical(nib.load(str(lesion)))
        grid = resample_from_to(mask_img, img, order=0)
        own = ndimage.binary_dilation(np.asarray(grid.dataobj) > 0.5, iterations=2)
        wm = np.where(own, 0, wm).astype(wm.dtype)
    return TrainVolume(
        name, data, img.affine, zooms, wm, priors.brain, loaded, source=str(path),
        to_mni=priors.to_mni, lesion=own,
    )  # fmt: skip


def mni_volume(resolution: int = 1) -> TrainVolume:
    """The MNI152 2009 template from the nilearn wheel, with its own tissue maps."""
    img, priors = mni_priors(resolution)
    data = np.asarray(img.dataobj, dtype=np.float32)
    zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    return TrainVolume(
        f"MNI152NLin2009aSym:{resolution}mm",
        data,
        img.affine,
        zooms,
        priors.wm,
        priors.brain,
        source="nilearn.datasets.load_mni152_template",
        to_mni=priors.to_mni,
    )


@dataclass(frozen=True)
class TrainingScan:
    """One T1w to train or score on, as found by :mod:`bidsfill.bids.training`.

    Args:
        path: the T1w file.
        name: its file name without the extension (``sub-X_..._T1w``).
        extras: extra channels by name (``{"flair": path}``).
        dataset: the dataset it belongs to (model cards name sources relative to it).
        lesion: the subject's own lesion mask (``label-lesion_roi``) when it has one.
    """

    path: Path
    name: str
    extras: dict[str, Any] = field(default_factory=dict)
    dataset: Path | None = None
    lesion: Path | None = None


def load_volumes(
    scans: Sequence[TrainingScan],
    *,
    cache_dir: Path | None = None,
    voxel_size: Sequence[float] | None = None,
) -> list[TrainVolume]:
    """Load each scan (:func:`load_volume`), in the order given."""
    return [
        load_volume(
            s.path, s.name, cache_dir=cache_dir, extras=dict(s.extras), voxel_size=voxel_size,
            lesion=s.lesion,
        )  # fmt: skip
        for s in scans
    ]


def split_hemisphere(volume: TrainVolume, side: str) -> TrainVolume:
    """The left or right half of a volume, as a volume of its own (for held-out halves).

    The halves share no voxel, so a model trained on one half never saw the other.
    """
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', not {side!r}.")
    mid = volume.image.shape[0] // 2
    # RAS: x grows to the right, so the left hemisphere is the low-index half.
    sl = (slice(0, mid) if side == "left" else slice(mid, None), slice(None), slice(None))
    affine = volume.affine.copy()
    if side == "right":
        affine[:3, 3] += affine[:3, 0] * mid
    return dataclasses.replace(
        volume,
        name=f"{volume.name}:{side}",
        image=np.ascontiguousarray(volume.image[sl]),
        affine=affine,
        wm=np.ascontiguousarray(volume.wm[sl]),
        brain=np.ascontiguousarray(volume.brain[sl]),
        extras={k: np.ascontiguousarray(v[sl]) for k, v in volume.extras.items()},
        lesion=None if volume.lesion is None else np.ascontiguousarray(volume.lesion[sl]),
    )


def rescaled(volume: TrainVolume, scale: float, offset: float = 0.0) -> TrainVolume:
    """The same scan in other intensity units (``scale * x + offset`` where x > 0); its
    "mirror" channel, a T1w too, likewise."""

    def _map(x: np.ndarray) -> np.ndarray:
        return np.where(x > 0, x * scale + offset, 0).astype(np.float32)

    extras = dict(volume.extras)
    if "mirror" in extras:
        extras["mirror"] = _map(extras["mirror"])
    return dataclasses.replace(volume, name=f"{volume.name}*{scale:g}+{offset:g}",
                               image=_map(volume.image), extras=extras)  # fmt: skip


def with_mirror(volume: TrainVolume, seed: int = 0) -> TrainVolume:
    """The volume with its "mirror" channel: the scan reflected about its estimated
    mid-sagittal plane (Santorum et al.), exactly as the fill builds it."""
    from bidsfill.segment.midline import contralateral_image

    mirror, plane = contralateral_image(volume.image, volume.affine, seed=seed)
    return dataclasses.replace(volume, extras={**volume.extras, "mirror": mirror}, midplane=plane)


def _reflected_in_region(vol: TrainVolume, crop: Crop, mask: np.ndarray) -> np.ndarray:
    """The region's voxels whose contralateral point lies in the region's ``mask``: the
    mask's reflection about the volume's mid-sagittal plane, on the region's grid."""
    from bidsfill.segment.midline import GridReflection

    if vol.midplane is None:
        raise ValueError(f"{vol.name} has no estimated mid-sagittal plane (with_mirror).")
    # the region's voxel 0 in the volume (crop.extract pads with zeros)
    origin = tuple(s - p[0] for s, p in zip(crop.start, crop.pad, strict=True))
    return GridReflection(vol.affine, vol.midplane).in_box(mask, origin)


def _crop_sites(sites: LesionSites, sl: tuple[slice, ...]) -> LesionSites:
    arrays = {
        f.name: getattr(sites, f.name)[sl]
        for f in dataclasses.fields(sites)
        if isinstance(getattr(sites, f.name), np.ndarray)
    }
    return dataclasses.replace(sites, **arrays)


class InpaintingDataset(torch.utils.data.Dataset):
    """Deterministic training examples: item ``i`` depends only on ``(seed, i)``.

    Args:
        volumes: healthy training volumes.
        arch: network architecture (as in the model card).
        config: network config.
        preprocessing: the model card's preprocessing dict (patch size, intensity rule).
        masks: the lesion-mask generator.
        augment: augmentation, or None.
        region: size in voxels of the region in which a mask is drawn and augmented.
        seed: base seed.
        length: nominal length (examples are drawn, not enumerated).
        weights: relative sampling weight of each volume (default: equal).
        mask_bank: if > 0, masks come from a bank of this many (volume, region, mask)
            draws, each made once and reused under fresh augmentation, because drawing
            a deformed-ellipsoid mask costs seconds on a CPU; 0 draws a new mask each time.
        cache_dir: where bank masks are kept, so a resumed run does not redraw them.
    """

    def __init__(
        self,
        volumes: Sequence[TrainVolume],
        *,
        arch: str,
        config: dict[str, Any],
        preprocessing: dict[str, Any],
        masks: MaskGenerator,
        augment: Augmenter | None = None,
        region: tuple[int, int, int] = (96, 96, 32),
        seed: int = 0,
        length: int = 2**40,
        weights: Sequence[float] | None = None,
        mask_bank: int = 0,
        cache_dir: Path | None = None,
    ) -> None:
        if not volumes:
            raise ValueError("InpaintingDataset needs at least one volume.")
        self.volumes = list(volumes)
        self.arch, self.config, self.preprocessing = arch, dict(config), dict(preprocessing)
        self.masks, self.augment = masks, augment
        patch = tuple(int(s) for s in preprocessing["patch_size"])
        self.region = tuple(max(int(r), p) for r, p in zip(region, patch, strict=True))
        self.seed, self.length = int(seed), int(length)
        w = np.ones(len(self.volumes)) if weights is None else np.asarray(weights, float)
        self.weights = w / w.sum()
        self._centres: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._real = None
        self.mask_bank = int(mask_bank)
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self._bank: dict[int, tuple[int, Crop, np.ndarray]] = {}
        if masks.kinds.get("real", 0) > 0:
            self._real = MaskGenerator(
                {"real": 1.0}, real_masks=masks.real_masks, real_transform=masks.real_transform
            )

    def _kind(self, rng: np.random.Generator) -> str:
        names = list(self.masks.kinds)
        p = np.array([self.masks.kinds[n] for n in names], dtype=np.float64)
        return names[int(rng.choice(len(names), p=p / p.sum()))]

    def __len__(self) -> int:
        return self.length

    def _centre(self, k: int, rng: np.random.Generator) -> np.ndarray:
        if k not in self._centres:  # cumulative weights over brain voxels, WM favoured
            vol = self.volumes[k]
            idx = np.flatnonzero(vol.brain)
            cum = np.cumsum(vol.wm.ravel()[idx].astype(np.float64) + 0.2)
            self._centres[k] = (idx, cum / cum[-1])
        idx, cum = self._centres[k]
        flat = idx[min(int(np.searchsorted(cum, rng.random())), len(idx) - 1)]
        return np.array(np.unravel_index(flat, self.volumes[k].brain.shape))

    def _draw(self, key: int) -> tuple[int, Crop, np.ndarray]:
        """Draw (volume, region crop, mask) number ``key``: a pure function of (seed, key)."""
        rng = np.random.default_rng([self.seed, int(key), 7])
        k = int(rng.choice(len(self.volumes), p=self.weights))
        vol = self.volumes[k]
        size = list(self.region)
        if "mirror" in self.preprocessing.get("extras", []) and "mirror" not in vol.extras:
            # No estimated mirror (with_mirror): flipping the region's array is
            # contralateral only when the region spans the whole, centred width.
            size[0] = vol.image.shape[0]
        kind = self._kind(rng)
        if kind == "real":  # warped once per (volume, mask) by the generator, then cropped
            full = self._real(
                vol.wm,
                vol.zooms,
                rng,
                key=vol.name,
                image=vol.image,
                affine=vol.affine,
                brain_mask=vol.brain,
                to_mni=vol.to_mni,
            )
            if vol.lesion is not None:
                full = full & ~vol.lesion
            hits = np.argwhere(full)
            centre = hits[rng.integers(len(hits))] if len(hits) else self._centre(k, rng)
            lo = centre - np.array(size) // 2
            crop = crop_around(lo, lo + np.array(size), vol.image.shape, tuple(size), (1, 1, 1))
            return k, crop, crop.extract(full).astype(bool)
        sites = self.masks.sites(vol.wm, vol.zooms, key=vol.name, brain_mask=vol.brain)
        for _attempt in range(20):
            centre = self._centre(k, rng)
            lo = centre - np.array(size) // 2
            crop = crop_around(lo, lo + np.array(size), vol.image.shape, tuple(size), (1, 1, 1))
            mask = sample_lesion_mask(
                _crop_sites(sites, crop.slices),
                vol.zooms,
                rng,
                kind=kind,
                volume_ml=self.masks.volume_ml.get(kind),
            )
            own = vol.lesion is not None and (mask & vol.lesion[crop.slices]).any()
            if mask.sum() >= 2 and not own:
                break
        if vol.lesion is not None:  # 20 draws all touched a real lesion: cut it out
            mask = mask & ~vol.lesion[crop.slices]
        return k, crop, np.pad(mask, crop.pad).astype(bool)  # sites were cut without the pad

    def _bank_entry(self, j: int) -> tuple[int, Crop, np.ndarray]:
        """Mask ``j`` of the bank, drawn once and kept in memory and on disk."""
        if j in self._bank:
            return self._bank[j]
        path = None if self.cache_dir is None else self.cache_dir / f"mask-{self.seed}-{j:06d}.npz"
        if path is not None and path.exists():
            with np.load(path) as npz:
                crop = Crop(
                    tuple(int(v) for v in npz["start"]),
                    tuple(int(v) for v in npz["stop"]),
                    tuple(tuple(int(v) for v in p) for p in npz["pad"]),
                )
                entry = (
                    int(npz["volume"]),
                    crop,
                    np.unpackbits(npz["mask"])[: np.prod(crop.shape)]
                    .reshape(crop.shape)
                    .astype(bool),
                )
        else:
            entry = self._draw(j)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp.npz")
                k, crop, mask = entry
                np.savez(
                    tmp,
                    volume=k,
                    start=crop.start,
                    stop=crop.stop,
                    pad=crop.pad,
                    mask=np.packbits(mask.ravel()),
                )
                tmp.replace(path)
        self._bank[j] = entry
        return entry

    def region_example(
        self, index: int, *, patch_only: bool = False
    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """The augmented region (image, mask, extras) behind example ``index``.

        ``patch_only``: compute the prefill channel only around the patch that
        :meth:`__getitem__` cuts (the image elsewhere), which is all the network sees.
        """
        return self._region(index, patch_only=patch_only)[:3]

    def _region(
        self, index: int, *, patch_only: bool = False
    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], tuple[int, int]]:
        """:meth:`region_example` and where the region lies in its volume along z
        (first slice, the volume's slices): seq-pos models embed each slice's position."""
        rng = np.random.default_rng([self.seed, int(index)])
        if self.mask_bank:
            k, crop, mask = self._bank_entry(int(rng.integers(self.mask_bank)))
        else:
            k, crop, mask = self._draw(int(rng.integers(2**62)))
        vol = self.volumes[k]
        image = crop.extract(vol.image)
        extras = {name: crop.extract(v) for name, v in vol.extras.items()}
        hides = bool(self.preprocessing.get("mirror_hides_mask")) and "mirror" in extras
        reflected = _reflected_in_region(vol, crop, mask) if hides else None
        if self.augment is not None:
            seed = int(rng.integers(2**62))
            names = list(extras)
            a_img, a_mask, a_extras, a_more = self.augment(
                image, mask, list(extras.values()), seed=seed,
                like_image=[i for i, n in enumerate(names) if n == "mirror"],
                masks=[] if reflected is None else [reflected],
            )  # fmt: skip
            if a_mask.sum() >= 2:  # a deformation may push a tiny lesion out of the region
                image, mask = a_img, a_mask
                extras = dict(zip(names, a_extras, strict=True))
                reflected = a_more[0] if a_more else None
        for name in ("flair", "t2w"):  # as a patient's would: the lesion is bright there
            if name in extras:
                extras[name] = bright_lesion(
                    extras[name], mask, crop.extract(vol.wm), vol.zooms,
                    np.random.default_rng([self.seed, int(index), 3]),
                )  # fmt: skip
        if "prefill" in self.preprocessing.get("extras", []):
            method = self.preprocessing.get("prefill_method", PREFILL_METHOD)
            box = self._prefill_box(index, mask) if patch_only else (slice(None),) * 3
            prefill = image.copy()
            prefill[box] = classical_prefill(image[box], mask[box], vol.zooms, method)
            extras["prefill"] = prefill
        if reflected is not None:  # the contralateral truth, hidden as the fill hides a lesion
            extras["mirror"] = hide_reflected_mask(extras["mirror"], extras["prefill"], reflected)
        z_frame = (crop.start[2] - crop.pad[2][0], vol.image.shape[2])
        return image, mask, extras, z_frame

    def _prefill_box(self, index: int, mask: np.ndarray) -> tuple[slice, ...]:
        # The nonlocal prefill is most of an example's cost (70 % in a profile); the
        # network sees only the patch, so the prefill covers the patch and a margin wider
        # than the filler's reach per layer (patch + search radius = 4 voxels).
        patch = training_patch(
            mask, arch=self.arch, config=self.config, preprocessing=self.preprocessing,
            rng=np.random.default_rng([self.seed, int(index), 2]),
        )  # fmt: skip
        return tuple(
            slice(max(a - m, 0), min(b + m, n))
            for a, b, m, n in zip(patch.start, patch.stop, _PREFILL_MARGIN, mask.shape, strict=True)
        )

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image, mask, extras, z_frame = self._region(index, patch_only=True)
        rng = np.random.default_rng([self.seed, int(index), 2])
        ex = make_training_example(
            image,
            mask,
            arch=self.arch,
            config=self.config,
            preprocessing=self.preprocessing,
            rng=rng,
            extra_images=extras,
            z_frame=z_frame,
        )
        return {"x0": ex.x0, "condition": ex.condition, "mask": ex.mask}
