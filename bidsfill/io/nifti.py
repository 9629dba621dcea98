"""Reading T1w images and masks with validation, and writing outputs exactly like the input.

The invariant bidsfill promises is strict: outside the lesion mask every output voxel is
bit-identical to the input, and the header, affine and on-disk dtype are the input's.
nibabel's ``save`` recomputes ``scl_slope``/``scl_inter`` and may change the header, so
:func:`write_like` writes the input's own header followed by the raw (unscaled) voxel
array itself; that is the one piece of NIfTI writing done by hand here.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import nibabel as nib
import numpy as np

from bidsfill.io.atomic import part_file

__all__ = [
    "InputError",
    "LoadedImage",
    "load_image",
    "load_mask",
    "to_raw",
    "write_like",
]


class InputError(ValueError):
    """A problem with an input file that the user must fix (one clear sentence)."""


@dataclass(frozen=True)
class LoadedImage:
    """An image as read from disk.

    Args:
        path: where it was read from.
        img: the nibabel image (header and affine as on disk).
        data: float32 voxel values in scaled (physical) units.
    """

    path: Path
    img: nib.Nifti1Image
    data: np.ndarray

    @property
    def zooms(self) -> tuple[float, float, float]:
        return tuple(float(z) for z in self.img.header.get_zooms()[:3])  # type: ignore[return-value]

    @property
    def affine(self) -> np.ndarray:
        return self.img.affine


def _read(path: Path, what: str) -> nib.Nifti1Image:
    path = Path(path)
    if not path.exists():
        raise InputError(f"The {what} {path} does not exist.")
    try:
        img = nib.load(str(path))
        if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
            img = nib.Nifti1Image.from_image(img)
        # Touch the data now so a truncated or corrupt file fails here, not mid-workflow.
        np.asanyarray(img.dataobj)
    except InputError:
        raise
    except Exception as err:  # nibabel raises many types for unreadable files
        raise InputError(f"The {what} {path} could not be read as NIfTI ({err}).") from None
    return img


def load_image(path: str | Path, what: str = "T1w image") -> LoadedImage:
    """Load a 3D anatomical image, refusing 4D data, a zero/singular affine and NaN/Inf voxels."""
    img = _read(Path(path), what)
    shape = img.shape
    if len(shape) == 4 and shape[3] == 1:
        img = img.slicer[..., 0]
    elif len(shape) != 3:
        raise InputError(
            f"The {what} {path} has shape {shape}; bidsfill needs a 3D volume, not a time series."
        )
    linear = np.asarray(img.affine, dtype=np.float64)[:3, :3]
    if not np.isfinite(linear).all() or np.linalg.cond(linear) > 1e8:
        kind = "zero" if not linear.any() else "singular"
        raise InputError(
            f"The {what} {path} has a {kind} affine (its voxel-to-world matrix cannot be "
            "inverted, so voxels have no position or size); fix its sform/qform."
        )
    data = np.asarray(img.get_fdata(dtype=np.float32))
    if not np.isfinite(data).all():
        n_bad = int((~np.isfinite(data)).sum())
        raise InputError(f"The {what} {path} has {n_bad} NaN or infinite voxels.")
    return LoadedImage(path=Path(path), img=img, data=data)


def load_mask(path: str | Path, threshold: float | None = None) -> tuple[LoadedImage, list[str]]:
    """Load a lesion mask as a 0/1 image; return it with any warnings.

    Values exactly {0, 1} or {0, 255} are binary. Any other mask (a probability map, a
    uint8 map of 0..255) is refused unless ``threshold`` is given: thresholding it at a
    guessed value once filled a 7 ml lesion as 141 ml without a word.

    Raises:
        InputError: the mask is not binary and no threshold was given.
    """
    loaded = load_image(path, what="lesion mask")
    data = loaded.data
    warnings: list[str] = []
    values = np.unique(data)
    if np.isin(values, (0.0, 1.0)).all() or np.isin(values, (0.0, 255.0)).all():
        mask = (data > 0).astype(np.float32)
    elif threshold is None:
        raise InputError(
            f"The lesion mask {Path(path).name} is not binary (values {values.min():g} to "
            f"{values.max():g}); give --mask-threshold T to count voxels >= T as lesion."
        )
    else:
        mask = (data >= threshold).astype(np.float32)
        warnings.append(
            f"The lesion mask {Path(path).name} is not binary (values {values.min():g} to "
            f"{values.max():g}); it was thresholded at {threshold:g}."
        )
    return LoadedImage(path=loaded.path, img=loaded.img, data=mask), warnings


def to_raw(reference: nib.Nifti1Image, values: np.ndarray) -> np.ndarray:
    """Convert values in scaled units to the reference's on-disk dtype and scaling.

    Integer types are rounded and clipped to the dtype's range, so a filled value can
    never wrap around.
    """
    slope = reference.dataobj.slope if hasattr(reference.dataobj, "slope") else 1.0
    inter = reference.dataobj.inter if hasattr(reference.dataobj, "inter") else 0.0
    slope = 1.0 if slope is None or not np.isfinite(slope) or slope == 0 else float(slope)
    inter = 0.0 if inter is None or not np.isfinite(inter) else float(inter)
    dtype = reference.get_data_dtype()
    raw = (np.asarray(values, dtype=np.float64) - inter) / slope
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        raw = np.clip(np.rint(raw), info.min, info.max)
    return raw.astype(dtype)


def raw_data(reference: nib.Nifti1Image) -> np.ndarray:
    """The unscaled voxel array exactly as stored on disk."""
    proxy = reference.dataobj
    raw = proxy.get_unscaled() if hasattr(proxy, "get_unscaled") else np.asanyarray(proxy)
    return np.asarray(raw).reshape(reference.shape[:3])


def write_like(
    reference: nib.Nifti1Image,
    path: str | Path,
    *,
    values: np.ndarray | None = None,
    inside: np.ndarray | None = None,
) -> Path:
    """Write an image with the reference's header, replacing voxels only ``inside``.

    Args:
        reference: the input image as loaded from disk.
        path: output path (``.nii`` or ``.nii.gz``).
        values: new values in scaled units, shaped like the reference.
        inside: boolean mask of voxels to replace; all other voxels keep their on-disk
            bytes. ``None`` with ``values`` replaces every voxel.
    """
    path = Path(path)
    raw = raw_data(reference).copy()
    if values is not None:
        new_raw = to_raw(reference, values)
        if inside is None:
            raw = new_raw
        else:
            inside = np.asarray(inside, dtype=bool)
            raw[inside] = new_raw[inside]
    header = reference.header.copy()
    # nibabel moves scl_slope/scl_inter from the header into the array proxy on load;
    # put them back so the file says what the input said.
    slope = getattr(reference.dataobj, "slope", 1.0)
    inter = getattr(reference.dataobj, "inter", 0.0)
    if not (slope == 1.0 and inter == 0.0):
        header["scl_slope"] = slope
        header["scl_inter"] = inter
    if raw.ndim != len(header.get_data_shape()):
        raw = raw.reshape(header.get_data_shape())
    path.parent.mkdir(parents=True, exist_ok=True)
    # mtime=0 keeps reruns byte-identical.
    opener = (
        partial(gzip.GzipFile, mode="wb", mtime=0)
        if path.name.endswith(".gz")
        else partial(open, mode="wb")
    )
    # Atomic: no half-written output under the final name, no .part left after an error.
    with part_file(path) as tmp, opener(tmp) as handle:
        header.write_to(handle)
        offset = int(header.get_data_offset())
        written = handle.tell()
        if written < offset:
            handle.write(b"\x00" * (offset - written))
        dtype = header.get_data_dtype()
        handle.write(np.asarray(raw, dtype=dtype).tobytes(order="F"))
    return path


def save_new(
    data: np.ndarray, reference: nib.Nifti1Image, path: str | Path, dtype: str | np.dtype
) -> Path:
    """Save a derived image (mask, dseg, probseg) on the reference's grid."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = reference.header.copy()
    header.set_data_dtype(dtype)
    img = nib.Nifti1Image(np.asarray(data).astype(dtype), reference.affine, header)
    img.header.set_slope_inter(1.0, 0.0)
    tmp = path.with_name(path.name.replace(".nii", ".part.nii"))
    nib.save(img, str(tmp))
    tmp.replace(path)
    return path
