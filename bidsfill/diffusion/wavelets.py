"""Exact 3D Haar wavelet transform for the wavelet diffusion model (cWDM / WDM 3D).

Written by hand because MONAI has no discrete wavelet transform. The orthonormal Haar
filters keep i.i.d. Gaussian noise i.i.d. Gaussian, so a diffusion process in sub-band
space is also a diffusion process in image space (RePaint merges in either domain).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["SUBBANDS", "dwt3d", "idwt3d"]

#: Sub-band order along the channel axis for each input channel (L = low, H = high pass
#: along depth, height, width).
SUBBANDS = ("LLL", "LLH", "LHL", "LHH", "HLL", "HLH", "HHL", "HHH")

_SQRT2 = math.sqrt(2.0)


def _analyse(x: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    even = [slice(None)] * x.ndim
    odd = [slice(None)] * x.ndim
    even[dim] = slice(0, None, 2)
    odd[dim] = slice(1, None, 2)
    a, b = x[tuple(even)], x[tuple(odd)]
    return (a + b) / _SQRT2, (a - b) / _SQRT2


def _synthesise(low: torch.Tensor, high: torch.Tensor, dim: int) -> torch.Tensor:
    a = (low + high) / _SQRT2
    b = (low - high) / _SQRT2
    # Interleave a and b along dim: stack after dim then merge the two axes.
    out = torch.stack((a, b), dim=dim + 1)
    shape = list(low.shape)
    shape[dim] *= 2
    return out.reshape(shape)


def dwt3d(x: torch.Tensor) -> torch.Tensor:
    """One level of the orthonormal 3D Haar transform.

    Odd spatial sizes are padded by edge replication to even; pass the original shape
    to :func:`idwt3d` to crop it back.

    Args:
        x: ``(N, C, D, H, W)`` tensor.

    Returns:
        ``(N, 8 * C, ceil(D/2), ceil(H/2), ceil(W/2))``; channel ``8 * c + k`` is
        sub-band ``SUBBANDS[k]`` of input channel ``c``.
    """
    if x.ndim != 5:
        raise ValueError(f"dwt3d expects a 5D tensor (N, C, D, H, W), got shape {tuple(x.shape)}.")
    pad = [0, x.shape[4] % 2, 0, x.shape[3] % 2, 0, x.shape[2] % 2]
    if any(pad):
        x = F.pad(x, pad, mode="replicate")
    bands = [x]
    for dim in (2, 3, 4):
        bands = [part for band in bands for part in _analyse(band, dim)]
    n, c = x.shape[:2]
    out = torch.stack(bands, dim=2)  # (N, C, 8, d, h, w)
    return out.reshape(n, c * 8, *out.shape[3:])


def idwt3d(y: torch.Tensor, shape: tuple[int, int, int] | None = None) -> torch.Tensor:
    """Inverse of :func:`dwt3d`.

    Args:
        y: ``(N, 8 * C, d, h, w)`` sub-bands.
        shape: spatial shape ``(D, H, W)`` of the original input, to crop padding away.

    Returns:
        ``(N, C, D, H, W)`` image.
    """
    if y.ndim != 5 or y.shape[1] % 8:
        raise ValueError(f"idwt3d expects (N, 8*C, d, h, w) sub-bands, got shape {tuple(y.shape)}.")
    n, c8 = y.shape[:2]
    y = y.reshape(n, c8 // 8, 8, *y.shape[2:])
    bands = [y[:, :, k] for k in range(8)]
    for dim in (4, 3, 2):
        bands = [_synthesise(bands[i], bands[i + 1], dim) for i in range(0, len(bands), 2)]
    x = bands[0]
    if shape is not None:
        x = x[:, :, : shape[0], : shape[1], : shape[2]]
    return x
