"""Pixel-exact slice rendering: grey T1w tiles with tissue colours and lesion contours.

Tiles are composed as RGB arrays rather than through matplotlib's resampling, so the
lesion contour keeps one exact colour (a reader, and the tests, look for it) and every
voxel is drawn as a block of whole pixels at a physical scale (pixels per mm).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from bidsfill.io.atomic import part_file

__all__ = [
    "CONTOUR_RGB",
    "ORIENTATIONS",
    "TISSUE_RGB",
    "Volume",
    "compose",
    "label",
    "lesion_slices",
    "load_ras",
    "png_bytes",
    "render_tile",
    "save_png",
    "window",
]

CONTOUR_RGB = (255, 0, 0)
TISSUE_RGB = {1: (0, 170, 255), 2: (255, 215, 0), 3: (0, 220, 110)}  # GM, WM, CSF
ORIENTATIONS = {"axial": 2, "coronal": 1, "sagittal": 0}


@dataclass(frozen=True)
class Volume:
    """A 3D image in RAS+ voxel order (so every figure has the same orientation)."""

    data: np.ndarray
    zooms: tuple[float, float, float]


def load_ras(path: str | Path, dtype=np.float32) -> Volume:
    """Load ``path`` reoriented to the closest canonical (RAS+) axes; 4D keeps volume 0."""
    img = nib.as_closest_canonical(nib.load(str(path)))
    data = np.asanyarray(img.dataobj)
    if data.ndim == 4:
        data = data[..., 0]
    zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    return Volume(np.asarray(data, dtype=dtype), zooms)  # type: ignore[arg-type]


def window(image: np.ndarray, inside: np.ndarray | None = None) -> tuple[float, float]:
    """Display range from robust percentiles of the brain (or of the non-zero voxels)."""
    values = image[inside] if inside is not None and inside.any() else image[image > 0]
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(values, [0.5, 99.5])
    return float(lo), float(hi if hi > lo else lo + 1)


def lesion_slices(mask: np.ndarray, axis: int, n: int) -> list[int]:
    """Up to ``n`` slice indices along ``axis`` spread over the lesion voxels."""
    if not mask.any():
        return [mask.shape[axis] // 2]
    coords = np.nonzero(mask)[axis]
    picks = np.quantile(coords, np.linspace(0.05, 0.95, n)) if n > 1 else [np.median(coords)]
    chosen = sorted({int(round(p)) for p in picks})
    # Quantiles can fall between lesions; move each onto the nearest slice that has one.
    present = np.unique(coords)
    return sorted({int(present[np.argmin(np.abs(present - c))]) for c in chosen})


def _plane(volume: np.ndarray, axis: int, index: int) -> np.ndarray:
    sl = [slice(None)] * 3
    sl[axis] = index
    # rot90 puts anterior/superior up and the subject's left on the left (neurological).
    return np.rot90(volume[tuple(sl)])


def _factors(zooms: tuple[float, float, float], axis: int, px_per_mm: float) -> tuple[int, int]:
    a, b = (ax for ax in range(3) if ax != axis)
    # After rot90 the rows run along axis b and the columns along axis a.
    return max(1, round(zooms[b] * px_per_mm)), max(1, round(zooms[a] * px_per_mm))


def _upscale(plane: np.ndarray, factors: tuple[int, int]) -> np.ndarray:
    return np.repeat(np.repeat(plane, factors[0], axis=0), factors[1], axis=1)


def render_tile(
    image: np.ndarray,
    zooms: tuple[float, float, float],
    axis: int,
    index: int,
    *,
    vrange: tuple[float, float],
    box: tuple[slice, slice, slice] | None = None,
    mask: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    px_per_mm: float = 1.0,
    alpha: float = 0.35,
) -> np.ndarray:
    """One slice as an RGB uint8 array: grey image, optional tissue colours and contour.

    Args:
        image: 3D RAS volume; ``mask`` and ``labels`` are on the same grid.
        axis, index: the slice (axis 2 = axial, 1 = coronal, 0 = sagittal).
        vrange: grey window (low, high).
        box: crop of the volume before slicing (the slice axis entry is ignored).
        labels: tissue labels 1..3 blended in :data:`TISSUE_RGB`.
        px_per_mm: output pixels per millimetre (voxels become whole-pixel blocks).
    """
    sl = list(box) if box is not None else [slice(None)] * 3
    sl[axis] = slice(None)
    crop = tuple(sl)
    rel = index - (sl[axis].start or 0)
    factors = _factors(zooms, axis, px_per_mm)
    lo, hi = vrange
    grey = np.clip((_plane(image[crop], axis, rel) - lo) / (hi - lo), 0, 1)
    rgb = np.repeat(_upscale(grey, factors)[..., None] * 255.0, 3, axis=2)
    if labels is not None:
        lab = _upscale(_plane(labels[crop], axis, rel), factors)
        for value, colour in TISSUE_RGB.items():
            where = lab == value
            rgb[where] = (1 - alpha) * rgb[where] + alpha * np.array(colour, float)
    rgb = rgb.round().astype(np.uint8)
    if mask is not None:
        inside = _upscale(_plane(mask[crop], axis, rel).astype(bool), factors)
        edge = inside & ~ndimage.binary_erosion(inside, border_value=0)
        rgb[edge] = CONTOUR_RGB
    return rgb


def label(rgb: np.ndarray, text: str) -> np.ndarray:
    """Write ``text`` in the top-left corner (white on a dark box)."""
    img = Image.fromarray(rgb)
    draw = ImageDraw.Draw(img)
    left, top, right, bottom = draw.textbbox((3, 2), text)
    draw.rectangle((left - 2, top - 2, right + 2, bottom + 2), fill=(0, 0, 0))
    draw.text((3, 2), text, fill=(255, 255, 255))
    return np.asarray(img)


def compose(rows: list[list[np.ndarray]], pad: int = 4) -> np.ndarray:
    """Lay tiles out in rows on a black canvas (rows need not have equal tile sizes)."""
    heights = [max(t.shape[0] for t in row) for row in rows]
    widths = [sum(t.shape[1] for t in row) + pad * (len(row) - 1) for row in rows]
    canvas = np.zeros((sum(heights) + pad * (len(rows) - 1), max(widths), 3), np.uint8)
    y = 0
    for row, height in zip(rows, heights, strict=True):
        x = 0
        for tile in row:
            canvas[y : y + tile.shape[0], x : x + tile.shape[1]] = tile
            x += tile.shape[1] + pad
        y += height + pad
    return canvas


def png_bytes(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def save_png(rgb: np.ndarray, path: str | Path) -> Path:
    """Write ``rgb`` as a PNG (through a ``.part`` file, so no half-written figure)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with part_file(path) as tmp:
        tmp.write_bytes(png_bytes(rgb))
    return path
