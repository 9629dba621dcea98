"""Resampling between grids: a box to another size, and MNI-space maps onto a scan.

scipy's ``map_coordinates``/``affine_transform`` do the interpolation; what is written
here is only the coordinate bookkeeping (which voxel centre lands where), because neither
nibabel nor antspyx resamples a bare array box to an arbitrary shape with the box's edges
kept aligned, which is what the crop-to-model-grid round trip needs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

__all__ = ["box_shape", "resample_box", "warp_from_world"]


def box_shape(shape: Sequence[int], zooms: Sequence[float], voxel_mm: Sequence[float]) -> tuple:
    """Voxel counts of the same box on a grid of ``voxel_mm`` (at least 1 per axis)."""
    return tuple(
        max(1, int(round(n * float(z) / float(v))))
        for n, z, v in zip(shape, zooms, voxel_mm, strict=True)
    )


def resample_box(array: np.ndarray, out_shape: Sequence[int], order: int = 1) -> np.ndarray:
    """Resample ``array`` to ``out_shape`` with the box's outer edges kept in place.

    Voxel ``i`` of the output samples input coordinate ``(i + 0.5) * n_in / n_out - 0.5``
    (voxel centres of two grids covering one box), so resampling there and back returns
    to the same positions. Edges repeat the nearest voxel.
    """
    array = np.asarray(array, dtype=np.float32)
    if tuple(out_shape) == array.shape:
        return array.copy()
    axes = [
        (np.arange(m, dtype=np.float64) + 0.5) * (n / m) - 0.5
        for n, m in zip(array.shape, out_shape, strict=True)
    ]
    if order <= 1:  # separable: one 1D pass per axis is far cheaper than a 3D gather
        out = array
        for axis, coords in enumerate(axes):
            out = _resample_axis(out, coords, axis, order)
        return out.astype(np.float32)
    grid = np.meshgrid(*axes, indexing="ij")
    return ndimage.map_coordinates(array, grid, order=order, mode="nearest").astype(np.float32)


def _resample_axis(array: np.ndarray, coords: np.ndarray, axis: int, order: int) -> np.ndarray:
    n = array.shape[axis]
    coords = np.clip(coords, 0, n - 1)
    if order == 0:
        return np.take(array, np.rint(coords).astype(int), axis=axis)
    lo = np.floor(coords).astype(int)
    hi = np.minimum(lo + 1, n - 1)
    w = (coords - lo).astype(np.float32)
    shape = [1] * array.ndim
    shape[axis] = -1
    w = w.reshape(shape)
    return np.take(array, lo, axis=axis) * (1 - w) + np.take(array, hi, axis=axis) * w


def warp_from_world(
    data: np.ndarray,
    data_affine: np.ndarray,
    target_shape: Sequence[int],
    target_affine: np.ndarray,
    target_to_data_world: np.ndarray | None = None,
    order: int = 1,
    cval: float = 0.0,
) -> np.ndarray:
    """Resample ``data`` onto a target grid, through a world-to-world affine.

    Args:
        data: the image to move (e.g. an MNI-space lesion mask).
        data_affine: its voxel-to-world affine.
        target_shape, target_affine: the grid to resample onto.
        target_to_data_world: 4x4 map from the target's world to ``data``'s world
            (e.g. a scan's RAS world to MNI152); identity when None.
        order: spline order (0 nearest, 1 linear).
        cval: value outside ``data``.
    """
    world = np.eye(4) if target_to_data_world is None else np.asarray(target_to_data_world)
    vox = np.linalg.inv(np.asarray(data_affine, dtype=np.float64)) @ world @ target_affine
    return ndimage.affine_transform(
        np.asarray(data, dtype=np.float32),
        vox[:3, :3],
        offset=vox[:3, 3],
        output_shape=tuple(int(s) for s in target_shape),
        order=order,
        mode="constant",
        cval=cval,
    ).astype(np.float32)
