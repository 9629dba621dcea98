"""Diffusion fillers: one per diffusion entry of :mod:`bidsfill.fill.methods`.

Thin layer over :mod:`bidsfill.diffusion`: it finds and checks the weights, picks the
device and thread count, resolves the :class:`~bidsfill.diffusion.sampling.SamplingPlan`
against the model card, runs :func:`~bidsfill.diffusion.inference.inpaint_volume` and
records the provenance (sampler, steps, model name and sha256, device) for the sidecar.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bidsfill.diffusion import weights
from bidsfill.diffusion.card import CONTRAST_CHANNELS, ModelCard
from bidsfill.diffusion.conditioning import hide_reflected_mask, mirror_lr
from bidsfill.diffusion.inference import inpaint_volume, resolve_device
from bidsfill.diffusion.sampling import SamplingPlan
from bidsfill.fill.base import FillError, FillResult, register_filler
from bidsfill.fill.methods import FILL_METHODS, fill_method
from bidsfill.fill.prefill import classical_prefill
from bidsfill.segment.midline import (
    GridReflection,
    MidPlane,
    contralateral_image,
    reflected_mask,
)

__all__ = ["diffusion_fill", "mirror_images"]

LOGGER = logging.getLogger("bidsfill.fill.diffusion")


@contextlib.contextmanager
def _threads(n: int | None, device: torch.device) -> Iterator[None]:
    # CPU threads follow --omp-nthreads; restored afterwards (Nipype may reuse the process).
    if device.type != "cpu" or not n:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _log_progress():  # noqa: ANN202
    """Crops done out of the total, with an ETA, on the console (one line per crop)."""
    import time

    start = time.perf_counter()

    def report(done: int, total: int) -> None:
        elapsed = time.perf_counter() - start
        eta = elapsed / done * (total - done)
        LOGGER.info("Diffusion fill: crop %d/%d done, %.0f s, about %.0f s left", done, total,
                    elapsed, eta)  # fmt: skip

    return report


def _load(
    method: str, model: str | Path | None, device: torch.device
) -> tuple[torch.nn.Module, ModelCard]:
    path = Path(model) if model else weights.default_model_path(method)
    if path is None:
        conditional = fill_method(method).conditional
        train_arch = f"--arch {method}" if conditional else "--arch pseudo3d --unconditional"
        raise FillError(
            f"No trained weights are bundled for --method {method}; train them with "
            f"`bidsfill-train {train_arch} ...` (or METHODS={method} bash "
            "scripts/train_family.sh) or pass a compatible file with --model PATH."
        )
    try:
        net, card = weights.load_weights(path, device=device)
    except ValueError as err:
        raise FillError(str(err)) from None
    arch = card.architecture
    if not fill_method(method).conditional:
        if card.conditional:
            raise FillError(
                f"Model {path.name} is a conditional {arch} model; RePaint needs an "
                f"unconditional one (use --method {arch} for this file)."
            )
    elif arch != method or not card.conditional:
        kind = arch if card.conditional else "repaint"
        raise FillError(f"Model {path.name} is a {kind} model, not {method}; use --method {kind}.")
    return net, card


def _contrast_names(channels: list[str] | tuple[str, ...]) -> str:
    names = [f"a {CONTRAST_CHANNELS[c]}" for c in channels]
    return " and ".join(names)


def _with_contrasts(
    method: str,
    model: str | Path | None,
    device: torch.device,
    net: torch.nn.Module,
    card: ModelCard,
    extra_images: dict[str, np.ndarray] | None,
) -> tuple[torch.nn.Module, ModelCard, dict[str, Any]]:
    """The model that fills, given the contrasts the scan has (``extra_images``).

    A model conditioned on a contrast the scan lacks is replaced by the shipped T1w-only
    model of the method (else of pseudo3d), and the sidecar says so. Returns the network,
    its card and the sidecar entries: ``ConditioningImages`` (the contrast channels that
    conditioned the fill) and, after a fallback, ``ConditioningFallback`` (a sentence).
    """
    have = set(extra_images or {})
    missing = [c for c in card.contrasts if c not in have]
    if not missing:
        return net, card, {"ConditioningImages": list(card.contrasts)}
    name = Path(model).name if model else f"the shipped {method} model"
    candidates = (method, "pseudo3d") if fill_method(method).conditional else ()
    for candidate in dict.fromkeys(candidates):
        if weights.default_model_path(candidate) is None:
            continue
        fallback_net, fallback_card = _load(candidate, None, device)
        if fallback_card.contrasts:
            continue
        sentence = (
            f"{name} is conditioned on {_contrast_names(missing)}, which this session does "
            f"not have, so the T1w-only shipped {candidate} model ({fallback_card.name}) "
            "filled it instead."
        )
        LOGGER.warning(sentence)
        return fallback_net, fallback_card, {
            "ConditioningImages": [],
            "ConditioningFallback": sentence,
        }
    raise FillError(
        f"{name} is conditioned on {_contrast_names(missing)}, which this session does not "
        "have, and no T1w-only model is shipped to fall back on."
    )


def diffusion_fill(
    image: np.ndarray,
    mask: np.ndarray,
    *,
    method: str,
    zooms: tuple[float, float, float],
    seed: int,
    model: str | Path | None = None,
    omp_nthreads: int | None = None,
    extra_images: dict[str, np.ndarray] | None = None,
    plan: SamplingPlan | None = None,
    affine: np.ndarray | None = None,
    **params: Any,
) -> FillResult:
    """Fill with a diffusion model.

    ``plan`` is the sampling; without one, the SamplingPlan fields among ``params``
    (sampler, steps, eta, n_samples, device, jump_length, jump_n_sample, feather,
    adapt_steps, flip, edge_taper_mm, shift_voxels, antithetic) make it. It is resolved against the model's card here, once.
    """
    try:
        plan = plan or SamplingPlan.from_params(params)
        dev = resolve_device(plan.device)
    except ValueError as err:
        raise FillError(str(err)) from None
    net, card = _load(method, model, dev)
    net, card, conditioning = _with_contrasts(method, model, dev, net, card, extra_images)
    try:
        plan = plan.resolve(card)
    except ValueError as err:
        raise FillError(str(err)) from None
    LOGGER.info("Diffusion fill (%s, %s, %s steps) on %s", method, plan.sampler, plan.steps, dev)
    extra_images, plane = mirror_images(image, mask, zooms, affine, card, extra_images,
                                        seed=seed, n_threads=int(omp_nthreads or 1))  # fmt: skip
    with _threads(omp_nthreads, dev):
        try:
            out = inpaint_volume(
                image, mask, net, card, plan, seed=seed, device=dev,
                extra_images=extra_images, zooms=tuple(zooms), progress=_log_progress(),
                prefill=classical_prefill,
                reflection=None if plane is None else GridReflection(affine, plane),
            )  # fmt: skip
        except ValueError as err:
            raise FillError(str(err)) from None
    symmetry = {"MidSagittalPlane": plane.to_dict()} if plane is not None else {}
    params_out: dict[str, Any] = {
        **symmetry,
        "Sampler": plan.sampler,
        "Steps": out.steps,
        "NSamples": int(plan.n_samples),
        "Eta": plan.eta,
        "ModelName": card.name,
        "ModelSHA256": card.sha256,
        "Architecture": card.architecture,
        "Crops": out.crops,
        "ModelCalls": out.model_calls,
        "Feather": plan.feather,
        "Flip": bool(plan.flip),
        "EdgeTaperMM": plan.edge_taper_mm,
        "ShiftVoxels": plan.shift_voxels,
        "Antithetic": bool(plan.antithetic),
        "AdaptSteps": plan.adapt_steps,
    }
    params_out.update(conditioning)
    if "jump_length" in fill_method(method).sampling:
        params_out.update({"JumpLength": plan.jump_length, "JumpNSample": plan.jump_n_sample})
    return FillResult(filled=out.mean, std=out.std, params=params_out, device=str(dev))


def mirror_images(
    image: np.ndarray,
    mask: np.ndarray,
    zooms: tuple[float, float, float],
    affine: np.ndarray | None,
    card: ModelCard,
    extra_images: dict[str, np.ndarray] | None,
    *,
    seed: int = 0,
    n_threads: int = 1,
) -> tuple[dict[str, np.ndarray] | None, MidPlane | None]:
    """The conditioning images a "mirror" model needs beyond the scan, as training built
    them, and the plane they reflect about (None: given, or the array's centre).

    Santorum et al.'s channel is the scan reflected about its own estimated mid-sagittal
    plane. A card with ``mirror_hides_mask`` reflects the scan with the prefill in the
    mask (the plane too is estimated on it) and shows the prefill where the reflection
    lands in the mask, so nothing the mask covers reaches the network; the prefill comes
    back too, made once for both channels.
    """
    pre = card.preprocessing
    if "mirror" not in pre.extras or (extra_images and "mirror" in extra_images):
        return extra_images, None
    if not pre.mirror_hides_mask:
        if affine is None:  # conditioning.extra_channels reflects about the array's centre
            return extra_images, None
        mirror, plane = contralateral_image(image, affine, seed=seed, n_threads=n_threads)
        return {**(extra_images or {}), "mirror": mirror}, plane
    prefill = (extra_images or {}).get("prefill")
    if prefill is None:
        prefill = classical_prefill(image, mask, zooms, pre.prefill)
    seen = np.where(mask, prefill, image).astype(np.float32)
    if affine is None:  # the array's own centre
        plane, mirror, reflected = None, mirror_lr(seen), mirror_lr(np.asarray(mask, bool))
    else:
        mirror, plane = contralateral_image(seen, affine, seed=seed, n_threads=n_threads)
        reflected = reflected_mask(mask, affine, plane)
    hidden = hide_reflected_mask(mirror, prefill, reflected)
    return {**(extra_images or {}), "mirror": hidden, "prefill": prefill}, plane


def _register(method: str) -> None:
    def _fill(image, mask, *, zooms, seed, **params) -> FillResult:  # noqa: ANN001
        return diffusion_fill(image, mask, method=method, zooms=zooms, seed=seed, **params)

    _fill.__name__ = f"fill_{method}"
    _fill.__doc__ = f"Diffusion fill with --method {method}."
    register_filler(method)(_fill)


for _method in (m.name for m in FILL_METHODS.values() if m.uses_model):
    _register(_method)
