"""Validation during training: fill held-out lesions exactly as inference does, and score.

Each case is a held-out healthy volume with a fixed synthetic mask. The model fills it
through :func:`bidsfill.diffusion.inference.inpaint_volume` (the code behind
``bidsfill --method pseudo3d``), so the numbers are the ones a user would get; the
classical ``nawm`` filler is scored once on the same cases as the bar to beat. The
cases include a scan with skull and rescaled intensities, so the scores also show
whether the known-tissue normalisation holds with skull in the field of view and at
another scanner scale.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from bidsfill.diffusion.card import ModelCard
from bidsfill.train.dataset import InpaintingDataset, TrainVolume

__all__ = ["ValidationCase", "make_cases", "masked_psnr", "masked_ssim", "score_fill", "validate"]

LOGGER = logging.getLogger("bidsfill.train")


@dataclass(frozen=True)
class ValidationCase:
    """A held-out volume, a fixed lesion mask on it, and its name."""

    name: str
    volume: TrainVolume
    mask: np.ndarray


def make_cases(
    volumes: list[TrainVolume],
    dataset_factory: Any,
    per_volume: int = 2,
    seed: int = 12345,
) -> list[ValidationCase]:
    """Fixed validation masks: ``per_volume`` draws of the training mask generator each.

    Args:
        volumes: held-out volumes.
        dataset_factory: ``f(volumes, seed) -> InpaintingDataset`` (no augmentation), so
            validation masks come from the same generator as training masks.
        per_volume: masks per volume.
        seed: seed of the draws (independent of the training seed).
    """
    cases = []
    for vol in volumes:
        ds: InpaintingDataset = dataset_factory([vol], seed)
        for j in range(per_volume):
            _, crop, region_mask = ds._draw(j)
            full = np.zeros(vol.image.shape, dtype=bool)
            full[crop.slices] = crop.inner(region_mask)
            full &= vol.image > 0
            if full.sum() >= 2:
                cases.append(ValidationCase(f"{vol.name}#{j}", vol, full))
    return cases


def masked_psnr(truth: np.ndarray, filled: np.ndarray, mask: np.ndarray) -> float:
    """PSNR inside the mask, with the peak taken as the truth's 99.5th percentile in the brain.

    Using a brain-wide peak instead of the masked range keeps the number comparable
    across lesions and intensity scales.
    """
    peak = float(np.percentile(truth[truth > 0], 99.5))
    mse = float(np.mean((truth[mask] - filled[mask]) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(peak**2 / mse)


def masked_ssim(truth: np.ndarray, filled: np.ndarray, mask: np.ndarray) -> float:
    """Mean 3D SSIM over the mask's voxels, computed in the mask's bounding box (+3)."""
    from skimage.metrics import structural_similarity

    idx = np.argwhere(mask)
    lo = np.maximum(idx.min(0) - 3, 0)
    hi = np.minimum(idx.max(0) + 4, mask.shape)
    sl = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    peak = float(np.percentile(truth[truth > 0], 99.5))
    t, f, m = truth[sl] / peak, filled[sl] / peak, mask[sl]
    win = max(3, min(7, *[s for s in t.shape if s >= 3]) // 2 * 2 + 1) if min(t.shape) >= 3 else 3
    if min(t.shape) < win:
        t, f, m = (np.pad(a, [(0, max(0, win - s)) for s in a.shape]) for a in (t, f, m))
    _, smap = structural_similarity(t, f, data_range=1.0, full=True, win_size=win)
    return float(smap[m.astype(bool)].mean())


def score_fill(case: ValidationCase, filled: np.ndarray) -> dict[str, float]:
    """Masked PSNR and SSIM of a filled volume against the healthy truth."""
    truth = case.volume.image
    return {
        "psnr": masked_psnr(truth, filled, case.mask),
        "ssim": masked_ssim(truth, filled, case.mask),
    }


def classical_scores(cases: list[ValidationCase], method: str = "nawm") -> list[dict[str, float]]:
    """Scores of a classical filler (through :func:`bidsfill.fill.fill_image`) per case."""
    from bidsfill.fill import fill_image

    out = []
    for case in cases:
        res = fill_image(
            case.volume.image, case.mask, method=method, zooms=case.volume.zooms, seed=0
        )
        out.append(score_fill(case, res.filled))
    return out


@torch.no_grad()
def validate(
    net: torch.nn.Module,
    card: ModelCard | dict[str, Any],
    cases: list[ValidationCase],
    *,
    steps: int = 10,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> list[dict[str, float]]:
    """Fill every case with the model (DDIM, ``steps`` steps) and score it."""
    from bidsfill.diffusion.inference import inpaint_volume
    from bidsfill.fill.prefill import classical_prefill

    was_training = net.training
    net.eval()
    scores = []
    for case in cases:
        out = inpaint_volume(
            case.volume.image,
            case.mask,
            net,
            card,
            sampler="ddim",
            steps=steps,
            seed=seed,
            device=device,
            extra_images=case.volume.extras or None,
            zooms=case.volume.zooms,
            prefill=classical_prefill,
        )
        filled = np.where(case.mask, out.mean, case.volume.image)
        scores.append(score_fill(case, filled))
    net.train(was_training)
    return scores
