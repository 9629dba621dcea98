"""Synthetic artefact masks of histology sections: tears, holes and missing borders.

Shapes as in Kropp et al., Fig. 1: a tear is a thin curved band across the section, a
hole a blob (or a few), a missing border a straight or ragged edge. Each shape is a
distance field (to a curve, to seed points, to an edge) roughened by smooth noise and
thresholded at the quantile that covers exactly the requested fraction, so the covered
fraction is what was asked (to one pixel). Seeded by a ``numpy.random.Generator``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["KINDS", "artefact_mask"]

KINDS = ("tear", "hole", "border")


def _smooth_noise(shape: tuple[int, int], scale: float, rng: np.random.Generator) -> np.ndarray:
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=max(scale, 1.0))
    return field / (field.std() + 1e-12)


def _curve_distance(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Distance to a smooth random curve that crosses the image (a tear's centre line)."""
    h, w = shape
    n = 4 * (h + w)
    side = rng.integers(4)
    start = {0: (0.0, rng.uniform(0, w)), 1: (h - 1.0, rng.uniform(0, w)),
             2: (rng.uniform(0, h), 0.0), 3: (rng.uniform(0, h), w - 1.0)}[int(side)]  # fmt: skip
    target = (h / 2 + rng.uniform(-h / 4, h / 4), w / 2 + rng.uniform(-w / 4, w / 4))
    angle = np.arctan2(target[0] - start[0], target[1] - start[1])
    turn = np.cumsum(ndimage.gaussian_filter1d(rng.standard_normal(n), 20) * 0.08)
    ys = start[0] + np.cumsum(np.sin(angle + turn) * 0.5)
    xs = start[1] + np.cumsum(np.cos(angle + turn) * 0.5)
    keep = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
    line = np.ones(shape, bool)
    line[ys[keep].astype(int), xs[keep].astype(int)] = False
    if line.all():
        line[h // 2, :] = False
    return ndimage.distance_transform_edt(line)


def _blob_distance(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    seeds = np.ones(shape, bool)
    for _ in range(int(rng.integers(1, 4))):
        seeds[int(rng.integers(shape[0])), int(rng.integers(shape[1]))] = False
    return ndimage.distance_transform_edt(seeds)


def _edge_distance(
    shape: tuple[int, int], rng: np.random.Generator, ragged: bool
) -> np.ndarray:
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(float)
    side = int(rng.integers(4))
    tilt = rng.uniform(-0.15, 0.15)
    dist = {0: yy + tilt * xx, 1: (h - 1 - yy) + tilt * xx,
            2: xx + tilt * yy, 3: (w - 1 - xx) + tilt * yy}[side]  # fmt: skip
    if ragged:
        along = w if side < 2 else h
        profile = ndimage.gaussian_filter1d(rng.standard_normal(along), 3) * 0.06 * min(h, w) * 3
        dist = dist + (profile[None, :] if side < 2 else profile[:, None])
    return dist


def artefact_mask(
    shape: tuple[int, int],
    fraction: float,
    kind: str = "tear",
    *,
    rng: np.random.Generator | int | None = None,
    roughness: float = 0.15,
) -> np.ndarray:
    """A boolean artefact mask covering ``fraction`` of an image of ``shape``.

    Args:
        shape: (rows, columns).
        fraction: share of pixels covered, 0.05 to 0.5 in the paper's evaluation.
        kind: "tear" (thin curved band; wider for large fractions), "hole" (1-3 blobs)
            or "border" (straight or ragged missing edge).
        rng: a Generator or a seed.
        roughness: amplitude of the smooth noise on the shape's outline, as a share of
            the image size.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}.")
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}.")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    shape = (int(shape[0]), int(shape[1]))
    size = min(shape)
    if kind == "tear":
        dist = _curve_distance(shape, rng)
        dist = dist + roughness * 0.3 * size * _smooth_noise(shape, size / 20, rng)
    elif kind == "hole":
        dist = _blob_distance(shape, rng)
        dist = dist + roughness * size * _smooth_noise(shape, size / 10, rng)
    else:
        ragged = bool(rng.integers(2))
        dist = _edge_distance(shape, rng, ragged)
        if ragged:
            dist = dist + roughness * 0.3 * size * _smooth_noise(shape, size / 25, rng)
    # Exactly `fraction` of the pixels: the smallest distances (ties broken by order).
    n = int(round(fraction * dist.size))
    order = np.argsort(dist, axis=None, kind="stable")
    mask = np.zeros(dist.size, bool)
    mask[order[:n]] = True
    return mask.reshape(shape)
