"""Synthetic lesion masks, for training, simulation (``bidsfill-simulate``) and the demo.

Diffusion inpainting models learn to fill whatever holes they see in training, so the
holes should look like the lesions users will bring: MS-like ellipsoids in white matter
(periventricular, juxtacortical, deep), larger tumour- and cavity-like blobs and random
shapes. Everything is driven by a ``numpy.random.Generator`` so the same seed gives the
same mask.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import ndimage
from skimage.morphology import ball

__all__ = ["KINDS", "MIXED_WEIGHTS", "VOLUME_ML", "LesionSites", "lesion_sites",
           "sample_lesion_mask"]  # fmt: skip

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
