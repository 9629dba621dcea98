"""Adapt a diffusion model to one scan before it fills that scan (``--adapt-steps N``).

The scan's own healthy tissue is training data no other scan can give: its contrast,
noise, bias field and anatomy. A copy of the model is fine-tuned for N steps on it: each
example moves one of the scan's own lesion components to a random place in healthy
tissue (never touching the real lesions), so the model practises on lesion shapes and
sizes like the ones it will fill, where the truth is known. Examples are built by
:func:`~bidsfill.diffusion.examples.make_training_example`, the code training uses, and
the loss is the training loss; the shipped weights are never modified.

Everything is drawn from generators seeded with ``seed``, so the adapted model, and the
fill, are the same for the same seed on the same device.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from bidsfill.diffusion.card import ModelCard
from bidsfill.diffusion.conditioning import hide_reflected_mask
from bidsfill.diffusion.crops import lesion_components
from bidsfill.diffusion.examples import make_training_example
from bidsfill.diffusion.intensity import TissueReference, tissue_reference
from bidsfill.diffusion.objective import sample_timesteps, weighted_loss

__all__ = ["adapt_model", "draw_adaptation_region"]

LOGGER = logging.getLogger("bidsfill.diffusion")

#: Fine-tuning settings: a small learning rate keeps the model near what it learnt from
#: many brains; the loss weighs voxels outside the mask as training does.
ADAPT_LR = 5e-5
ADAPT_BATCH = 2
OUTSIDE_WEIGHT = 0.1


def draw_adaptation_region(
    image: np.ndarray,
    lesions: np.ndarray,
    tissue: np.ndarray,
    components: list[np.ndarray],
    region: tuple[int, int, int],
    rng: np.random.Generator,
    attempts: int = 50,
) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int]] | None:
    """One (image region, mask) with a lesion-shaped mask in healthy tissue.

    Args:
        image: the scan, on the model's grid.
        lesions: the real lesions grown by a margin: no region may touch them.
        tissue: voxels where a moved lesion may sit (healthy brain tissue).
        components: the scan's own lesion components, each cut to its bounding box.
        region: size of the region returned.
        rng: the random generator (seeded by the caller).

    Returns:
        ``(region image, region mask, the region's first voxel)``, or None when no
        place was found.
    """
    candidates = np.argwhere(tissue)
    if not len(candidates) or not components:
        return None
    size = np.array(region)
    for _ in range(attempts):
        shape = components[int(rng.integers(len(components)))]
        if rng.random() < 0.5:
            shape = shape[::-1]  # left-right mirrored: more shapes from few lesions
        centre = candidates[int(rng.integers(len(candidates)))]
        lo = centre - size // 2
        if np.any(lo < 0) or np.any(lo + size > image.shape):
            continue
        box = tuple(slice(a, a + s) for a, s in zip(lo, size, strict=True))
        if lesions[box].any():
            continue
        mask = np.zeros(region, dtype=bool)
        sub = shape[tuple(slice(0, min(a, b)) for a, b in zip(shape.shape, size, strict=True))]
        start = (size - np.array(sub.shape)) // 2
        mask[tuple(slice(a, a + s) for a, s in zip(start, sub.shape, strict=True))] = sub
        mask &= tissue[box]
        if mask.sum() >= 2:
            return np.asarray(image[box], dtype=np.float32), mask, tuple(int(v) for v in lo)
    return None


def adapt_model(
    net: torch.nn.Module,
    card: ModelCard | dict[str, Any],
    image: np.ndarray,
    mask: np.ndarray,
    *,
    steps: int,
    seed: int = 0,
    device: torch.device | str = "cpu",
    zooms: tuple[float, float, float] = (1.0, 1.0, 1.0),
    reference: TissueReference | None = None,
    prefill: Any = None,
    mirror: np.ndarray | None = None,
    reflection: Any = None,
) -> torch.nn.Module:
    """A copy of ``net`` fine-tuned for ``steps`` steps on the scan's healthy tissue.

    Args:
        net: the loaded model (left untouched).
        card: its model card (architecture, config, schedule, preprocessing).
        image: the scan (scanner units), ``(X, Y, Z)``, on the model's grid.
        mask: its lesion mask (the voxels that will be filled; never trained on).
        steps: optimisation steps (0 returns ``net`` itself).
        seed: seed of every draw (regions, noise, timesteps).
        device: where to train.
        zooms: voxel size (mm) for the classical prefill.
        reference: the scan's tissue landmarks (computed when None).
        prefill: the classical filler of a residual model's "prefill" channel
            (``inference.PrefillFn``), applied to every drawn example.
        mirror: a "mirror" model's channel on the same grid, as its fill sees it.
        reflection: the plane of ``mirror`` on this grid
            (:class:`bidsfill.segment.midline.GridReflection`), to hide each drawn mask's
            reflection as training did (cards with ``mirror_hides_mask``).
    """
    if steps <= 0:
        return net
    device = torch.device(device)
    card = ModelCard.coerce(card)
    pre, schedule = card.preprocessing, card.schedule
    image = np.asarray(image, dtype=np.float32)
    mask = np.asarray(mask, dtype=bool)
    if reference is None:
        reference = tissue_reference(image, mask, pre.intensity.percentiles)
    labels = lesion_components(mask)
    components = [labels[sl] == i for i, sl in enumerate(ndimage.find_objects(labels), 1)]
    lesions = ndimage.binary_dilation(mask, iterations=3)
    tissue = (image > reference.floor) & ~lesions
    # Moved lesions sit in tissue, not at its edge: the region must be mostly brain.
    tissue &= ndimage.binary_erosion(tissue, iterations=3)
    patch = [int(p) for p in pre.patch_size]
    region = (patch[0] + 16, patch[1] + 16, max(patch[2] + 8, 16))
    extras = list(pre.extras)
    if set(extras) - {"prefill", "mirror"}:
        LOGGER.warning("No adaptation: the model needs contrasts (%s) it cannot draw here.", extras)
        return net
    if "prefill" in extras and prefill is None:
        raise ValueError("This model corrects a classical prefill: pass prefill= to adapt it.")
    if "mirror" in extras and (mirror is None or (pre.mirror_hides_mask and reflection is None)):
        raise ValueError("This model sees the contralateral side: pass mirror= (and "
                         "reflection= for a card that hides the mask's reflection).")
    rng = np.random.default_rng([int(seed), 41])
    gen = torch.Generator().manual_seed(int(seed))
    model = copy.deepcopy(net).to(device)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=ADAPT_LR)
    # Timesteps drawn as the model's own training drew them (its card records how).
    hyper = card.training.get("hyperparameters", {})
    high = float(hyper.get("high_t_fraction") or 0.0)
    span = float(hyper.get("high_t_span") or 0.1)
    T = schedule.num_train_timesteps
    with torch.enable_grad():
        for _step in range(int(steps)):
            batch = []
            for _ in range(ADAPT_BATCH):
                drawn = draw_adaptation_region(image, lesions, tissue, components, region, rng)
                if drawn is None:
                    LOGGER.warning("No healthy place for adaptation examples; not adapted.")
                    return net
                img_r, mask_r, origin = drawn
                extra = {}
                if "prefill" in extras:
                    extra["prefill"] = prefill(img_r, mask_r, zooms, pre.prefill)
                if "mirror" in extras:
                    box = tuple(slice(o, o + n) for o, n in zip(origin, region, strict=True))
                    extra["mirror"] = mirror[box]
                    if pre.mirror_hides_mask:
                        extra["mirror"] = hide_reflected_mask(
                            extra["mirror"], extra["prefill"], reflection.in_box(mask_r, origin))
                batch.append(
                    make_training_example(
                        img_r,
                        mask_r,
                        arch=card.spec,
                        config=card.config,
                        preprocessing=pre,
                        rng=rng,
                        extra_images=extra,
                        reference=reference,
                        z_frame=(origin[2], image.shape[2]),
                    )  # fmt: skip
                )
            x0 = card.spec.encode(model, torch.stack([ex.x0 for ex in batch]).to(device))
            cond = card.spec.encode(model, torch.stack([ex.condition for ex in batch]).to(device))
            m = torch.stack([ex.mask for ex in batch]).to(device)
            n = x0.shape[0]
            t = sample_timesteps(n, T, high, gen, span)
            noise = torch.randn(x0.shape, generator=gen).to(device)
            t = t.to(device)
            x_t = schedule.add_noise(x0, noise, t)
            target = schedule.training_target(x0, noise, t)
            out = model(torch.cat([x_t, cond], dim=1), t)
            loss = weighted_loss(out, target, m, OUTSIDE_WEIGHT)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    model.eval()
    return model
