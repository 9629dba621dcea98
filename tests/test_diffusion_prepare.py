"""Preparation: intensity map inverse and robustness, crop/window round trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bidsfill.diffusion.card import Preprocessing, default_preprocessing
from bidsfill.diffusion.conditioning import to_network
from bidsfill.diffusion.crops import (
    CropGrid,
    blend_weights,
    crop_around,
    crop_grids,
    lesion_crops,
    slices_to_volume,
    volume_to_slices,
    z_windows,
)
from bidsfill.diffusion.examples import make_training_example
from bidsfill.diffusion.intensity import IntensityMap, fit_intensity_map, tissue_reference
from bidsfill.diffusion.pipeline import Preparation


def _tissue(rng, shape=(24, 24, 16)):
    # GM-like 80 and WM-like 120 with noise, zero background border.
    img = np.where(rng.random(shape) < 0.35, 80.0, 120.0) + rng.normal(0, 3, shape)
    img[:2] = 0
    return img.astype(np.float32)


def test_intensity_inverse_and_dict_round_trip():
    imap = IntensityMap(zero=-3.0, peak=117.0)
    x = np.linspace(-3, 150, 50).astype(np.float32)
    assert np.allclose(imap.inverse(imap.apply(x, clip=False)), x, atol=1e-3)
    assert imap.apply(np.float32(117.0)) == pytest.approx(0.5)
    assert imap.apply(np.float32(-3.0)) == pytest.approx(-1.0)
    assert IntensityMap.from_dict(imap.to_dict()) == imap


def test_intensity_fit_uses_known_tissue_only_and_is_scale_free():
    rng = np.random.default_rng(0)
    img = _tissue(rng)
    mask = np.zeros(img.shape, bool)
    mask[8:14, 8:14, 6:10] = True
    imap = fit_intensity_map(img, ~mask)
    assert imap.peak == pytest.approx(120, abs=4)  # the WM mode, not a percentile
    # Lesion values and scanner scale do not move the normalised image.
    img2 = img.copy()
    img2[mask] = 400
    assert fit_intensity_map(img2, ~mask) == imap
    imap3 = fit_intensity_map(img * 3.0, ~mask)
    assert np.allclose(imap3.apply(img * 3.0), imap.apply(img), atol=1e-4)
    with pytest.raises(ValueError, match="Too little"):
        fit_intensity_map(img, np.zeros(img.shape, bool))


def test_tissue_reference_steadies_a_crop_at_the_edge_of_the_brain():
    # A noisy (not zero) background, as in an exported skull-stripped scan: a crop that
    # is mostly background must still be normalised to the brain's WM peak.
    rng = np.random.default_rng(1)
    vol = rng.normal(10, 3, (60, 60, 40)).clip(0.5).astype(np.float32)
    vol[10:50, 10:50, 5:35] = _tissue(rng, (40, 40, 30))
    mask = np.zeros(vol.shape, bool)
    mask[11:14, 30:33, 20:23] = True
    ref = tissue_reference(vol, mask)
    assert 20 < ref.floor < 90 and ref.peak == pytest.approx(120, abs=4)
    edge = (slice(0, 16), slice(24, 40), slice(14, 30))  # 10 of 16 columns are background
    alone = fit_intensity_map(vol[edge], ~mask[edge])
    steady = fit_intensity_map(vol[edge], ~mask[edge], reference=ref)
    assert alone.peak < 40  # the background noise mode wins without the reference
    assert steady.peak == pytest.approx(120, abs=6)
    # A crop with no tissue at all falls back to the volume's peak instead of failing.
    empty = (slice(0, 8), slice(0, 8), slice(0, 8))
    assert fit_intensity_map(vol[empty], np.ones((8, 8, 8), bool), reference=ref).peak == ref.peak
    # A local bias within MAX_PEAK_RATIO is kept (the point of a per-crop fit).
    inner = (slice(20, 40), slice(20, 40), slice(10, 30))
    biased = fit_intensity_map(vol[inner] * 1.2, ~mask[inner], reference=ref)
    assert biased.peak == pytest.approx(144, abs=6)


def test_crop_extract_round_trip_and_divisible():
    vol = np.arange(20 * 18 * 11, dtype=np.float32).reshape(20, 18, 11)
    crop = crop_around(np.array([3, 4, 2]), np.array([9, 8, 5]), vol.shape, (8, 8, 16), (8, 8, 1))
    arr = crop.extract(vol)
    assert arr.shape == crop.shape
    assert all(s % 8 == 0 for s in arr.shape[:2]) and arr.shape[2] == 16  # z padded 11 -> 16
    assert np.array_equal(crop.inner(arr), vol[crop.slices])
    pad = np.ones(arr.shape, bool)
    pad[tuple(slice(p0, s - p1) for (p0, p1), s in zip(crop.pad, arr.shape, strict=True))] = 0
    assert pad.any() and not arr[pad].any()  # the padding is zeros


def test_lesion_crops_cover_every_lesion_and_merge_clusters():
    mask = np.zeros((40, 40, 20), bool)
    mask[5:7, 5:7, 5:7] = True
    mask[9:11, 5:7, 5:7] = True  # close to the first: merged
    mask[30:33, 30:33, 12:15] = True  # far: its own crop
    crops = lesion_crops(mask, margin=3, min_size=(8, 8, 8), divisor=(8, 8, 1))
    assert len(crops) == 2
    covered = np.zeros(mask.shape, bool)
    for c in crops:
        covered[c.slices] = True
        assert c.shape[0] % 8 == 0 and c.shape[1] % 8 == 0 and c.shape[2] >= 8
    assert covered[mask].all()


@pytest.mark.parametrize(
    ("nz", "window", "overlap"), [(8, 8, 4), (13, 8, 4), (20, 6, 2), (9, 4, 0)]
)
def test_windows_cover_and_blend_to_identity(nz, window, overlap):
    starts = z_windows(nz, window, overlap)
    w = blend_weights(window, overlap)
    acc = np.zeros(nz)
    norm = np.zeros(nz)
    signal = np.arange(nz, dtype=float)
    for s in starts:
        acc[s : s + window] += signal[s : s + window] * w
        norm[s : s + window] += w
    assert (norm > 0).all() and starts[-1] + window == nz
    assert np.allclose(acc / norm, signal)


def test_slices_round_trip():
    vol = np.random.default_rng(1).random((4, 5, 6))
    assert volume_to_slices(vol).shape == (6, 4, 5)
    assert np.array_equal(slices_to_volume(volume_to_slices(vol)), vol)


@pytest.mark.parametrize("arch", ["pseudo3d", "wdm3d"])
def test_training_example_matches_inference_inputs(arch):
    rng = np.random.default_rng(2)
    vol = _tissue(rng, (40, 40, 32))
    mask = np.zeros(vol.shape, bool)
    mask[18:22, 18:22, 14:18] = True
    pre = default_preprocessing(arch, ("mirror",))
    cfg = {"in_channels": 32 if arch == "wdm3d" else 4, "out_channels": 8 if arch == "wdm3d" else 1,
           "channels": [8, 16], "norm_num_groups": 4}  # fmt: skip
    ex = make_training_example(vol, mask, arch=arch, config=cfg, preprocessing=pre, rng=rng)
    n_cond = cfg["in_channels"] - (8 if arch == "wdm3d" else 1)
    assert ex.condition.shape[0] == n_cond
    assert ex.x0.shape[1:] == ex.condition.shape[1:]
    # The condition's voided image is x0 with the mask zeroed, exactly as inference builds it.
    if arch == "pseudo3d":
        m = ex.mask[0]
        assert torch.allclose(ex.condition[0], ex.x0[0] * (1 - m))
        assert torch.equal(ex.condition[1], m)
        assert m.sum() > 0
    x0, cond = to_network(arch, np.zeros((16, 16, 16), np.float32), np.zeros((16, 16, 16)), [])
    assert cond.shape[0] == (16 if arch == "wdm3d" else 2)
    # Unconditional configs get no condition channels.
    cfg["in_channels"] = 8 if arch == "wdm3d" else 1
    pre["extras"] = []
    ex = make_training_example(vol, mask, arch=arch, config=cfg, preprocessing=pre, rng=rng)
    assert ex.condition.shape[0] == 0


def test_preparation_inverse_undoes_forward():
    rng = np.random.default_rng(3)
    vol = _tissue(rng, (30, 30, 20))
    mask = np.zeros(vol.shape, bool)
    mask[12:16, 12:16, 8:11] = True
    ref = tissue_reference(vol, mask)
    pre = default_preprocessing("pseudo3d")
    for zooms in ((1.0, 1.0, 1.0), (1.2, 1.2, 1.5)):
        grid = crop_grids(mask, zooms, Preprocessing.coerce(pre), (8, 8, 1), (16, 16, 8))[0]
        sl = grid.crop.slices
        prep = Preparation.fit(vol[sl], mask[sl], grid, arch="pseudo3d", preprocessing=pre,
                               reference=ref)  # fmt: skip
        x0, cond = prep.forward()
        assert x0.shape[1:] == cond.shape[1:] and cond.shape[0] == 2
        back = prep.inverse(prep.from_network(x0[None]))
        tol = 1e-3 * np.abs(vol).max() if grid.model_shape is None else 0.2 * np.abs(vol).max()
        assert back.shape == vol[sl].shape and np.abs(back - vol[sl]).mean() < tol
    # A residual model: a zero correction is the prefill, bit for bit.
    pre_r = default_preprocessing("pseudo3d", ("prefill",), residual=True)
    prefill = np.where(mask, 100.0, vol).astype(np.float32)
    crop = CropGrid.native(lesion_crops(mask, 3, (16, 16, 8), (8, 8, 1))[0])
    sl = crop.crop.slices
    prep = Preparation.fit(vol[sl], mask[sl], crop, arch="pseudo3d", preprocessing=pre_r,
                           reference=ref, extras=[prefill[sl]])  # fmt: skip
    assert np.array_equal(prep.inverse(np.zeros(prep.image.shape, np.float32)), prefill[sl])
