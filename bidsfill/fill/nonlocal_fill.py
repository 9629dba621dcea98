"""Patch-based non-local lesion filling, from the lesion border inwards.

In the spirit of Guizard et al. 2015 ("Non-local means inpainting of MS lesions in
longitudinal image processing", Front Neurosci 9:456) and Prados et al. 2016 ("A
multi-time-point modality-agnostic patch-based method for lesion filling in multiple
sclerosis", NeuroImage 139:376): the hole is filled layer by layer ("onion peel"). Each
voxel of the current layer gets a weighted mean of the centre values of the most similar
patches in a search window around it, where similarity is the mean squared difference
over the voxels known in both patches. Filled layers become known for the next one, so
texture from the surroundings propagates into the lesion.

No library offers masked-patch inpainting in 3D (skimage's biharmonic inpainting is
smooth, OpenCV's is 2D), so the search is written here, vectorised with flat indices
over a padded copy of the volume, one whole layer at a time.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
from scipy import ndimage

from bidsfill.fill.base import FillError, FillResult, register_filler

__all__ = ["fill_nonlocal"]

_CONN26 = np.ones((3, 3, 3), dtype=bool)
# Elements of the (voxels, candidates, patch) gather per chunk: ~4 M keeps memory < 100 MB.
_CHUNK_ELEMENTS = 4_000_000


def _offsets(radius: int, strides: np.ndarray, *, skip_centre: bool) -> np.ndarray:
    """Flat-index offsets of a (2r+1)^3 cube in an array with the given element strides."""
    rng = range(-radius, radius + 1)
    cube = np.array(
        [d for d in itertools.product(rng, rng, rng) if not (skip_centre and d == (0, 0, 0))]
    )
    return (cube @ strides).astype(np.int64)


def _fill_layer(
    idx: np.ndarray,
    vals: np.ndarray,
    known: np.ndarray,
    patch: np.ndarray,
    search: np.ndarray,
    n_neighbours: int,
) -> np.ndarray:
    """Non-local estimate for the voxels at flat indices ``idx`` (one layer, one chunk)."""
    ref_idx = idx[:, None] + patch[None, :]  # (B, P)
    ref, ref_known = vals[ref_idx], known[ref_idx]
    cand = idx[:, None] + search[None, :]  # (B, S) candidate centres
    cand_patch = cand[:, :, None] + patch[None, None, :]  # (B, S, P)
    both = known[cand_patch] & ref_known[:, None, :]
    n_both = both.sum(axis=2)
    diff = np.where(both, vals[cand_patch] - ref[:, None, :], 0.0)
    d2 = (diff * diff).sum(axis=2) / np.maximum(n_both, 1)
    # A candidate counts when its centre is known and it shares at least half of the
    # reference patch's known voxels, so a distance is never taken over one or two voxels.
    need = np.maximum(1, (ref_known.sum(axis=1) + 1) // 2)
    d2 = np.where(known[cand] & (n_both >= need[:, None]), d2, np.inf)

    k = min(n_neighbours, d2.shape[1])
    best = np.argpartition(d2, k - 1, axis=1)[:, :k]
    d2k = np.take_along_axis(d2, best, axis=1)
    vk = np.take_along_axis(vals[cand], best, axis=1)
    finite = np.isfinite(d2k)
    # Bandwidth from the neighbours' own distances (per voxel), so no global noise
    # estimate is needed: h^2 = mean of the k best squared distances.
    h2 = np.where(finite, d2k, 0.0).sum(axis=1) / np.maximum(finite.sum(axis=1), 1)
    w = np.where(finite, np.exp(-d2k / np.maximum(h2[:, None], 1e-12)), 0.0)
    wsum = w.sum(axis=1)
    estimate = (w * vk).sum(axis=1) / np.maximum(wsum, 1e-30)
    # No usable candidate: the mean of the known voxels of the patch itself.
    fallback = (ref * ref_known).sum(axis=1) / np.maximum(ref_known.sum(axis=1), 1)
    return np.where(wsum > 0, estimate, fallback).astype(np.float32)


@register_filler("nonlocal")
def fill_nonlocal(
    image: np.ndarray,
    mask: np.ndarray,
    *,
    zooms: tuple[float, float, float],
    seed: int,
    patch_radius: int = 1,
    search_radius: int = 3,
    n_neighbours: int = 8,
    **_: Any,
) -> FillResult:
    """Fill the mask layer by layer with non-local means of similar known patches.

    Args:
        image: T1w intensities (float32).
        mask: lesion mask (bool), same shape.
        zooms: voxel sizes in mm (unused: patches are in voxels).
        seed: recorded only; the method is deterministic.
        patch_radius: patches are (2r+1)^3 voxels.
        search_radius: candidates come from a (2r+1)^3 window around each voxel.
        n_neighbours: the most similar candidates averaged per voxel.
        **_: other methods' parameters, ignored so one call site can serve every method.

    Returns:
        The filled image and the parameters used.
    """
    if patch_radius < 1 or search_radius < 1 or n_neighbours < 1:
        raise FillError("patch_radius, search_radius and n_neighbours must all be at least 1.")
    mask = mask.astype(bool)
    if mask.all():
        raise FillError("The lesion mask covers the whole image; there is no tissue to fill from.")
    pad = patch_radius + search_radius
    # Pad once so every gather stays in bounds; padded voxels are never known.
    # C order: the flat views below must alias these arrays (np.pad keeps Fortran order).
    vals = np.ascontiguousarray(np.pad(image.astype(np.float32), pad))
    known = np.ascontiguousarray(np.pad(~mask, pad))
    hole = np.ascontiguousarray(np.pad(mask, pad))
    strides = np.array([vals.shape[1] * vals.shape[2], vals.shape[2], 1], dtype=np.int64)
    patch = _offsets(patch_radius, strides, skip_centre=False)
    search = _offsets(search_radius, strides, skip_centre=True)
    chunk = max(1, _CHUNK_ELEMENTS // (patch.size * search.size))
    vflat, kflat = vals.reshape(-1), known.reshape(-1)

    n_layers = 0
    while True:
        # Work in the bounding box of what is left of the hole, one voxel wider.
        box = ndimage.find_objects(hole.astype(np.uint8))
        if not box:
            break
        box = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box[0])
        layer = hole[box] & ndimage.binary_dilation(known[box], structure=_CONN26)
        if not layer.any():  # only possible if a hole has no known voxel at all
            raise FillError("A lesion has no tissue around it to fill from; check the mask.")
        coords = np.nonzero(layer)
        idx = np.ravel_multi_index(
            tuple(c + s.start for c, s in zip(coords, box, strict=True)), vals.shape
        )
        # Estimate the whole layer before writing any of it, so the result does not
        # depend on the order of voxels within a layer.
        est = np.concatenate(
            [
                _fill_layer(idx[i : i + chunk], vflat, kflat, patch, search, n_neighbours)
                for i in range(0, idx.size, chunk)
            ]
        )
        vflat[idx] = est
        kflat[idx] = True
        hole.reshape(-1)[idx] = False
        n_layers += 1

    inner = tuple(slice(pad, -pad) for _ in range(3))
    return FillResult(
        filled=vals[inner].copy(),
        params={
            "algorithm": "non-local patch inpainting (onion peel)",
            "patch_radius": int(patch_radius),
            "search_radius": int(search_radius),
            "n_neighbours": int(n_neighbours),
            "n_layers": n_layers,
            "seed": int(seed),
        },
    )
