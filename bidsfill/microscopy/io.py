"""Reading and writing 8/16-bit grayscale PNG, TIFF and OME-TIFF, keeping dtype and metadata.

PNG goes through Pillow (its text chunks and dpi are written back); TIFF and OME-TIFF
through tifffile (ImageDescription, i.e. the OME-XML, resolution, compression and
photometric interpretation are written back). Large uncompressed TIFFs are opened as
memory maps (:func:`open_lazy`), so a repair reads and writes only the windows it
touches (:func:`iter_tiles`, :func:`create_like`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "EXTENSIONS",
    "MICROSCOPY_SUFFIXES",
    "ImageMeta",
    "MicroscopyInputError",
    "check_mask",
    "create_like",
    "image_extension",
    "iter_tiles",
    "open_lazy",
    "read_image",
    "read_mask",
    "write_image",
]

#: BIDS microscopy suffixes (BIDS 1.9, ``micr`` datatype).
MICROSCOPY_SUFFIXES = (
    "TEM", "SEM", "uCT", "BF", "DF", "PC", "DIC", "FLUO", "CONF", "PLI", "CARS", "2PE",
    "MPE", "SR", "NLO", "OCT", "SPIM", "XPCT",
)  # fmt: skip

#: File extensions read and written (longest first, so ".ome.tif" wins over ".tif").
EXTENSIONS = (".ome.tiff", ".ome.tif", ".tiff", ".tif", ".png")

_DTYPES = (np.dtype("uint8"), np.dtype("uint16"))


class MicroscopyInputError(ValueError):
    """A bad input image or mask; ``kind`` names the problem (for the exit code)."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class ImageMeta:
    """What is written back: the format and the metadata of the file read."""

    format: str  # "png" or "tiff"
    dtype: str
    shape: tuple[int, int]
    png_text: dict[str, str] = field(default_factory=dict)
    dpi: tuple[float, float] | None = None
    description: str | None = None
    resolution: tuple[Any, Any] | None = None
    resolutionunit: int | None = None
    compression: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def image_extension(path: str | Path) -> str:
    """The file's extension as BIDS sees it (".ome.tif", ".png", ...), lower case."""
    name = Path(path).name.lower()
    for ext in EXTENSIONS:
        if name.endswith(ext):
            return ext
    raise MicroscopyInputError(
        f"{Path(path).name} is not a PNG, TIFF or OME-TIFF file.", "format"
    )


def _check_gray(array: np.ndarray, path: str | Path) -> np.ndarray:
    name = Path(path).name
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        raise MicroscopyInputError(
            f"{name} is an RGB image; bidsfill repairs 8- or 16-bit grayscale images only.",
            "rgb",
        )
    if array.ndim == 3 and array.shape[0] in (3, 4):
        raise MicroscopyInputError(
            f"{name} has {array.shape[0]} colour planes; bidsfill repairs 8- or 16-bit "
            "grayscale images only.",
            "rgb",
        )
    if array.ndim != 2:
        raise MicroscopyInputError(
            f"{name} has shape {array.shape}; bidsfill repairs single-plane 2D images only.",
            "shape",
        )
    if array.dtype not in _DTYPES and array.dtype != np.bool_:
        raise MicroscopyInputError(
            f"{name} has pixel type {array.dtype}; bidsfill repairs 8- or 16-bit images only.",
            "dtype",
        )
    return array


def _png_read(path: Path) -> tuple[np.ndarray, ImageMeta]:
    from PIL import Image

    with Image.open(path) as im:
        mode = im.mode
        if mode in ("RGB", "RGBA", "P", "LA", "CMYK", "YCbCr"):
            raise MicroscopyInputError(
                f"{path.name} is an RGB image (PNG mode {mode}); bidsfill repairs 8- or "
                "16-bit grayscale images only.",
                "rgb",
            )
        array = np.asarray(im)
        if mode == "1":
            array = array.astype(np.uint8)
        elif mode in ("I", "I;16", "I;16B") and array.dtype != np.uint16:
            array = array.astype(np.uint16)
        text = {k: v for k, v in im.info.items() if isinstance(v, str)}
        dpi = im.info.get("dpi")
    meta = ImageMeta("png", str(array.dtype), tuple(array.shape[:2]), png_text=text,
                     dpi=tuple(float(d) for d in dpi) if dpi else None)  # fmt: skip
    return _check_gray(array, path), meta


def _tiff_meta(page: Any, shape: tuple[int, ...], dtype: np.dtype) -> ImageMeta:
    tags = page.tags

    def value(name: str) -> Any:
        tag = tags.get(name)
        return None if tag is None else tag.value

    desc = value("ImageDescription")
    return ImageMeta(
        "tiff", str(dtype), tuple(shape[:2]),
        description=desc if isinstance(desc, str) else None,
        resolution=(value("XResolution"), value("YResolution"))
        if value("XResolution") is not None else None,
        resolutionunit=int(value("ResolutionUnit")) if value("ResolutionUnit") else None,
        compression=int(value("Compression") or 1),
    )  # fmt: skip


def _tiff_read(path: Path) -> tuple[np.ndarray, ImageMeta]:
    import tifffile

    with tifffile.TiffFile(path) as tf:
        page = tf.pages[0]
        array = page.asarray()
        if len(tf.pages) > 1 and array.ndim == 2 and len(tf.pages) in (3, 4):
            if page.photometric == tifffile.PHOTOMETRIC.RGB:
                array = np.stack([p.asarray() for p in tf.pages], -1)
        if page.photometric == tifffile.PHOTOMETRIC.RGB and array.ndim == 2:
            array = array[..., None].repeat(3, -1)
        meta = _tiff_meta(page, array.shape, array.dtype)
    return _check_gray(array, path), meta


def read_image(path: str | Path) -> tuple[np.ndarray, ImageMeta]:
    """Read an 8/16-bit grayscale PNG or (OME-)TIFF and the metadata to write it back.

    Raises:
        MicroscopyInputError: not PNG/TIFF, RGB, not 2D, or not 8/16 bit.
    """
    path = Path(path)
    ext = image_extension(path)
    return _png_read(path) if ext == ".png" else _tiff_read(path)


def _tiff_kwargs(meta: ImageMeta | None) -> dict[str, Any]:
    kw: dict[str, Any] = {"photometric": "minisblack", "metadata": None}
    if meta is None:
        return kw
    if meta.description is not None:
        kw["description"] = meta.description
    if meta.resolution is not None:
        kw["resolution"] = meta.resolution
        if meta.resolutionunit is not None:
            kw["resolutionunit"] = meta.resolutionunit
    if meta.compression not in (None, 1):
        kw["compression"] = meta.compression
    return kw


def write_image(
    path: str | Path, array: np.ndarray, meta: ImageMeta | None = None, ext: str | None = None
) -> Path:
    """Write ``array`` in the format of ``path`` (or of ``ext``, for a temporary name) with
    the metadata of ``meta``.

    The dtype is kept as given (8 or 16 bit); for TIFF the description (OME-XML),
    resolution and compression of ``meta`` are written back, for PNG its text and dpi.
    """
    path = Path(path)
    array = np.asarray(array)
    if array.dtype not in _DTYPES:
        raise ValueError(f"write_image writes uint8 or uint16, got {array.dtype}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    if (ext or image_extension(path)) == ".png":
        from PIL import Image, PngImagePlugin

        info = PngImagePlugin.PngInfo()
        for key, val in (meta.png_text if meta else {}).items():
            info.add_text(key, val)
        kw: dict[str, Any] = {"pnginfo": info}
        if meta is not None and meta.dpi:
            kw["dpi"] = meta.dpi
        Image.fromarray(array).save(path, format="PNG", **kw)
        return path
    import tifffile

    tifffile.imwrite(path, array, ome=False, **_tiff_kwargs(meta))
    return path


def open_lazy(path: str | Path) -> tuple[np.ndarray, ImageMeta]:
    """The image as a read-only memory map when it is an uncompressed contiguous TIFF
    (nothing is read until indexed), else read into memory."""
    import tifffile

    path = Path(path)
    if image_extension(path) != ".png":
        with tifffile.TiffFile(path) as tf:
            page = tf.pages[0]
            meta = _tiff_meta(page, page.shape, page.dtype)
            mappable = page.is_memmappable and len(page.shape) == 2
        if mappable:
            array = tifffile.memmap(path, mode="r")
            return _check_gray(array, path), meta
    return read_image(path)


def create_like(path: str | Path, meta: ImageMeta) -> np.ndarray:
    """An uncompressed TIFF on disk of ``meta``'s shape and dtype, as a writable memory
    map (written tile by tile; flush() or del to finish)."""
    import tifffile

    kw = _tiff_kwargs(meta)
    kw.pop("compression", None)
    return tifffile.memmap(
        Path(path), shape=meta.shape, dtype=meta.dtype, ome=False, **kw
    )


def iter_tiles(
    shape: tuple[int, int], tile: int, overlap: int = 0
) -> Iterator[tuple[slice, slice]]:
    """Windows of at most ``tile`` pixels covering ``shape``, ``overlap`` pixels shared
    between neighbours; the last window of a row or column ends at the edge."""
    if tile <= overlap:
        raise ValueError("tile must be larger than overlap.")
    step = tile - overlap

    def starts(n: int) -> list[int]:
        if n <= tile:
            return [0]
        out = list(range(0, n - tile, step))
        return [*out, n - tile]

    for y in starts(shape[0]):
        for x in starts(shape[1]):
            yield slice(y, min(y + tile, shape[0])), slice(x, min(x + tile, shape[1]))


def read_mask(path: str | Path) -> np.ndarray:
    """A mask file's pixels as stored (RGB kept, so :func:`check_mask` can name it)."""
    path = Path(path)
    if image_extension(path) == ".png":
        from PIL import Image

        with Image.open(path) as im:
            return np.asarray(im.convert("RGB") if im.mode == "P" else im)
    import tifffile

    return tifffile.imread(path)


def check_mask(mask: np.ndarray, image_shape: tuple[int, ...], name: str = "mask") -> np.ndarray:
    """The artefact mask as bool, or one sentence about why it cannot be used.

    Raises:
        MicroscopyInputError: of kind "size", "rgb", "nonbinary" or "everything".
    """
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[-1] in (3, 4):
        raise MicroscopyInputError(f"The artefact mask {name} is an RGB image; it must be a "
                                   "single-channel binary image.", "rgb")  # fmt: skip
    if mask.shape != tuple(image_shape[:2]):
        raise MicroscopyInputError(
            f"The artefact mask {name} is {mask.shape[1]}x{mask.shape[0]} pixels but its image "
            f"is {image_shape[1]}x{image_shape[0]}; it must have the image's size.",
            "size",
        )
    values = np.unique(mask)
    if values.size > 2 or (values.size == 2 and values[0] != 0):
        raise MicroscopyInputError(
            f"The artefact mask {name} is not binary (it has {values.size} distinct values); "
            "it must hold 0 for intact tissue and one other value for the artefact.",
            "nonbinary",
        )
    out = mask != 0
    if out.all():
        raise MicroscopyInputError(
            f"The artefact mask {name} covers the whole image; nothing is left to repair "
            "it from.",
            "everything",
        )
    return out
