"""The classical inpainting anyone would try first: OpenCV's Telea, scikit-image's
biharmonic inpainting, and bidsfill's own nearest-patch filler in 2D. Each returns an
image of the input's dtype whose pixels outside the mask are the input's, bit for bit."""

from __future__ import annotations

import numpy as np

__all__ = ["BASELINES", "inpaint_biharmonic", "inpaint_nonlocal", "inpaint_telea"]


def _compose(image: np.ndarray, mask: np.ndarray, fill: np.ndarray) -> np.ndarray:
    info = np.iinfo(image.dtype)
    out = image.copy()
    out[mask] = np.clip(np.rint(fill[mask]), info.min, info.max).astype(image.dtype)
    return out


def inpaint_telea(image: np.ndarray, mask: np.ndarray, radius: float = 5.0) -> np.ndarray:
    """Telea's fast-marching inpainting (``cv2.inpaint``, ``INPAINT_TELEA``)."""
    import cv2

    fill = cv2.inpaint(image.astype(np.float32), mask.astype(np.uint8), radius, cv2.INPAINT_TELEA)
    return _compose(image, mask, fill)


def inpaint_biharmonic(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Biharmonic inpainting (``skimage.restoration.inpaint_biharmonic``)."""
    from skimage.restoration import inpaint_biharmonic as _bih

    fill = _bih(image.astype(np.float64), mask, split_into_regions=True)
    return _compose(image, mask, fill)




def inpaint_nonlocal(image: np.ndarray, mask: np.ndarray, search_radius: int = 3) -> np.ndarray:
    """bidsfill's nearest-patch filler (``fill/nonlocal_fill.py``, onion-peel non-local
    means of 3x3 patches) in 2D: the image is a volume one slice deep, so the cube's
    out-of-plane offsets land in the padding, which is never known."""
    from bidsfill.fill.nonlocal_fill import fill_nonlocal

    res = fill_nonlocal(image.astype(np.float32)[..., None], mask[..., None],
                        zooms=(1.0, 1.0, 1.0), seed=0, search_radius=search_radius)  # fmt: skip
    return _compose(image, mask, res.filled[..., 0])


BASELINES = {"telea": inpaint_telea, "biharmonic": inpaint_biharmonic,
             "nonlocal": inpaint_nonlocal}  # fmt: skip
