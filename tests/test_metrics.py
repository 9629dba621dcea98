"""Evaluation metrics against values computed by hand on small arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bidsfill.evaluate.metrics import (
    brats_metrics,
    brats_normalize,
    dice,
    edge_band,
    image_metrics,
    psnr,
    ssim_map,
    tissue_metrics,
)


def test_brats_normalize_uses_voided_percentiles():
    voided = np.arange(201, dtype=np.float32)  # p0.5 = 1, p99.5 = 199 (linear interpolation)
    image = np.array([0.0, 1.0, 100.0, 199.0, 500.0])
    out = brats_normalize(image, voided)
    np.testing.assert_allclose(out, [0.0, 0.0, 99 / 198, 1.0, 1.0])
    # The lower bound is raised to 0 for negative data ("strictly positive").
    out = brats_normalize(np.array([-50.0, 50.0]), np.arange(-100, 101, dtype=np.float32))
    v_max = np.percentile(np.arange(-100, 101), 99.5)
    np.testing.assert_allclose(out, [0.0, 50 / v_max])


def test_ssim_of_constant_images_by_hand():
    a = np.full((4, 12, 12), 0.5)
    b = np.full((4, 12, 12), 0.25)
    c1 = (0.01 * 1.0) ** 2
    expected = (2 * 0.5 * 0.25 + c1) / (0.5**2 + 0.25**2 + c1)  # variances are 0
    np.testing.assert_allclose(ssim_map(a, b, data_range=1.0), expected)
    np.testing.assert_allclose(ssim_map(a, a, data_range=1.0), 1.0)


def test_challenge_ssim_is_2d_per_first_axis_slice():
    rng = np.random.default_rng(0)
    target = rng.uniform(0, 1, (6, 16, 16))
    pred = target.copy()
    pred[2] = rng.uniform(0, 1, (16, 16))  # only slice 2 differs
    two_d = ssim_map(pred, target, spatial_dims=2)
    three_d = ssim_map(pred, target, spatial_dims=3)
    np.testing.assert_allclose(two_d[[0, 1, 3, 4, 5]], 1.0)  # slices never mix in 2D
    assert two_d[2].mean() < 0.5
    assert three_d[1].mean() < 0.999 and three_d[3].mean() < 0.999  # 3D windows do mix


def test_psnr_by_hand():
    target = np.array([0.0, 0.5, 1.0, 2.0])
    pred = np.array([0.0, 0.5, 1.0, 1.0])  # MSE = 1/4
    assert psnr(pred, target) == pytest.approx(10 * math.log10(2.0**2 / 0.25))
    assert psnr(pred, target, data_range=1.0) == pytest.approx(10 * math.log10(1 / 0.25))
    assert psnr(target, target) == math.inf


def _scene():
    truth = np.zeros((12, 12, 12))
    truth[2:10, 2:10, 2:10] = 100.0
    truth[4:8, 4:8, 4:8] = 60.0
    mask = np.zeros(truth.shape, bool)
    mask[5:7, 5:7, 5:7] = True
    return truth, mask


def test_brats_mse_and_psnr_by_hand():
    truth, mask = _scene()
    filled = truth.copy()
    filled[mask] = 80.0
    # Voided image: truth with the mask at 0; its 0.5/99.5 percentiles are 0 and 100.
    lo, hi = np.percentile(np.where(mask, 0, truth).astype(np.float32), [0.5, 99.5])
    assert (max(lo, 0), hi) == (0.0, 100.0)
    result = brats_metrics(truth, filled, mask)
    assert result["brats_mse"] == pytest.approx((0.8 - 0.6) ** 2)
    # The masked truth is all 0.6: its range is 0, so the default PSNR is -inf (torchmetrics).
    assert result["brats_psnr"] == -math.inf
    assert result["brats_psnr_01"] == pytest.approx(10 * math.log10(1 / 0.04))
    assert 0 < result["brats_ssim"] < 1


def test_identical_is_perfect_and_voided_is_bad():
    rng = np.random.default_rng(1)
    truth = rng.uniform(20, 100, (16, 16, 16))
    mask = np.zeros(truth.shape, bool)
    mask[5:11, 5:11, 5:11] = True
    perfect = image_metrics(truth, truth.copy(), mask)
    assert perfect["brats_ssim"] == pytest.approx(1.0)
    assert perfect["ssim3d"] == pytest.approx(1.0) and perfect["band_ssim3d"] == pytest.approx(1.0)
    assert perfect["brats_mse"] == 0 and perfect["mae"] == 0 and perfect["band_mse"] == 0
    assert perfect["brats_psnr"] == math.inf and perfect["brats_psnr_01"] == math.inf
    voided = np.where(mask, 0.0, truth)
    bad = image_metrics(truth, voided, mask)
    assert bad["brats_ssim"] < 0.1 and bad["ssim3d"] < 0.5
    assert bad["brats_psnr_01"] < 10 and bad["mae"] > 0.3
    assert 0 < bad["band_mse"] < bad["brats_mse"]  # half the band is outside the mask


def test_edge_band_and_dice():
    mask = np.zeros((12, 12, 12), bool)
    mask[3:9, 3:9, 3:9] = True
    band = edge_band(mask, 2)
    assert band[3, 6, 6] and band[2, 6, 6] and band[1, 6, 6] and not band[0, 6, 6]
    assert band[4, 6, 6] and not band[5, 6, 6]  # 2 voxels inside the edge, not 3
    a = np.zeros(10, bool)
    b = np.zeros(10, bool)
    a[:4] = True
    b[2:8] = True
    assert dice(a, b) == pytest.approx(2 * 2 / (4 + 6))
    assert math.isnan(dice(np.zeros(3, bool), np.zeros(3, bool)))


def test_tissue_metrics_with_a_given_segmenter():
    from bidsfill.segment import Segmentation

    def threshold_segmenter(image, affine, *, brain_mask, seed):
        dseg = np.zeros(image.shape, np.uint8)
        dseg[brain_mask & (image < 40)] = 3
        dseg[brain_mask & (image >= 40) & (image < 80)] = 1
        dseg[brain_mask & (image >= 80)] = 2
        return Segmentation(dseg=dseg, probseg={}, segmenter="threshold")

    truth = np.full((10, 10, 10), 100.0)  # all WM
    mask = np.zeros(truth.shape, bool)
    mask[2:4, 2:4, 2:4] = True  # 8 voxels
    filled = truth.copy()
    filled[2:4, 2:4, 2] = 60.0  # 4 voxels become GM
    affine = np.diag([2.0, 2.0, 2.0, 1.0])  # 8 mm^3 voxels
    out = tissue_metrics(
        truth, filled, mask, affine, brain_mask=np.ones_like(mask), segment=threshold_segmenter
    )
    assert out["dice_WM"] == pytest.approx(2 * 4 / (8 + 4))
    assert out["dice_GM"] == pytest.approx(0.0)
    assert math.isnan(out["dice_CSF"])
    assert out["vol_diff_ml_GM"] == pytest.approx(4 * 8 / 1000)
    assert out["vol_diff_ml_WM"] == pytest.approx(-4 * 8 / 1000)
    assert out["vol_diff_pct_WM"] == pytest.approx(-100 * 4 / 1000)


def test_tissue_metrics_with_the_workflow_segmenter():
    from conftest import phantom

    truth = phantom(0)
    mask = np.zeros(truth.shape, bool)
    mask[10:14, 8:12, 10:14] = True
    out = tissue_metrics(truth, truth.copy(), mask, np.eye(4), seed=0)
    assert out["segmenter"] in {"ants-atropos", "fsl-fast"}
    present = [out[f"dice_{t}"] for t in ("GM", "WM", "CSF") if not math.isnan(out[f"dice_{t}"])]
    assert present and all(d == pytest.approx(1.0) for d in present)
    assert all(out[f"vol_diff_ml_{t}"] == 0 for t in ("GM", "WM", "CSF"))
