"""Synthetic lesion masks drawn on the fly, for training, simulation and the demo.

Diffusion inpainting models learn to fill whatever holes they see in training, so the
holes should look like the lesions users will bring: MS-like ellipsoids in white matter
(periventricular, juxtacortical, deep), larger tumour- and cavity-like blobs, random
shapes, and real lesion masks moved into healthy brains by registration (Durrer et al.'s
MS experiment). Everything is driven by a ``numpy.random.Generator`` so the same seed
gives the same mask.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from scipy import ndimage
from skimage.morphology import ball

__all__ = [
    "KINDS",
    "LesionSites",
    "MaskGenerator",
    "RealMask",
    "filter_real_masks",
    "find_real_masks",
    "place_mni_mask",
    "lesion_sites",
    "sample_lesion_mask",
    "warp_real_mask",
]

Kind = Literal["ms", "tumour", "cavity", "random", "mixed"]
KINDS: tuple[str, ...] = ("ms", "tumour", "cavity", "random", "mixed")

#: Default volume ranges in ml per kind (MS range from the training issue: 0.03-15 ml).
VOLUME_ML: dict[str, tuple[float, float]] = {
    "ms": (0.03, 15.0),
    "tumour": (5.0, 60.0),
    "cavity": (3.0, 40.0),
    "random": (0.1, 20.0),
}
#: Relative frequency of each kind when ``kind="mixed"``.
MIXED_WEIGHTS: dict[str, float] = {"ms": 0.55, "tumour": 0.15, "cavity": 0.15, "random": 0.15}


@dataclass(frozen=True)
class LesionSites:
    """Where lesions may go in one brain; computed once per WM map and reused.

    Args:
        wm_prob: white-matter probability in [0, 1].
        zooms: voxel size in mm.
        wm: voxels with ``wm_prob >= 0.5``.
        brain: brain mask (given, or estimated from the WM map).
        brain_depth: distance in mm from each brain voxel to the outside of the brain.
        periventricular: WM voxels within a few mm of the ventricles.
        juxtacortical: WM voxels at the outer WM border, away from the ventricles.
        deep: WM voxels deeper than a few mm, away from the ventricles.
    """

    wm_prob: np.ndarray
    zooms: tuple[float, float, float]
    wm: np.ndarray
    brain: np.ndarray
    brain_depth: np.ndarray
    periventricular: np.ndarray
    juxtacortical: np.ndarray
    deep: np.ndarray


def _ball_mm(radius_mm: float, zooms: Sequence[float]) -> np.ndarray:
    # skimage's ball is isotropic in voxels; use the smallest zoom so it is at least radius_mm.
    return ball(max(1, int(round(radius_mm / min(zooms)))))


def lesion_sites(
    wm_prob: np.ndarray,
    zooms: Sequence[float],
    *,
    brain_mask: np.ndarray | None = None,
    csf_prob: np.ndarray | None = None,
) -> LesionSites:
    """Split the white matter into periventricular, juxtacortical and deep sites.

    Without a CSF map the ventricles are approximated as non-WM brain voxels more than
    15 mm deep inside the brain (ventricles plus deep grey matter), which is where
    periventricular lesions sit next to.

    Args:
        wm_prob: white-matter probability map (any float range, clipped to [0, 1]).
        zooms: voxel size in mm.
        brain_mask: optional brain mask; estimated from the WM map by closing when absent.
        csf_prob: optional CSF probability map to locate the ventricles.
    """
    wm_prob = np.clip(np.asarray(wm_prob, dtype=np.float32), 0.0, 1.0)
    zooms = tuple(float(z) for z in zooms)
    wm = wm_prob >= 0.5
    if brain_mask is None:
        brain = ndimage.binary_closing(wm, structure=_ball_mm(6.0, zooms), border_value=0)
        brain = ndimage.binary_dilation(brain, structure=_ball_mm(4.0, zooms))
        brain = ndimage.binary_fill_holes(brain | (wm_prob > 0.05))
    else:
        brain = np.asarray(brain_mask).astype(bool)
    brain_depth = ndimage.distance_transform_edt(brain, sampling=zooms).astype(np.float32)
    if csf_prob is not None:
        ventricles = (np.asarray(csf_prob) >= 0.5) & (brain_depth > 15.0)
    else:
        ventricles = brain & ~wm & (wm_prob < 0.2) & (brain_depth > 15.0)
    if ventricles.any():
        dist_vent = ndimage.distance_transform_edt(~ventricles, sampling=zooms)
    else:
        dist_vent = np.full(wm.shape, np.inf, dtype=np.float32)
    wm_depth = ndimage.distance_transform_edt(wm, sampling=zooms)
    periventricular = wm & (dist_vent <= 5.0)
    away = wm & (dist_vent > 8.0)
    juxtacortical = away & (wm_depth <= 3.0)
    deep = away & (wm_depth > 3.0)
    return LesionSites(
        wm_prob=wm_prob,
        zooms=zooms,  # type: ignore[arg-type]
        wm=wm,
        brain=brain,
        brain_depth=brain_depth,
        periventricular=periventricular,
        juxtacortical=juxtacortical,
        deep=deep,
    )


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def _deformed_ellipsoid(
    volume_mm3: float,
    zooms: tuple[float, float, float],
    rng: np.random.Generator,
    *,
    elongation: float = 2.0,
    elastic: float = 1.0,
) -> np.ndarray:
    """A randomly rotated, elastically deformed ellipsoid of about ``volume_mm3``.

    Written with scipy rather than MONAI's ``Rand3DElastic``: that transform costs ~0.2 s
    per small box (torch set-up per call), too slow for a dozen lesions per training
    sample, while a smoothed displacement field on the lesion's box takes milliseconds.
    """
    from scipy.spatial.transform import Rotation

    # Semi-axes a >= b >= c with random aspect ratios; 4/3 pi abc = volume.
    ratios = np.sort(rng.uniform(1.0, elongation, size=2))[::-1]
    c = (3.0 * volume_mm3 / (4.0 * math.pi * ratios[0] * ratios[1])) ** (1.0 / 3.0)
    semi_axes = np.array([c * ratios[0], c * ratios[1], c])
    rotation = Rotation.random(random_state=rng).as_matrix()
    # The box holds the ellipsoid plus the largest displacement (|d| <= sqrt(3) * amplitude).
    amplitude = elastic * 0.35 * c
    half = [int(math.ceil((semi_axes[0] + 1.8 * amplitude) / z)) + 1 for z in zooms]
    grid = np.stack(
        np.meshgrid(
            *[np.arange(-h, h + 1) * z for h, z in zip(half, zooms, strict=True)], indexing="ij"
        )
    ).astype(np.float32)  # (3, X, Y, Z) in mm
    # Elastic part: smooth random displacement (mm), a fraction of the short semi-axis.
    sigma = [max(1.0, 0.6 * c / z) for z in zooms]
    displacement = np.stack(
        [ndimage.gaussian_filter(rng.standard_normal(grid.shape[1:]), sigma) for _ in range(3)]
    ).astype(np.float32)
    scale = np.abs(displacement).max() + 1e-8
    grid = grid + displacement / scale * amplitude
    # Points in the ellipsoid's own frame: rotate, then the implicit equation sum (x/a)^2 <= 1.
    local = np.tensordot(rotation.T, grid, axes=1)
    inside = (((local / semi_axes[:, None, None, None]) ** 2).sum(0)) <= 1.0
    if not inside.any():  # a sub-voxel shape can miss every voxel centre; keep the centre
        inside[tuple(half)] = True
    return inside


def _noise_blob(
    volume_mm3: float,
    zooms: tuple[float, float, float],
    rng: np.random.Generator,
    *,
    roughness: float = 0.25,
) -> np.ndarray:
    """An irregular blob: smoothed noise thresholded to the wanted volume, in a sphere."""
    radius_mm = (3.0 * volume_mm3 / (4.0 * math.pi)) ** (1.0 / 3.0) * 1.5
    half = [max(2, int(math.ceil(radius_mm / z))) for z in zooms]
    grids = np.meshgrid(
        *[np.arange(-h, h + 1) * z for h, z in zip(half, zooms, strict=True)], indexing="ij"
    )
    dist = np.sqrt(sum(g**2 for g in grids)) / radius_mm
    sigma = [max(0.8, roughness * radius_mm / z) for z in zooms]
    noise = ndimage.gaussian_filter(rng.standard_normal(dist.shape), sigma=sigma)
    noise /= noise.std() + 1e-8
    # Centre-weighted field so the blob stays connected around the middle.
    field = noise - 3.0 * dist**2
    n_voxels = max(1, int(round(volume_mm3 / float(np.prod(zooms)))))
    n_voxels = min(n_voxels, field.size)
    threshold = np.partition(field.ravel(), field.size - n_voxels)[field.size - n_voxels]
    blob = field >= threshold
    labels, n = ndimage.label(blob)
    if n > 1:  # keep the largest piece: one lesion, not scattered specks
        sizes = ndimage.sum_labels(blob, labels, index=np.arange(1, n + 1))
        blob = labels == (int(np.argmax(sizes)) + 1)
    return blob


def _paste(target: np.ndarray, shape: np.ndarray, centre: Sequence[int]) -> None:
    """OR ``shape`` into ``target`` centred at ``centre``, clipping at the borders."""
    src, dst = [], []
    for size, c, tsize in zip(shape.shape, centre, target.shape, strict=True):
        start = int(c) - size // 2
        lo, hi = max(0, start), min(tsize, start + size)
        if hi <= lo:
            return
        dst.append(slice(lo, hi))
        src.append(slice(lo - start, hi - start))
    target[tuple(dst)] |= shape[tuple(src)]


def _pick(
    region: np.ndarray, weights: np.ndarray, rng: np.random.Generator
) -> tuple[int, ...] | None:
    idx = np.flatnonzero(region)
    if idx.size == 0:
        return None
    w = weights.ravel()[idx].astype(np.float64) + 1e-6
    flat = idx[rng.choice(idx.size, p=w / w.sum())]
    return tuple(int(i) for i in np.unravel_index(flat, region.shape))


def _ms_lesions(
    sites: LesionSites,
    rng: np.random.Generator,
    n_lesions: int,
    volume_ml: tuple[float, float],
    location_weights: dict[str, float],
) -> np.ndarray:
    out = np.zeros(sites.wm.shape, dtype=bool)
    regions = {
        "periventricular": (sites.periventricular, 0.5),
        "juxtacortical": (sites.juxtacortical, 0.3),
        "deep": (sites.deep, 0.5),
    }
    names = [n for n in regions if regions[n][0].any() and location_weights.get(n, 0) > 0]
    if not names:
        names = ["deep"]
        regions["deep"] = (sites.wm if sites.wm.any() else sites.brain, 0.5)
    p = np.array([location_weights.get(n, 1.0) for n in names], dtype=np.float64)
    for _ in range(n_lesions):
        for _attempt in range(5):
            where = names[int(rng.choice(len(names), p=p / p.sum()))]
            region, clip = regions[where]
            centre = _pick(region, sites.wm_prob, rng)
            if centre is None:
                break
            volume = _log_uniform(rng, *volume_ml) * 1000.0
            shape = _deformed_ellipsoid(volume, sites.zooms, rng, elongation=2.5)
            lesion = np.zeros_like(out)
            _paste(lesion, shape, centre)
            lesion &= sites.wm_prob >= clip  # MS lesions stay in (near) white matter
            if lesion.any():
                out |= lesion
                break
    return out


def _blob_lesion(
    sites: LesionSites,
    rng: np.random.Generator,
    kind: str,
    volume_ml: tuple[float, float],
) -> np.ndarray:
    volume = _log_uniform(rng, *volume_ml) * 1000.0
    radius = (3.0 * volume / (4.0 * math.pi)) ** (1.0 / 3.0)
    if kind == "tumour":
        # Mostly white-matter centred, at least half a radius from the brain surface.
        region = sites.brain & (sites.brain_depth >= 0.5 * radius)
        weights = sites.wm_prob + 0.3
    elif kind == "cavity":
        # Resection-like cavities open towards the cortex.
        region = sites.brain & (sites.brain_depth >= 2.0) & (sites.brain_depth <= max(6.0, radius))
        weights = np.ones_like(sites.wm_prob)
    else:  # random
        region = sites.brain & (sites.brain_depth >= 2.0)
        weights = np.ones_like(sites.wm_prob)
    if not region.any():
        region = sites.brain
    out = np.zeros(sites.wm.shape, dtype=bool)
    centre = _pick(region, weights, rng)
    if centre is None:
        return out
    if kind == "tumour":
        shape = _deformed_ellipsoid(volume, sites.zooms, rng, elongation=1.6, elastic=2.0)
    elif kind == "cavity":
        shape = _deformed_ellipsoid(volume, sites.zooms, rng, elongation=1.3, elastic=0.5)
    else:
        shape = _noise_blob(volume, sites.zooms, rng, roughness=rng.uniform(0.1, 0.4))
    _paste(out, shape, centre)
    return out & sites.brain


def sample_lesion_mask(
    wm_prob: np.ndarray | LesionSites,
    zooms: Sequence[float],
    rng: np.random.Generator,
    kind: Kind = "ms",
    n_lesions: int | None = None,
    *,
    volume_ml: tuple[float, float] | None = None,
    location_weights: dict[str, float] | None = None,
    brain_mask: np.ndarray | None = None,
    csf_prob: np.ndarray | None = None,
) -> np.ndarray:
    """Draw one synthetic lesion mask for a brain described by its WM probability map.

    Args:
        wm_prob: white-matter probability map, or precomputed :class:`LesionSites`.
        zooms: voxel size in mm.
        rng: the random generator; the same state gives the same mask.
        kind: "ms" (several WM ellipsoids), "tumour", "cavity", "random" (irregular
            blobs), or "mixed" (one of those per call, see ``MIXED_WEIGHTS``).
        n_lesions: number of lesions; by default 3-12 for MS, 1 for tumour and cavity,
            1-3 for random.
        volume_ml: (min, max) volume of each lesion in ml, drawn log-uniformly.
        location_weights: MS only; relative frequency of "periventricular",
            "juxtacortical" and "deep" lesions (default 0.45/0.2/0.35).
        brain_mask: optional brain mask (estimated from the WM map when absent).
        csf_prob: optional CSF probability map used to find the ventricles.

    Returns:
        A boolean array shaped like ``wm_prob``; it may be empty only if the map has
        no white matter or brain at all.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    if isinstance(wm_prob, LesionSites):
        sites = wm_prob
    else:
        sites = lesion_sites(wm_prob, zooms, brain_mask=brain_mask, csf_prob=csf_prob)
    if kind == "mixed":
        names = list(MIXED_WEIGHTS)
        p = np.array([MIXED_WEIGHTS[n] for n in names])
        kind = names[int(rng.choice(len(names), p=p / p.sum()))]  # type: ignore[assignment]
    volume_ml = volume_ml or VOLUME_ML[kind]
    if kind == "ms":
        n = int(rng.integers(3, 13)) if n_lesions is None else int(n_lesions)
        weights = location_weights or {"periventricular": 0.45, "juxtacortical": 0.2, "deep": 0.35}
        return _ms_lesions(sites, rng, n, volume_ml, weights)
    if n_lesions is None:
        n_lesions = int(rng.integers(1, 4)) if kind == "random" else 1
    out = np.zeros(sites.wm.shape, dtype=bool)
    for _ in range(int(n_lesions)):
        out |= _blob_lesion(sites, rng, kind, volume_ml)
    return out


# --------------------------------------------------------------------------- real masks


@dataclass(frozen=True)
class RealMask:
    """A real lesion mask and the image it was drawn on.

    Args:
        mask: path of the binary mask (NIfTI).
        reference: the T1w it was drawn on; ``None`` means the mask is in MNI152 2009
            space, and the template shipped with nilearn is the reference.
    """

    mask: Path
    reference: Path | None = None


_MASK_TOKENS = ("_label-lesion_roi", "_label-lesion_mask", "_desc-lesion_mask", "_mask", "_roi")


def find_real_masks(folder: str | Path) -> list[RealMask]:
    """List the lesion masks in ``folder`` (recursively), each with its reference image.

    A mask ``<stem>_label-lesion_roi.nii.gz`` (or ``_desc-lesion_mask``, ``_mask``,
    ``_roi``) is paired with ``<stem>_T1w.nii[.gz]`` in the same folder when that
    exists; otherwise the mask is taken to be in MNI152 space.
    """
    folder = Path(folder)
    found = []
    for path in sorted(folder.rglob("*.nii*")):
        name = path.name.split(".nii")[0]
        token = next((t for t in _MASK_TOKENS if name.endswith(t)), None)
        if token is None:
            continue
        stem = name[: -len(token)]
        ref = next(
            (
                path.with_name(f"{stem}_T1w{ext}")
                for ext in (".nii.gz", ".nii")
                if path.with_name(f"{stem}_T1w{ext}").exists()
            ),
            None,
        )
        found.append(RealMask(mask=path, reference=ref))
    return found


def _load_reference(real: RealMask):
    import nibabel as nib

    if real.reference is not None:
        return nib.load(str(real.reference))
    from nilearn.datasets import load_mni152_template

    return load_mni152_template(resolution=1)


def warp_real_mask(
    real: RealMask,
    target_image: np.ndarray,
    target_affine: np.ndarray,
    *,
    seed: int = 0,
    transform: str = "SyN",
    target_brain_mask: np.ndarray | None = None,
) -> np.ndarray:
    """Move a real lesion mask into a healthy brain by registering the two scans.

    The lesion is excluded from the registration metric (the moving mask is the inverted
    lesion), as in cost-function masking; the mask is resampled linearly and thresholded
    at 0.5 so its edge stays smooth.

    Args:
        real: the mask and the image it was drawn on.
        target_image: the healthy image (3D array).
        target_affine: its voxel-to-world affine.
        seed: ANTs random seed for the metric sampling.
        transform: ANTs ``type_of_transform`` ("SyN" elastic, "Affine", "Rigid", ...).
        target_brain_mask: optional fixed-image mask for the metric.

    Returns:
        Boolean mask on the target grid.
    """
    import ants
    import nibabel as nib

    mask_img = nib.load(str(real.mask))
    ref_img = _load_reference(real)
    lesion = np.asarray(mask_img.dataobj) > 0.5
    if lesion.ndim != 3 or not lesion.any():
        raise ValueError(f"{real.mask} is not a non-empty 3D mask.")

    def _to_ants(data: np.ndarray, affine: np.ndarray):
        img = nib.Nifti1Image(np.asarray(data, dtype=np.float32), affine)
        img.header.set_xyzt_units("mm")
        return ants.from_nibabel_nifti(img)

    fixed = _to_ants(target_image, target_affine)
    moving = _to_ants(np.asarray(ref_img.dataobj, dtype=np.float32), ref_img.affine)
    moving_lesion = _to_ants(lesion.astype(np.float32), mask_img.affine)
    if moving_lesion.shape != moving.shape:  # mask on its own grid: bring it to the reference
        moving_lesion = ants.resample_image_to_target(moving_lesion, moving, interp_type="linear")
    moving_mask = moving_lesion.new_image_like((moving_lesion.numpy() < 0.5).astype(np.float32))
    fixed_mask = None
    if target_brain_mask is not None:
        fixed_mask = _to_ants(np.asarray(target_brain_mask, dtype=np.float32), target_affine)
    from bidsfill.segment._ants import ants_env

    # Seeded, single-threaded ANTs so the same seed places the mask in the same voxels;
    # dense metric sampling so small images cannot land in a wrong optimum by chance.
    with ants_env(int(seed), n_threads=1):
        reg = ants.registration(
            fixed=fixed,
            moving=moving,
            type_of_transform=transform,
            mask=fixed_mask,
            moving_mask=moving_mask,
            aff_random_sampling_rate=1.0,
        )
        # Inside the context: the transforms live in its temporary folder.
        warped = ants.apply_transforms(
            fixed=fixed,
            moving=moving_lesion,
            transformlist=reg["fwdtransforms"],
            interpolator="linear",
        )
    out = warped.numpy() >= 0.5
    if target_brain_mask is not None:
        out &= np.asarray(target_brain_mask).astype(bool)
    return out


def place_mni_mask(
    real: RealMask,
    target_shape: Sequence[int],
    target_affine: np.ndarray,
    to_mni: np.ndarray,
    target_brain_mask: np.ndarray | None = None,
) -> np.ndarray:
    """Move an MNI152-space lesion mask into a healthy brain with its MNI registration.

    The brain was registered to the MNI152 template once (its tissue priors came that
    way), and a mask drawn on an MNI152 grid follows the same map: linear resampling
    thresholded at 0.5, so its edge stays smooth. No cost-function masking is needed
    here (as :func:`warp_real_mask` does for masks drawn on a patient's own scan),
    because the template has no lesion. This costs a resampling, not a registration.
    """
    import nibabel as nib

    from bidsfill.io.resample import warp_from_world

    img = nib.load(str(real.mask))
    data = np.asarray(img.dataobj) > 0.5
    if data.ndim != 3 or not data.any():
        raise ValueError(f"{real.mask} is not a non-empty 3D mask.")
    out = warp_from_world(data, img.affine, target_shape, target_affine, to_mni) >= 0.5
    if target_brain_mask is not None:
        out &= np.asarray(target_brain_mask).astype(bool)
    return out


def filter_real_masks(
    masks: Sequence[RealMask], max_ml: float | None = None, index: str | Path | None = None
) -> list[RealMask]:
    """Keep the masks of at most ``max_ml`` (by the folder's ``index.tsv``, when it has one)."""
    if max_ml is None or index is None or not Path(index).exists():
        return list(masks)
    import csv

    root = Path(index).parent
    with open(index, newline="") as fh:
        volume = {
            (root / row["file"]).resolve(): float(row["volume_ml"])
            for row in csv.DictReader(fh, delimiter="\t")
        }
    return [m for m in masks if volume.get(Path(m.mask).resolve(), 0.0) <= max_ml]


# --------------------------------------------------------------------------- generator


#: Volume ranges (ml) of the larger mask kinds in the shipped model's training, its
#: validation and its scorecard (the generator's own defaults are for other uses).
TRAINING_VOLUME_ML: dict[str, tuple[float, float]] = {"tumour": (3.0, 60.0), "cavity": (2.0, 40.0)}


class MaskGenerator:
    """Draws lesion masks for a training Dataset; caches the per-brain site maps.

    Example::

        gen = MaskGenerator(kinds={"ms": 0.6, "tumour": 0.2, "random": 0.2})
        mask = gen(wm_prob, zooms, rng, key=subject_id)

    Args:
        kinds: mapping of kind -> relative frequency ("ms", "tumour", "cavity",
            "random", "real"); "real" needs ``real_masks``.
        real_masks: a folder of real masks (see :func:`find_real_masks`) or a list.
        real_transform: ANTs transform used to place real masks ("SyN", "Affine", ...).
        volume_ml: optional per-kind override of the volume ranges.
        cache_size: how many brains' site maps (and real-mask warps) to keep.
        real_max_ml: leave out real masks larger than this (by the folder's index.tsv).
    """

    def __init__(
        self,
        kinds: dict[str, float] | Sequence[str] = ("ms",),
        *,
        real_masks: str | Path | Sequence[RealMask] | None = None,
        real_transform: str = "SyN",
        volume_ml: dict[str, tuple[float, float]] | None = None,
        cache_size: int = 8,
        real_max_ml: float | None = None,
    ) -> None:
        if not isinstance(kinds, dict):
            kinds = {k: 1.0 for k in kinds}
        unknown = set(kinds) - {"ms", "tumour", "cavity", "random", "real"}
        if unknown:
            raise ValueError(f"Unknown mask kinds: {sorted(unknown)}")
        if not kinds or sum(kinds.values()) <= 0:
            raise ValueError("kinds must give at least one kind a positive weight")
        if isinstance(real_masks, (str, Path)):
            folder = Path(real_masks)
            real_masks = filter_real_masks(
                find_real_masks(folder), real_max_ml, folder / "index.tsv"
            )
        self.real_masks = list(real_masks or [])
        if kinds.get("real", 0) > 0 and not self.real_masks:
            raise ValueError("kind 'real' needs a non-empty real_masks folder")
        self.kinds = dict(kinds)
        self.real_transform = real_transform
        self.volume_ml = dict(volume_ml or {})
        self.cache_size = int(cache_size)
        self._sites: dict[object, LesionSites] = {}
        self._real: dict[tuple[object, int], np.ndarray] = {}

    def sites(
        self,
        wm_prob: np.ndarray,
        zooms: Sequence[float],
        key: object = None,
        brain_mask: np.ndarray | None = None,
    ) -> LesionSites:
        """Site maps for one brain, cached under ``key`` (no caching when key is None)."""
        if key is not None and key in self._sites:
            return self._sites[key]
        sites = lesion_sites(wm_prob, zooms, brain_mask=brain_mask)
        if key is not None:
            if len(self._sites) >= self.cache_size:
                self._sites.pop(next(iter(self._sites)))
            self._sites[key] = sites
        return sites

    def __call__(
        self,
        wm_prob: np.ndarray,
        zooms: Sequence[float],
        rng: np.random.Generator,
        *,
        key: object = None,
        image: np.ndarray | None = None,
        affine: np.ndarray | None = None,
        brain_mask: np.ndarray | None = None,
        to_mni: np.ndarray | None = None,
    ) -> np.ndarray:
        """Draw one mask. ``image`` and ``affine`` are needed only for real masks;
        ``to_mni`` (the brain's RAS world -> MNI152 map) moves MNI-space masks without a
        registration of their own (:func:`place_mni_mask`)."""
        names = list(self.kinds)
        p = np.array([self.kinds[n] for n in names], dtype=np.float64)
        kind = names[int(rng.choice(len(names), p=p / p.sum()))]
        if kind == "real":
            if image is None or affine is None:
                raise ValueError("real masks need the target image and its affine")
            index = int(rng.integers(len(self.real_masks)))
            cache_key = (key, index)
            real = self.real_masks[index]
            if real.reference is None and to_mni is not None:
                return place_mni_mask(real, image.shape, affine, to_mni, brain_mask)
            if key is None or cache_key not in self._real:
                warped = warp_real_mask(
                    self.real_masks[index],
                    image,
                    affine,
                    seed=index,
                    transform=self.real_transform,
                    target_brain_mask=brain_mask,
                )
                if key is None:
                    return warped
                if len(self._real) >= self.cache_size:
                    self._real.pop(next(iter(self._real)))
                self._real[cache_key] = warped
            return self._real[cache_key].copy()
        sites = self.sites(wm_prob, zooms, key=key, brain_mask=brain_mask)
        return sample_lesion_mask(sites, zooms, rng, kind=kind, volume_ml=self.volume_ml.get(kind))
