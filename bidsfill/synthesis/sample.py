"""Whole-volume synthesis: DDIM in sub-band space over overlapping crops.

The sampler is the engine's DDIM (:func:`bidsfill.diffusion.samplers.ddim_step`, the
same loop as :func:`~bidsfill.diffusion.samplers.sample_ddim`); conditioning is closed
over by concatenating the sources' sub-bands after x_t, as in the paper's Algorithm 1.
The starting noise x_T is drawn once for the whole volume (in sub-band space) and each
crop takes its part of it, so overlapping crops start from the same noise and agree
more; crops are blended with a linear ramp over the overlap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import product
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from bidsfill.diffusion.samplers import ddim_step, ddim_timesteps
from bidsfill.diffusion.wavelets import dwt3d, idwt3d
from bidsfill.synthesis.model import SynthesisCard
from bidsfill.synthesis.normalise import denormalise, normalise

__all__ = [
    "brain_foreground",
    "crop_starts",
    "synthesize",
    "synthesize_files",
    "synthesize_normalised",
]


def brain_foreground(sources: Sequence[np.ndarray]) -> np.ndarray:
    """Voxels inside the head/brain: any source above 1% of its normalised range."""
    return np.any([np.asarray(s) > 0.01 for s in sources], axis=0)


def crop_starts(size: int, crop: int, overlap: int, divisor: int) -> list[int]:
    """Starts of crops of length ``crop`` covering ``size`` with at least ``overlap``
    voxels shared; every start is a multiple of ``divisor`` (whole sub-band voxels)."""
    if crop >= size:
        return [0]
    step = max(divisor, (crop - overlap) // divisor * divisor)
    starts = list(range(0, size - crop, step))
    last = (size - crop) // divisor * divisor
    if last + crop < size:  # the padded volume is a multiple of divisor, so this is exact
        last += divisor
    return sorted(set(starts + [last]))


def _ramp(n: int, overlap: int) -> np.ndarray:
    r = np.ones(n, dtype=np.float32)
    k = min(overlap, n // 2)
    if k > 0:
        edge = (np.arange(k, dtype=np.float32) + 1) / (k + 1)
        r[:k], r[n - k:] = edge, edge[::-1]
    return r


@torch.no_grad()
def synthesize_normalised(
    model: torch.nn.Module,
    card: SynthesisCard,
    sources: Sequence[np.ndarray],
    *,
    steps: int | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    crop: Sequence[int] | None = None,
) -> np.ndarray:
    """The target in [0, 1] from normalised sources ``(X, Y, Z)`` each, in card order."""
    if len(sources) != len(card.sources):
        raise ValueError(f"The model takes {len(card.sources)} sources, got {len(sources)}.")
    shape = np.asarray(sources[0]).shape
    div = card.divisor
    padded = tuple(-(-s // div) * div for s in shape)
    cond = np.zeros((len(sources), *padded), dtype=np.float32)
    for i, src in enumerate(sources):
        cond[i, : shape[0], : shape[1], : shape[2]] = src
    crop = tuple(min(int(c) // div * div or div, p) for c, p in zip(crop or card.crop, padded, strict=False))
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    noise = torch.randn((8, *(p // 2 for p in padded)), generator=gen)
    out = np.zeros(padded, dtype=np.float32)
    weight = np.zeros(padded, dtype=np.float32)
    ts = ddim_timesteps(card.schedule.num_train_timesteps, int(steps or card.steps))
    model = model.to(device).eval()
    for start in product(*(crop_starts(p, c, card.overlap, div) for p, c in zip(padded, crop, strict=False))):
        sl = tuple(slice(s, s + c) for s, c in zip(start, crop, strict=False))
        half = tuple(slice(s // 2, (s + c) // 2) for s, c in zip(start, crop, strict=False))
        c_sub = dwt3d(torch.from_numpy(cond[(slice(None), *sl)])[None].to(device))
        x = noise[(slice(None), *half)][None].to(device)
        for i, t in enumerate(ts):
            t_prev = ts[i + 1] if i + 1 < len(ts) else -1
            tt = torch.full((1,), t, dtype=torch.long, device=device)
            pred = model(torch.cat([x, c_sub], dim=1), tt)
            x = ddim_step(card.schedule, pred, t, t_prev, x).prev_sample
        img = idwt3d(x, crop)[0, 0].float().cpu().numpy()
        w = np.einsum("i,j,k->ijk", *(_ramp(c, card.overlap) for c in crop))
        out[sl] += img * w
        weight[sl] += w
    result = out / np.maximum(weight, 1e-8)
    return np.clip(result[: shape[0], : shape[1], : shape[2]], 0.0, 1.0)


def synthesize(
    model: torch.nn.Module,
    card: SynthesisCard,
    sources: Mapping[str, np.ndarray],
    *,
    steps: int | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """The target contrast in scanner-like units from raw source images on one grid.

    Each source is normalised on its own (:mod:`.normalise`); the output is 0 outside the
    sources' foreground and in the card's reference range of the target inside it.
    """
    missing = [c for c in card.sources if c not in sources]
    if missing:
        raise ValueError(f"The model needs the source contrast(s) {missing}.")
    norm = [normalise(sources[c], percentiles=card.percentiles)[0] for c in card.sources]
    y = synthesize_normalised(model, card, norm, steps=steps, seed=seed, device=device)
    return np.where(brain_foreground(norm), denormalise(y, card.target_range), 0.0).astype(np.float32)


def synthesize_files(
    model_path: str | Path,
    sources: Mapping[str, str | Path],
    out_file: str | Path,
    *,
    steps: int | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> SynthesisCard:
    """Synthesise from source NIfTI files on one grid and write the target on that grid
    (float32, the first source's affine and header geometry); return the model's card."""
    from bidsfill.synthesis.model import load_synthesis_model

    model, card = load_synthesis_model(model_path, device=device)
    imgs = {c: nib.load(str(sources[c])) for c in card.sources if c in sources}
    ref = imgs[card.sources[0]] if card.sources[0] in imgs else None
    if ref is None or len(imgs) < len(card.sources):
        raise ValueError(f"The model needs the source contrast(s) {list(card.sources)}.")
    for c, img in imgs.items():
        if img.shape[:3] != ref.shape[:3] or not np.allclose(img.affine, ref.affine, atol=1e-3):
            raise ValueError(f"{c} is not on the {card.sources[0]} grid; cWDM needs "
                             "co-registered sources on one grid.")  # fmt: skip
    arrays = {c: img.get_fdata(dtype=np.float32) for c, img in imgs.items()}
    out = synthesize(model, card, arrays, steps=steps, seed=seed, device=device)
    header = ref.header.copy()
    header.set_data_dtype(np.float32)
    header.set_slope_inter(1.0, 0.0)
    nib.save(nib.Nifti1Image(out.astype(np.float32), ref.affine, header), str(out_file))
    return card
