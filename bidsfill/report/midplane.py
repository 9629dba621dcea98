"""The estimated mid-sagittal plane drawn on the T1w (symmetry channel, Santorum et al.).

A mirror-conditioned fill reflects the scan about a plane estimated for that scan
(:mod:`bidsfill.segment.midline`); a wrong plane feeds the model the wrong tissue, so the
report shows it. The plane is in RAS world millimetres, so the line is computed from the
image's affine for every pixel row of a tile, not from the voxel grid: it lands where the
plane cuts the slice, to a fraction of a voxel.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from nibabel.orientations import inv_ornt_aff, io_orientation

from bidsfill.report.render import Volume, _factors, compose, label, render_tile, save_png
from bidsfill.segment.midline import MidPlane

__all__ = ["PLANE_RGB", "midplane_figure", "plane_caption", "plane_pixels", "ras_affine"]

PLANE_RGB = (0, 255, 255)  # cyan: neither the red lesion contour nor a tissue colour
VIEWS = {"axial": 2, "coronal": 1}  # the plane is near-sagittal: a line in these two


def ras_affine(path: str | Path) -> np.ndarray:
    """The voxel-to-RAS affine of ``path`` once reoriented as :func:`load_ras` does."""
    img = nib.load(str(path))
    ornt = io_orientation(img.affine)
    return np.asarray(img.affine @ inv_ornt_aff(ornt, img.shape[:3]), dtype=np.float64)


def plane_from_sidecar(entry: dict[str, Any]) -> MidPlane:
    """The ``MidSagittalPlane`` sidecar entry (normal, offset) as a :class:`MidPlane`."""
    normal = np.asarray(entry["Normal"], dtype=np.float64)
    return MidPlane(
        tuple(float(v) for v in normal / np.linalg.norm(normal)), float(entry["OffsetMM"])
    )


def plane_pixels(
    plane: MidPlane,
    affine: np.ndarray,
    shape: tuple[int, int, int],
    axis: int,
    index: int,
    factors: tuple[int, int],
    box: tuple[slice, slice, slice] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the tile pixels on the plane, one per pixel row.

    The tile is :func:`~bidsfill.report.render.render_tile`'s: the volume cropped by
    ``box``, slice ``index`` along ``axis``, turned by ``rot90`` (rows run along the
    higher remaining axis, reversed; columns along the lower one), each voxel drawn as
    ``factors`` (rows, columns) pixels. Pixel centres are mapped back to continuous voxel
    coordinates, and the plane ``n . (A v) = d`` is solved for the column coordinate.
    """
    a, b = (ax for ax in range(3) if ax != axis)
    sl = [s if s is not None else slice(None) for s in (box or (None, None, None))]
    start_a, stop_a, _ = sl[a].indices(shape[a])
    start_b, stop_b, _ = sl[b].indices(shape[b])
    n_b = stop_b - start_b
    rows_px, cols_px = n_b * factors[0], (stop_a - start_a) * factors[1]
    aff = np.asarray(affine, dtype=np.float64)
    normal = np.asarray(plane.normal, dtype=np.float64)
    g = aff[:3, :3].T @ normal  # s(v) = g . v + h is the signed distance in mm
    h = float(normal @ aff[:3, 3]) - plane.offset
    if abs(g[a]) < 1e-9:  # the plane runs along the rows: no single column per row
        return np.zeros(0, int), np.zeros(0, int)
    rows = np.arange(rows_px)
    v_b = start_b + n_b - 1 - ((rows + 0.5) / factors[0] - 0.5)
    v_a = -(g[b] * v_b + g[axis] * index + h) / g[a]
    cols = np.round((v_a - start_a + 0.5) * factors[1] - 0.5).astype(int)
    keep = (cols >= 0) & (cols < cols_px)
    return rows[keep], cols[keep]


def midplane_figure(
    t1w: Volume,
    affine: np.ndarray,
    sidecar_plane: dict[str, Any],
    centre: tuple[int, int, int],
    vrange: tuple[float, float],
    box: tuple[slice, slice, slice],
    out_file: Path,
    mask: np.ndarray | None = None,
    px_per_mm: float = 2.0,
) -> Path:
    """Axial and coronal slices through ``centre`` with the plane as a cyan line.

    ``t1w`` and ``affine`` are in RAS voxel order (:func:`load_ras`, :func:`ras_affine`).
    """
    plane = plane_from_sidecar(sidecar_plane)
    tiles = []
    for name, axis in VIEWS.items():
        index = int(centre[axis])
        tile = render_tile(t1w.data, t1w.zooms, axis, index, vrange=vrange, box=box,
                           mask=mask, px_per_mm=px_per_mm)  # fmt: skip
        factors = _factors(t1w.zooms, axis, px_per_mm)
        rows, cols = plane_pixels(plane, affine, t1w.data.shape, axis, index, factors, box)
        tile = tile.copy()
        tile[rows, cols] = PLANE_RGB
        tiles.append(label(tile, f"{name} {index}"))
    return save_png(compose([tiles]), out_file)


def plane_caption(entry: dict[str, Any]) -> str:
    """What the figure shows, with the plane's angle and offset (from the sidecar)."""
    return (
        f"Cyan: the estimated mid-sagittal plane, tilted {entry.get('TiltDegrees')}° from the "
        f"world's sagittal planes (x = const), offset {entry.get('OffsetMM')} mm from the "
        f"world origin along its normal {entry.get('Normal')} (RAS). The symmetry channel "
        "reflected the scan about this plane; red: lesion outline."
    )
