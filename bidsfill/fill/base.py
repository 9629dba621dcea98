"""The fill interface every method plugs into.

A filler is a function ``(image, mask, *, zooms, seed, **params) -> FillResult`` that
works on float arrays in the input's (scaled) intensity units. It may compute any value
anywhere, but :func:`fill_image` keeps only the voxels inside the mask, so no filler can
change a voxel outside it. Fillers register themselves by name with
:func:`register_filler`; what the run and the report know about each built-in method
(kind, device, methods text) is in :mod:`bidsfill.fill.methods`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from bidsfill.fill.methods import FILL_METHODS

__all__ = [
    "FillError",
    "FillResult",
    "Filler",
    "available_methods",
    "fill_image",
    "get_filler",
    "method_names",
    "register_filler",
]


class FillError(RuntimeError):
    """A fill that cannot run for a reason the user can fix (one clear sentence)."""


@dataclass(frozen=True)
class FillResult:
    """What a filler returns.

    Args:
        filled: float32 array shaped like the input; only voxels inside the mask are used.
        std: optional voxelwise standard deviation across samples (diffusion, n_samples > 1).
        params: the method's parameters, recorded in the sidecar JSON.
        device: the device that actually ran the fill ("cpu", "cuda:0").
        seconds: wall-clock seconds of the fill (set by :func:`fill_image`).
    """

    filled: np.ndarray
    std: np.ndarray | None = None
    params: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    seconds: float = 0.0


class Filler(Protocol):
    def __call__(
        self,
        image: np.ndarray,
        mask: np.ndarray,
        *,
        zooms: tuple[float, float, float],
        seed: int,
        **params: Any,
    ) -> FillResult: ...


_REGISTRY: dict[str, Filler] = {}


def register_filler(name: str) -> Callable[[Filler], Filler]:
    """Decorator that makes a filler available as ``--method name``."""

    def _register(func: Filler) -> Filler:
        _REGISTRY[name] = func
        return func

    return _register


def _load_builtin_fillers() -> None:
    # Importing the modules runs their @register_filler decorators.
    import importlib

    for module in dict.fromkeys(m.module for m in FILL_METHODS.values()):
        try:
            importlib.import_module(f"bidsfill.fill.{module}")
        except ModuleNotFoundError as err:  # a method module not written yet
            if err.name != f"bidsfill.fill.{module}":
                raise


def available_methods() -> list[str]:
    _load_builtin_fillers()
    return sorted(_REGISTRY)


def method_names() -> list[str]:
    """The built-in methods and any registered so far, without importing a filler module.

    :func:`available_methods` imports every filler (torch with the diffusion ones); this is
    what the command line lists, so ``--help`` and ``--version`` need no heavy import.
    """
    return sorted({*FILL_METHODS, *_REGISTRY})


def get_filler(name: str) -> Filler:
    _load_builtin_fillers()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise FillError(
            f"Unknown fill method {name!r}; choose one of {', '.join(sorted(_REGISTRY))}."
        ) from None


def fill_image(
    image: np.ndarray,
    mask: np.ndarray,
    *,
    method: str,
    zooms: tuple[float, float, float],
    seed: int = 0,
    affine: np.ndarray | None = None,
    **params: Any,
) -> FillResult:
    """Fill ``image`` inside ``mask`` with ``method``; outside the mask the input is kept.

    This is the one place where filled values are written into the image, so the
    outside-mask invariant holds for every method. With ``affine`` the arrays are given
    to the filler in RAS orientation (the slice-wise diffusion models take the third
    axis as axial), and the result is turned back to the input's orientation.
    """
    # C order for every filler: nibabel hands out Fortran-ordered arrays, on which
    # ``reshape(-1)`` copies instead of viewing (a flat-index filler would then write
    # into a copy and never finish).
    image = np.ascontiguousarray(image, dtype=np.float32)
    mask = np.ascontiguousarray(mask, dtype=bool)
    if image.shape != mask.shape:
        raise FillError(f"Image shape {image.shape} and mask shape {mask.shape} differ.")
    if not mask.any():
        return FillResult(filled=image.copy(), params={"empty_mask": True})
    filler = get_filler(method)
    to_ras, from_ras = _orientation_maps(affine, image.ndim)
    zooms_ras = list(zooms)
    if to_ras is not None:  # to_ras[i, 0] is the RAS axis that input axis i becomes
        for axis, new_axis in enumerate(to_ras[:, 0].astype(int)):
            zooms_ras[new_axis] = zooms[axis]
    if affine is not None:  # the filler's arrays are RAS: give it their own affine
        params["affine"] = np.asarray(affine, dtype=np.float64)
        if to_ras is not None:
            from nibabel.orientations import inv_ornt_aff

            params["affine"] = params["affine"] @ inv_ornt_aff(to_ras, image.shape)
    if params.get("extra_images"):  # other contrasts on the image's grid: RAS too
        extra = {}
        for name, other in params["extra_images"].items():
            other = np.ascontiguousarray(other, dtype=np.float32)
            if other.shape != image.shape:
                raise FillError(f"The {name} image has shape {other.shape}, not {image.shape}.")
            extra[name] = _reorient(other, to_ras)
        params = {**params, "extra_images": extra}
    start = time.perf_counter()
    result = filler(
        _reorient(image, to_ras),
        _reorient(mask, to_ras),
        zooms=tuple(float(z) for z in zooms_ras),
        seed=int(seed),
        **params,
    )
    seconds = time.perf_counter() - start
    out = image.copy()
    filled = _reorient(np.asarray(result.filled, dtype=np.float32), from_ras)
    out[mask] = filled[mask]
    std = None
    if result.std is not None:
        std = np.zeros_like(image)
        std[mask] = _reorient(np.asarray(result.std, dtype=np.float32), from_ras)[mask]
    return FillResult(
        filled=out, std=std, params=dict(result.params), device=result.device, seconds=seconds
    )


def _orientation_maps(affine: np.ndarray | None, ndim: int):
    """nibabel orientation transforms input->RAS and back (None when already RAS)."""
    if affine is None or ndim != 3:
        return None, None
    from nibabel import orientations as ornt

    current = ornt.io_orientation(np.asarray(affine))
    ras = ornt.axcodes2ornt(("R", "A", "S"))
    if np.array_equal(current, ras):
        return None, None
    return ornt.ornt_transform(current, ras), ornt.ornt_transform(ras, current)


def _reorient(array: np.ndarray, transform) -> np.ndarray:
    if transform is None:
        return array
    from nibabel.orientations import apply_orientation

    return np.ascontiguousarray(apply_orientation(array, transform))
