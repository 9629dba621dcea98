"""Haar DWT/IDWT: exact round trip (odd sizes too) and orthonormality."""

from __future__ import annotations

import pytest
import torch

from bidsfill.diffusion.wavelets import dwt3d, idwt3d


@pytest.mark.parametrize("shape", [(2, 3, 8, 8, 8), (1, 1, 7, 10, 5), (1, 2, 1, 3, 2)])
def test_round_trip_exact(shape):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = dwt3d(x)
    assert y.shape == (shape[0], 8 * shape[1], *[(s + 1) // 2 for s in shape[2:]])
    back = idwt3d(y, shape[2:])
    assert back.shape == x.shape
    assert torch.allclose(back, x, atol=1e-12, rtol=0)


def test_orthonormal_energy_and_low_band():
    x = torch.randn(1, 1, 4, 6, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = dwt3d(x)
    # Parseval: an orthonormal transform keeps the energy (and so keeps i.i.d. noise i.i.d.).
    assert torch.allclose((y**2).sum(), (x**2).sum())
    # LLL is the 2x2x2 block sum / sqrt(8).
    block = x[0, 0, :2, :2, :2].sum() / 8**0.5
    assert torch.allclose(y[0, 0, 0, 0, 0], block)


def test_bad_input_raises():
    with pytest.raises(ValueError):
        dwt3d(torch.zeros(2, 2, 2))
    with pytest.raises(ValueError):
        idwt3d(torch.zeros(1, 3, 2, 2, 2))
