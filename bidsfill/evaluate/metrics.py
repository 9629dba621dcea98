"""Fill quality: BraTS 2023 inpainting metrics, 3D SSIM, edge-band metrics, tissue Dice.

The ``brats_*`` numbers reproduce the BraTS 2023 "local synthesis" (inpainting) challenge
evaluation (package ``BraTS-inpainting/inpainting``, ``challenge_metrics_2023.py``), so
they compare with the papers that report it (Durrer et al. Table 2):

1. Both the prediction and the ground truth are multiplied by the mask, then clipped to
   the 0.5 and 99.5 percentiles of the *voided* image (ground truth with the mask set to
   0, every voxel of the volume counted, background included; the lower bound is raised
   to 0) and scaled to [0, 1].
2. SSIM is torchmetrics' ``StructuralSimilarityIndexMeasure`` on a tensor shaped
   ``(1, X, Y, Z)``: torchmetrics reads that as (N, C, H, W), so it is a **2D SSIM of
   every sagittal slice (the first array axis is taken as channels)**, Gaussian window
   11 / sigma 1.5, reflect padding, ``data_range = max(range(pred), range(gt))`` of the
   masked images, and the SSIM map is averaged over the mask voxels.
3. MSE over the mask voxels; PSNR = 10 log10(R^2 / MSE) with R the range (max - min) of
   the masked ground-truth voxels (torchmetrics' default), and ``psnr_01`` with R = 1.

torchmetrics is not a dependency; the arithmetic is written out here with scipy and
checked in the tests against values computed by hand.

Beyond the challenge: ``ssim3d`` (a true 3D Gaussian SSIM on the normalised, *unmasked*
images, so its windows see the real context, averaged over the mask), ``mae``, and the
same metrics in a band of +-2 voxels around the mask edge, where seams show. Tissue
metrics segment the truth and the filled image with the workflow's segmenter
(:func:`bidsfill.segment.segment_tissues`) and report the Dice of GM/WM/CSF inside the
mask (Durrer Table 3) and whole-brain tissue-volume differences.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import ndimage

__all__ = [
    "TISSUES",
    "brats_metrics",
    "brats_normalize",
    "dice",
    "edge_band",
    "evaluate_fill",
    "image_metrics",
    "psnr",
    "ssim_map",
    "tissue_metrics",
]

TISSUES: dict[str, int] = {"GM": 1, "WM": 2, "CSF": 3}


def brats_normalize(
    image: np.ndarray, voided: np.ndarray, p_min: float = 0.5, p_max: float = 99.5
) -> np.ndarray:
    """Clip ``image`` to percentiles of ``voided`` (lower bound at least 0), scale to [0, 1]."""
    v_min, v_max = np.percentile(np.asarray(voided, dtype=np.float32), [p_min, p_max])
    v_min = max(float(v_min), 0.0)
    v_max = float(v_max)
    if v_max <= v_min:
        raise ValueError("the voided image has no intensity range to normalise with")
    return (np.clip(np.asarray(image, dtype=np.float64), v_min, v_max) - v_min) / (v_max - v_min)


def _gaussian_1d(kernel_size: int, sigma: float) -> np.ndarray:
    # torchmetrics' _gaussian: offsets (1-k)/2 .. (k-1)/2, normalised to sum 1.
    dist = np.arange((1 - kernel_size) / 2, (1 + kernel_size) / 2, 1.0)
    gauss = np.exp(-((dist / sigma) ** 2) / 2)
    return gauss / gauss.sum()


def ssim_map(
    pred: np.ndarray,
    target: np.ndarray,
    *,
    spatial_dims: int = 2,
    data_range: float | None = None,
    kernel_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> np.ndarray:
    """Voxelwise SSIM with a Gaussian window, as torchmetrics computes it.

    Args:
        pred: prediction, 3D.
        target: reference, 3D.
        spatial_dims: 2 filters the last two axes only (each slice along the first axis
            on its own: the BraTS 2023 challenge SSIM); 3 filters all three axes.
        data_range: dynamic range L in C1 = (k1 L)^2, C2 = (k2 L)^2; by default
            ``max(range(pred), range(target))`` as torchmetrics does.
        kernel_size: Gaussian window size.
        sigma: Gaussian window standard deviation in voxels.
        k1: SSIM constant.
        k2: SSIM constant.

    Returns:
        The SSIM map, shaped like the inputs.
    """
    pred = np.asarray(pred, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if pred.shape != target.shape or pred.ndim != 3:
        raise ValueError("pred and target must be 3D arrays of the same shape")
    if spatial_dims not in (2, 3):
        raise ValueError("spatial_dims must be 2 or 3")
    if data_range is None:
        data_range = max(np.ptp(pred), np.ptp(target))
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    kernel = _gaussian_1d(kernel_size, sigma)
    axes = (1, 2) if spatial_dims == 2 else (0, 1, 2)

    def blur(x: np.ndarray) -> np.ndarray:
        # torch's "reflect" padding is scipy's "mirror" (the edge voxel is not repeated).
        for axis in axes:
            x = ndimage.correlate1d(x, kernel, axis=axis, mode="mirror")
        return x

    mu_p, mu_t = blur(pred), blur(target)
    var_p = blur(pred * pred) - mu_p**2
    var_t = blur(target * target) - mu_t**2
    cov = blur(pred * target) - mu_p * mu_t
    return ((2 * mu_p * mu_t + c1) * (2 * cov + c2)) / (
        (mu_p**2 + mu_t**2 + c1) * (var_p + var_t + c2)
    )


def psnr(pred: np.ndarray, target: np.ndarray, data_range: float | None = None) -> float:
    """PSNR in dB; ``data_range`` defaults to the target's max - min (torchmetrics)."""
    pred = np.asarray(pred, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    mse = float(np.mean((pred - target) ** 2))
    if data_range is None:
        data_range = float(target.max() - target.min())
    if mse == 0.0:
        return math.inf
    if data_range == 0.0:
        return -math.inf
    return 10.0 * math.log10(data_range**2 / mse)


def _check(truth: np.ndarray, filled: np.ndarray, mask: np.ndarray):
    truth = np.asarray(truth, dtype=np.float64)
    filled = np.asarray(filled, dtype=np.float64)
    mask = np.asarray(mask).astype(bool)
    if truth.shape != filled.shape or truth.shape != mask.shape or truth.ndim != 3:
        raise ValueError("truth, filled and mask must be 3D arrays of the same shape")
    if not mask.any():
        raise ValueError("the mask is empty; there is nothing to evaluate")
    return truth, filled, mask


def brats_metrics(truth: np.ndarray, filled: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """The BraTS 2023 inpainting metrics inside ``mask`` (see the module docstring).

    Args:
        truth: ground-truth image (healthy tissue under the mask).
        filled: the filled image.
        mask: the region that was filled.

    Returns:
        ``brats_ssim``, ``brats_mse``, ``brats_psnr`` (range of the masked ground truth)
        and ``brats_psnr_01`` (range 1).
    """
    truth, filled, mask = _check(truth, filled, mask)
    voided = np.where(mask, 0.0, truth)
    gt = brats_normalize(truth * mask, voided)
    out = brats_normalize(filled * mask, voided)
    ssim = ssim_map(out, gt, spatial_dims=2)
    return {
        "brats_ssim": float(ssim[mask].mean()),
        "brats_mse": float(np.mean((out[mask] - gt[mask]) ** 2)),
        "brats_psnr": psnr(out[mask], gt[mask]),
        "brats_psnr_01": psnr(out[mask], gt[mask], data_range=1.0),
    }


def edge_band(mask: np.ndarray, width: int = 2) -> np.ndarray:
    """Voxels within ``width`` voxels (6-connected steps) of the mask edge, on both sides."""
    mask = np.asarray(mask).astype(bool)
    outer = ndimage.binary_dilation(mask, iterations=width)
    inner = ndimage.binary_erosion(mask, iterations=width, border_value=1)
    return outer & ~inner


def image_metrics(
    truth: np.ndarray, filled: np.ndarray, mask: np.ndarray, *, band_width: int = 2
) -> dict[str, float]:
    """BraTS metrics plus 3D SSIM, MAE and the same metrics in the edge band.

    The non-BraTS metrics use the whole images normalised with the BraTS rule (voided
    image percentiles), not the mask-multiplied ones, so windows see the real context.

    Args:
        truth: ground-truth image.
        filled: the filled image.
        mask: the filled region.
        band_width: half-width in voxels of the band around the mask edge.
    """
    truth, filled, mask = _check(truth, filled, mask)
    result: dict[str, float] = dict(brats_metrics(truth, filled, mask))
    voided = np.where(mask, 0.0, truth)
    gt = brats_normalize(truth, voided)
    out = brats_normalize(filled, voided)
    ssim3 = ssim_map(out, gt, spatial_dims=3, data_range=1.0)
    band = edge_band(mask, band_width)
    result["ssim3d"] = float(ssim3[mask].mean())
    result["mae"] = float(np.mean(np.abs(out[mask] - gt[mask])))
    result["band_ssim3d"] = float(ssim3[band].mean())
    result["band_mae"] = float(np.mean(np.abs(out[band] - gt[band])))
    result["band_mse"] = float(np.mean((out[band] - gt[band]) ** 2))
    result["band_psnr"] = psnr(out[band], gt[band])
    result["band_psnr_01"] = psnr(out[band], gt[band], data_range=1.0)
    result["mask_voxels"] = float(mask.sum())
    return result


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice coefficient 2|A&B|/(|A|+|B|); NaN when both are empty (nothing to compare)."""
    a = np.asarray(a).astype(bool)
    b = np.asarray(b).astype(bool)
    total = int(a.sum()) + int(b.sum())
    if total == 0:
        return math.nan
    return 2.0 * int((a & b).sum()) / total


def tissue_metrics(
    truth: np.ndarray,
    filled: np.ndarray,
    mask: np.ndarray,
    affine: np.ndarray,
    *,
    seed: int = 0,
    brain_mask: np.ndarray | None = None,
    segment: Callable[..., Any] | None = None,
) -> dict[str, Any]:
    """Segment truth and filled image alike; Dice inside the mask and volume differences.

    Args:
        truth: ground-truth image.
        filled: the filled image.
        mask: the filled region.
        affine: voxel-to-world affine (voxel volume, brain extraction).
        seed: segmentation seed.
        brain_mask: brain mask used for both segmentations; estimated from the truth
            when None, so both images are segmented in the same voxels.
        segment: segmentation function (default :func:`bidsfill.segment.segment_tissues`).

    Returns:
        ``dice_GM``/``dice_WM``/``dice_CSF`` inside the mask, ``vol_truth_ml_X``,
        ``vol_filled_ml_X``, ``vol_diff_ml_X`` (filled - truth) and ``vol_diff_pct_X``
        over the whole brain, and ``segmenter``.
    """
    truth, filled, mask = _check(truth, filled, mask)
    if segment is None:
        from bidsfill.segment import segment_tissues as segment
    if brain_mask is None:
        from bidsfill.segment import estimate_brain_mask

        brain_mask, _ = estimate_brain_mask(truth.astype(np.float32), affine, seed=seed)
    seg_truth = segment(truth.astype(np.float32), affine, brain_mask=brain_mask, seed=seed)
    seg_filled = segment(filled.astype(np.float32), affine, brain_mask=brain_mask, seed=seed)
    voxel_ml = float(abs(np.linalg.det(np.asarray(affine)[:3, :3]))) / 1000.0
    result: dict[str, Any] = {"segmenter": seg_truth.segmenter}
    for name, label in TISSUES.items():
        in_truth, in_filled = seg_truth.dseg == label, seg_filled.dseg == label
        result[f"dice_{name}"] = dice(in_truth & mask, in_filled & mask)
        v_truth = float(in_truth.sum()) * voxel_ml
        v_filled = float(in_filled.sum()) * voxel_ml
        result[f"vol_truth_ml_{name}"] = v_truth
        result[f"vol_filled_ml_{name}"] = v_filled
        result[f"vol_diff_ml_{name}"] = v_filled - v_truth
        result[f"vol_diff_pct_{name}"] = (
            100.0 * (v_filled - v_truth) / v_truth if v_truth else math.nan
        )
    return result


def evaluate_fill(
    truth: np.ndarray,
    filled: np.ndarray,
    mask: np.ndarray,
    affine: np.ndarray | None = None,
    *,
    tissues: bool = True,
    seed: int = 0,
    band_width: int = 2,
    brain_mask: np.ndarray | None = None,
) -> dict[str, Any]:
    """All metrics of one filled image against its truth (tissues need ``affine``)."""
    result: dict[str, Any] = dict(image_metrics(truth, filled, mask, band_width=band_width))
    voxel_ml = 0.0 if affine is None else abs(np.linalg.det(np.asarray(affine)[:3, :3])) / 1000.0
    result["mask_ml"] = float(result["mask_voxels"] * voxel_ml) if affine is not None else math.nan
    if tissues:
        if affine is None:
            raise ValueError("tissue metrics need the image affine")
        result.update(tissue_metrics(truth, filled, mask, affine, seed=seed, brain_mask=brain_mask))
    return result
