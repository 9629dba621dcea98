"""Inpaint a whole scan with a diffusion model, one lesion cluster crop at a time.

Each crop is normalised from its own known tissue, sampled (conditional DDIM/DDPM, or
RePaint for unconditional models) and mapped back to scanner units. Slice models see
overlapping z-windows that share one timestep per step; their outputs are blended into
one crop-sized state before every sampler step, so windows never disagree. Only crops
are ever on the device, and windows go through the network in batches.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from bidsfill.diffusion.card import ModelCard
from bidsfill.diffusion.conditioning import extra_channels
from bidsfill.diffusion.crops import (
    blend_weights,
    crop_grids,
    lesion_components,
    shifted_grid,
    z_windows,
)
from bidsfill.diffusion.intensity import tissue_reference
from bidsfill.diffusion.pipeline import Preparation
from bidsfill.diffusion.samplers import draw_noise, sample, sample_repaint
from bidsfill.diffusion.sampling import SamplingPlan
from bidsfill.io.resample import box_shape, resample_box

__all__ = [
    "InpaintOutput",
    "feather_boundary",
    "taper_correction",
    "inpaint_volume",
    "is_conditional",
    "resolve_device",
]

LOGGER = logging.getLogger("bidsfill.diffusion")


@dataclass(frozen=True)
class InpaintOutput:
    """Mean fill over samples, voxelwise std (None for one sample), and run facts."""

    mean: np.ndarray
    std: np.ndarray | None
    crops: int
    model_calls: int
    steps: int


def resolve_device(device: str | None) -> torch.device:
    """``auto`` -> the first CUDA device if there is one, else CPU; validates cuda[:N]."""
    device = (device or "auto").strip().lower()
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"Unknown device {device!r}; use auto, cpu or cuda[:N].") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"Device {device!r} was requested but no CUDA GPU is available.")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"Device {device!r} does not exist ({torch.cuda.device_count()} GPUs)."
            )
    elif dev.type != "cpu":
        raise ValueError(f"Unknown device {device!r}; use auto, cpu or cuda[:N].")
    return dev


def is_conditional(card: ModelCard | dict[str, Any]) -> bool:
    """True when the network takes conditioning channels after x_t."""
    return ModelCard.coerce(card).conditional


def _autocast(device: torch.device) -> contextlib.AbstractContextManager:
    if device.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def _slice_model_fn(
    net: torch.nn.Module,
    cond: torch.Tensor | None,
    window: int,
    overlap: int,
    batch: int,
    device: torch.device,
    active: np.ndarray | None = None,
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Crop-level model callable for slice networks: windows in batches, blended outputs.

    ``active`` (one flag per slice): only windows holding a slice with mask voxels run.
    Every slice with mask voxels still gets exactly its blend of all windows covering it;
    slices no computed window covers get a zero output (the model's estimate is never
    written there). The margin slices of a crop are context inside the windows that
    reach them, and skipping the windows that hold only margin saved a third of the
    network time on 15 MS lesions.
    """

    def fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        nz = x.shape[2]
        starts = z_windows(nz, window, overlap)
        if active is not None and active.any():
            starts = [s for s in starts if active[s : s + window].any()]
        w = torch.as_tensor(blend_weights(window, overlap), device=device).view(1, 1, -1, 1, 1)
        out = torch.zeros_like(x)
        norm = torch.zeros((1, 1, nz, 1, 1), device=device, dtype=x.dtype)
        inp = x if cond is None else torch.cat([x, cond], dim=1)
        for b0 in range(0, len(starts), batch):
            group = starts[b0 : b0 + batch]
            stack = torch.cat([inp[:, :, s : s + window] for s in group], dim=0)
            with _autocast(device):
                res = net(stack, t[:1].repeat(len(group))).float()
            for k, s in enumerate(group):
                out[:, :, s : s + window] += res[k : k + 1] * w
                norm[:, :, s : s + window] += w
        return torch.where(norm > 0, out / norm.clamp(min=1e-12), torch.zeros_like(out))

    return fn


def _volume_model_fn(
    net: torch.nn.Module, cond: torch.Tensor | None, device: torch.device
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    def fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        inp = x if cond is None else torch.cat([x, cond], dim=1)
        with _autocast(device):
            return net(inp, t).float()

    return fn


def feather_boundary(image: np.ndarray, filled: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Blend the first voxel layer inside the mask halfway toward its known neighbours' mean."""
    mask = np.asarray(mask, dtype=bool)
    layer = mask & ~ndimage.binary_erosion(mask, structure=np.ones((3, 3, 3)))
    known = (~mask).astype(np.float32)
    kernel = np.ones((3, 3, 3), dtype=np.float32)
    num = ndimage.convolve(np.where(mask, 0, image).astype(np.float32), kernel, mode="constant")
    den = ndimage.convolve(known, kernel, mode="constant")
    out = np.array(filled, dtype=np.float32, copy=True)
    has = layer & (den > 0)
    out[has] = 0.5 * filled[has] + 0.5 * num[has] / den[has]
    return out


def taper_correction(
    prefill: np.ndarray,
    filled: np.ndarray,
    mask: np.ndarray,
    zooms: tuple[float, float, float],
    width_mm: float,
) -> tuple[np.ndarray, np.ndarray]:
    """A residual fill with its correction scaled by depth in the mask: ``prefill + w *
    (filled - prefill)``, ``w`` rising linearly from the edge layer (one voxel deep) to 1
    at ``width_mm``. Next to known tissue the nonlocal prefill copies real neighbours and
    the learned correction mostly adds error (bench_correction_gate.py measured this on
    unseen patients). Returns the tapered fill (``filled`` outside the mask) and ``w``."""
    mask = np.asarray(mask, dtype=bool)
    weight = mask.astype(np.float32)
    if width_mm > 0 and mask.any():
        # Depth only within the mask's box grown by one voxel: that layer is background
        # (beyond the image edge too), so every voxel's nearest background voxel is in
        # the box: exact, and cheap on a whole head.
        idx = np.nonzero(mask)
        box = tuple(slice(max(int(i.min()) - 1, 0), int(i.max()) + 2) for i in idx)
        depth = ndimage.distance_transform_edt(np.pad(mask[box], 1), sampling=zooms)
        weight[box] = np.clip(depth[1:-1, 1:-1, 1:-1] / float(width_mm), 0.0, 1.0)
    out = np.where(mask, prefill + weight * (filled - prefill), filled).astype(np.float32)
    return out, weight


def _sample_crop(
    net: torch.nn.Module,
    card: ModelCard,
    plan: SamplingPlan,
    prep: Preparation,
    *,
    generator: torch.Generator,
    device: torch.device,
    window_batch: int,
    x_T: torch.Tensor | None = None,
) -> tuple[np.ndarray, int, torch.Tensor | None]:
    """One sample of a prepared crop; returns the model-grid crop in model units (image
    layout), the model calls and the starting noise of a conditional model (``x_T``:
    that noise given, e.g. an antithetic partner's; None draws it)."""
    spec, pre, schedule = card.spec, card.preprocessing, card.schedule
    # A residual model's correction has no fixed range; image models clip to the card's
    # range, latent models to their latents' (ArchitectureSpec.sample_clip).
    clip = spec.sample_clip(None if pre.residual_scale is not None else tuple(pre.intensity.clip))
    x0, cond = prep.forward()
    # A latent model diffuses its autoencoder's latents of the image channels.
    x0, cond = spec.encode(net, x0[None].to(device)), spec.encode(net, cond[None].to(device))
    cond_in = spec.condition_channels(cond, card.conditional)
    if spec.slices:
        active = prep.mask.reshape(-1, prep.mask.shape[-1]).any(axis=0)  # per z slice
        fn = _slice_model_fn(
            net, cond_in, int(pre.window), int(pre.window_overlap), window_batch, device,
            active,
        )  # fmt: skip
    else:
        fn = _volume_model_fn(net, cond_in, device)
    if card.conditional:
        if x_T is None:  # the draw sample() would make, kept for an antithetic partner
            x_T = draw_noise(torch.empty(tuple(x0.shape), device=device), generator)
        res = sample(
            fn, schedule, tuple(x0.shape), sampler=plan.sampler, steps=plan.steps,
            eta=plan.eta, generator=generator, device=device, clip=clip, x_T=x_T,
        )  # fmt: skip
    elif spec.voxelwise:  # RePaint's known mask applies in the network's layout
        known_mask = 1.0 - cond[:, 1:2]  # the mask channel, in the model's layout
        res = sample_repaint(
            fn, schedule, x0, known_mask, steps=plan.steps, generator=generator,
            jump_length=plan.jump_length, jump_n_sample=plan.jump_n_sample, eta=plan.eta,
            clip=clip,
        )  # fmt: skip
    elif spec.latent:
        raise ValueError(
            "RePaint mixes the known image into every step, which needs an invertible "
            "layout; a latent model's autoencoder is not one. Train it conditionally."
        )
    else:  # known and unknown voxels are mixed in image space, between network calls
        shape = prep.image.shape
        img = torch.as_tensor(prep.image[None, None], device=device)
        kmask = torch.as_tensor((~prep.mask)[None, None].astype(np.float32), device=device)
        res = sample_repaint(
            fn, schedule, img, kmask, steps=plan.steps, generator=generator,
            jump_length=plan.jump_length, jump_n_sample=plan.jump_n_sample, eta=plan.eta,
            clip=None, to_model=lambda v: spec.to_network(v[0])[None],
            from_model=lambda v: spec.from_network(v, shape),
        )  # fmt: skip
        return res.sample[0, 0].float().cpu().numpy(), res.model_calls, None
    return prep.from_network(spec.decode(net, res.sample)), res.model_calls, x_T


def antithetic_noise(
    noise: torch.Tensor, spec: Any, shape: tuple[int, ...], mirrored: bool
) -> torch.Tensor:
    """The antithetic partner of starting noise ``noise`` (network layout, batch 1): its
    negation, mirrored left-right (image axis 0) when the partner's view is the mirrored
    one, so both views meet opposite noise at the same anatomy. ``shape``: the crop's
    model-grid image shape. A latent model's noise lives on its latent grid, which has no
    image axes to mirror: it is only negated."""
    if not mirrored or spec.latent:
        return -noise
    image = spec.from_network(noise, shape)  # (1, C, X, Y, Z)
    return -spec.to_network(image[0].flip(1))[None]


#: Fills ``mask`` of ``image`` with a classical filler: (image, mask, zooms, method) ->
#: image. The fill package passes :func:`bidsfill.fill.prefill.classical_prefill`; the
#: engine takes it as an argument because the fill package imports the engine.
PrefillFn = Callable[[np.ndarray, np.ndarray, tuple[float, float, float], str], np.ndarray]


def _needs_prefill(prefill: PrefillFn | None) -> PrefillFn:
    if prefill is None:
        raise ValueError(
            "This model corrects a classical prefill: pass prefill= (for example "
            "bidsfill.fill.prefill.classical_prefill) or a 'prefill' extra image."
        )
    return prefill


def _adapted(
    net: torch.nn.Module,
    card: ModelCard,
    image: np.ndarray,
    mask: np.ndarray,
    zooms: tuple[float, float, float],
    steps: int,
    seed: int,
    device: torch.device,
    reference: Any,
    prefill: PrefillFn | None,
    mirror: np.ndarray | None = None,
    reflection: Any = None,
) -> torch.nn.Module:
    """``net`` adapted to this scan, on the model's grid (the scan resampled to it)."""
    from bidsfill.diffusion.adapt import adapt_model

    voxel = card.preprocessing.voxel_size
    if voxel is not None and not np.allclose(zooms, voxel, rtol=0.05):
        shape = box_shape(image.shape, zooms, voxel)
        if mirror is not None:
            mirror = resample_box(mirror, shape)
        if reflection is not None:
            reflection = reflection.resampled(image.shape, shape)
        image = resample_box(image, shape)
        mask = resample_box(mask.astype(np.float32), shape) > 0.5
        zooms = tuple(float(v) for v in voxel)
    with torch.inference_mode(False):
        return adapt_model(
            net, card, image, mask, steps=steps, seed=seed, device=device, zooms=zooms,
            reference=reference, prefill=prefill, mirror=mirror, reflection=reflection,
        )  # fmt: skip


def _prepare_view(
    image: np.ndarray,
    mask: np.ndarray,
    extras_full: list[np.ndarray],
    sl: tuple[slice, ...],
    grid: Any,
    spec: Any,
    pre: Any,
    reference: Any,
    *,
    flipped: bool,
) -> Preparation:
    """The crop prepared for the network, or its left-right mirror (axis 0, the flip the
    training augmentation draws); a mirrored view's fill is mirrored back by the caller."""

    def view(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a[::-1]) if flipped else a

    return Preparation.fit(
        view(image), view(mask), grid, arch=spec, preprocessing=pre, reference=reference,
        extras=[view(e[sl]) for e in extras_full],
    )  # fmt: skip


#: In-plane directions of the crop shifts of samples 1, 2, ... (sample 0 is unmoved).
SHIFT_DIRECTIONS = ((1, 1), (-1, 1), (1, -1), (-1, -1))


def sample_views(n_samples: int, flip: bool, shift: tuple[int, int]) -> list[tuple]:
    """(mirrored?, native (x, y, z) offset of the crop box) of each sample of the mean:
    every other sample mirrored (``flip``), every sample after the first moved by
    ``shift`` voxels in turn along :data:`SHIFT_DIRECTIONS`."""
    views = []
    for i in range(n_samples):
        sx, sy = SHIFT_DIRECTIONS[(i - 1) % len(SHIFT_DIRECTIONS)] if i else (0, 0)
        views.append((flip and i % 2 == 1, (sx * shift[0], sy * shift[1], 0)))
    return views


def _native_shift(plan: SamplingPlan, pre: Any, zooms: tuple[float, ...]) -> tuple[int, int]:
    """The plan's shift in model voxels as native in-plane voxels (at least 1 when on)."""
    s = int(plan.shift_voxels or 0)
    if not s:
        return (0, 0)
    voxel = pre.voxel_size or zooms
    return tuple(max(1, round(s * float(v) / float(z))) for v, z in zip(voxel[:2], zooms[:2], strict=True))


def inpaint_volume(
    image: np.ndarray,
    mask: np.ndarray,
    net: torch.nn.Module,
    card: ModelCard | dict[str, Any],
    plan: SamplingPlan | None = None,
    *,
    seed: int = 0,
    device: torch.device | str = "cpu",
    extra_images: dict[str, np.ndarray] | None = None,
    window_batch: int = 8,
    zooms: tuple[float, float, float] = (1.0, 1.0, 1.0),
    progress: Callable[[int, int], None] | None = None,
    prefill: PrefillFn | None = None,
    reflection: Any = None,
    **options: Any,
) -> InpaintOutput:
    """Fill ``mask`` in ``image`` (scanner units) with a loaded diffusion model.

    Args:
        image: ``(X, Y, Z)`` volume, Z axial.
        mask: boolean lesion mask on the same grid.
        net: network from :func:`bidsfill.diffusion.weights.load_weights`, on ``device``.
        card: its model card.
        plan: the sampling (sampler, steps, eta, samples, RePaint jumps, feathering,
            adaptation, edge taper); resolved against the card here. Without one, ``options`` are
            its fields (``steps=3``, ``n_samples=2`` ...).
        seed: seed of the torch generator; same seed, same device -> same output.
        device: where the network runs.
        extra_images: extra conditioning contrasts named in the card (e.g. "flair").
        window_batch: z-windows per network call (memory bound for slice models).
        zooms: voxel size in mm: crops are resampled to the card's ``voxel_size`` and the
            fill back (linear), and the classical prefill uses it.
        progress: called with (crops done, crops in all) after each crop.
        prefill: the classical filler of a residual model's "prefill" channel
            (:data:`PrefillFn`); needed only when the card names that channel.
        reflection: the plane the "mirror" image reflects about, on this grid
            (:class:`bidsfill.segment.midline.GridReflection`; default: the array's
            centre, as ``conditioning.mirror_lr``): adaptation hides each drawn mask's
            reflection with it.

    Returns:
        The mean fill and the std (more than one sample), both shaped like ``image``,
        with values outside the mask equal to the input. A residual model's fill is the
        prefill plus its correction: a zero correction returns the prefill exactly.
    """
    if plan is not None and options:
        raise TypeError("Give either a SamplingPlan or its fields, not both.")
    card = ModelCard.coerce(card)
    plan = (plan or SamplingPlan(**options)).resolve(card)
    device = torch.device(device)
    image = np.asarray(image, dtype=np.float32)
    mask = np.asarray(mask, dtype=bool)
    spec, pre = card.spec, card.preprocessing
    n_samples = int(plan.n_samples or 1)
    zooms = tuple(float(z) for z in zooms)
    grids = crop_grids(
        mask, zooms, pre, spec.crop_divisor(card.config), spec.min_crop(card.config, pre.window)
    )
    names = list(pre.extras)
    if "prefill" in names and not (extra_images and "prefill" in extra_images):
        first_guess = _needs_prefill(prefill)(image, mask, zooms, pre.prefill)
        extra_images = {**(extra_images or {}), "prefill": first_guess}
    extras_full = extra_channels(image, names, extra_images)
    # What the crops show as context: resampled to the model's grid, a voxel next to the
    # mask blends in native voxels under it (the lesion); with the prefill there instead
    # the fill never sees what the mask covers, on any grid.
    context = image
    if "prefill" in names:
        context = np.where(mask, extras_full[names.index("prefill")], image).astype(np.float32)
    generator = torch.Generator(device=device).manual_seed(int(seed))
    total = np.zeros(image.shape, dtype=np.float64)
    total_sq = np.zeros(image.shape, dtype=np.float64)
    components = lesion_components(mask)
    reference = tissue_reference(image, mask, pre.intensity.percentiles)
    if plan.adapt_steps:
        mirror = extras_full[names.index("mirror")] if "mirror" in names else None
        if reflection is None and mirror is not None:  # extra_channels' mirror_lr
            from bidsfill.segment.midline import GridReflection

            reflection = GridReflection.array_centre(image.shape)
        net = _adapted(net, card, context, mask, zooms, plan.adapt_steps, seed, device, reference,
                       prefill, mirror, reflection)  # fmt: skip
    count = np.zeros(image.shape, dtype=np.int32)
    views = sample_views(n_samples, bool(plan.flip), _native_shift(plan, pre, zooms))
    calls = 0
    net.eval()
    for done, grid in enumerate(grids, start=1):
        prepared: dict[tuple, tuple] = {}
        last_noise = None
        for i, (flipped, offset) in enumerate(views):
            view_grid = shifted_grid(grid, offset, image.shape)
            sl = view_grid.crop.slices
            key = (flipped, view_grid.crop.start)
            if key not in prepared:
                prep = _prepare_view(context[sl], mask[sl], extras_full, sl, view_grid, spec, pre,
                                     reference, flipped=flipped)  # fmt: skip
                # Context boxes may overlap; each lesion is filled by the one crop made for it.
                prepared[key] = (prep, np.isin(components[sl], grid.crop.labels))
            prep, own = prepared[key]
            partner = None
            if plan.antithetic and i % 2 == 1 and last_noise is not None:
                # Every view of a crop has its model-grid shape (a shifted view's noise
                # meets the anatomy moved by the shift: a weaker pairing).
                noise, was_flipped = last_noise
                partner = antithetic_noise(noise, spec, prep.image.shape, was_flipped != flipped)
            with torch.inference_mode():
                vol, k, used = _sample_crop(
                    net, card, plan, prep, generator=generator, device=device,
                    window_batch=window_batch, x_T=partner,
                )  # fmt: skip
            last_noise = None if used is None else (used, flipped)
            calls += k
            filled = prep.inverse(vol)
            if flipped:
                filled = filled[::-1]
            total[sl][own] += filled[own]
            total_sq[sl][own] += filled[own] ** 2
            count[sl][own] += 1
        if progress is not None:
            progress(done, len(grids))
    n = np.maximum(count, 1)
    mean = total / n
    std = None
    if n_samples > 1:
        var = np.maximum(total_sq / n - mean**2, 0.0) * n / np.maximum(n - 1, 1)
        std = np.where(mask & (count > 1), np.sqrt(var), 0.0).astype(np.float32)
    if plan.edge_taper_mm:  # the samples' spread shrinks with the correction it comes from
        mean, taper = taper_correction(extra_images["prefill"], mean, mask, zooms,
                                       plan.edge_taper_mm)  # fmt: skip
        std = None if std is None else (taper * std).astype(np.float32)
    out = np.where(mask, mean, image).astype(np.float32)
    if plan.feather:
        out = np.where(mask, feather_boundary(image, out, mask), image).astype(np.float32)
    return InpaintOutput(out, std, len(grids), calls, int(plan.steps))
