"""The paper's Table-1 metrics inside the brain: SSIM, PSNR and MSE on [0, 1] images."""

from __future__ import annotations

import numpy as np

from bidsfill.evaluate.metrics import ssim_map

__all__ = ["synthesis_scores"]


def synthesis_scores(pred: np.ndarray, truth: np.ndarray, brain: np.ndarray) -> dict[str, float]:
    """MSE, PSNR (data range 1) and mean 3D SSIM (data range 1) over the brain voxels of
    normalised images (both in [0, 1]; the prediction is clipped to it)."""
    pred = np.clip(np.asarray(pred, dtype=np.float64), 0.0, 1.0)
    truth = np.asarray(truth, dtype=np.float64)
    brain = np.asarray(brain, bool)
    if not brain.any():
        raise ValueError("The brain mask is empty.")
    mse = float(np.mean((pred[brain] - truth[brain]) ** 2))
    psnr = float("inf") if mse == 0 else float(10 * np.log10(1.0 / mse))
    ssim = float(np.mean(ssim_map(pred, truth, spatial_dims=3, data_range=1.0)[brain]))
    return {"ssim": ssim, "psnr": psnr, "mse": mse}
