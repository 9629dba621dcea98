"""Diffusion fillers: ``pseudo3d``, ``slicewise``, ``wdm3d`` (conditional) and ``repaint``.

Thin layer over :mod:`bidsfill.diffusion`: it finds and checks the weights, picks the
device and thread count, runs :func:`~bidsfill.diffusion.inference.inpaint_volume` and
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

from bidsfill.diffusion.inference import inpaint_volume, is_conditional, resolve_device
from bidsfill.diffusion.samplers import SAMPLERS
from bidsfill.diffusion.weights import default_model_path, load_weights
from bidsfill.fill.base import FillError, FillResult, register_filler

__all__ = ["DEFAULT_STEPS", "diffusion_fill"]

LOGGER = logging.getLogger("bidsfill.fill.diffusion")

#: DDIM steps when --steps is not given (a few tens; see benchmarks/RESULTS.md).
DEFAULT_STEPS = 20
CONDITIONAL_METHODS = ("pseudo3d", "slicewise", "wdm3d")


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


def _load(method: str, model: str | Path | None, device: torch.device):
    path = Path(model) if model else default_model_path(method)
    if path is None:
        raise FillError(
            f"No trained weights are bundled for --method {method}; train them with "
            f"`bidsfill-train {method} ...` or pass a compatible file with --model PATH."
        )
    try:
        net, card = load_weights(path, device=device)
    except ValueError as err:
        raise FillError(str(err)) from None
    arch = card["architecture"]
    if method == "repaint":
        if is_conditional(card):
            raise FillError(
                f"Model {path.name} is a conditional {arch} model; RePaint needs an "
                f"unconditional one (use --method {arch} for this file)."
            )
    elif arch != method or not is_conditional(card):
        kind = arch if is_conditional(card) else "repaint"
        raise FillError(f"Model {path.name} is a {kind} model, not {method}; use --method {kind}.")
    return net, card


def diffusion_fill(
    image: np.ndarray,
    mask: np.ndarray,
    *,
    method: str,
    zooms: tuple[float, float, float],
    seed: int,
    sampler: str = "ddim",
    steps: int | None = None,
    n_samples: int | None = None,
    model: str | Path | None = None,
    device: str | None = "auto",
    eta: float = 0.0,
    omp_nthreads: int | None = None,
    jump_length: int = 5,
    jump_n_sample: int = 2,
    feather: bool = False,
    extra_images: dict[str, np.ndarray] | None = None,
    adapt_steps: int = 0,
    **_: Any,
) -> FillResult:
    """Fill with a diffusion model; see :func:`inpaint_volume` for the parameters."""
    sampler = (sampler or "ddim").lower()
    if sampler not in SAMPLERS:
        raise FillError(f"Unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}.")
    if n_samples is not None and int(n_samples) < 1:
        raise FillError(f"--n-samples must be at least 1, got {n_samples}.")
    try:
        dev = resolve_device(device)
    except ValueError as err:
        raise FillError(str(err)) from None
    net, card = _load(method, model, dev)
    T = int(card["schedule"].get("num_train_timesteps", 1000))
    # Unset steps / n_samples: the model card's "sampling" defaults (how its scorecard was
    # made), else DEFAULT_STEPS and a single fill.
    card_sampling = card.get("sampling", {})
    k = int(steps) if steps else min(int(card_sampling.get("steps", DEFAULT_STEPS)), T)
    n_samples = int(n_samples) if n_samples else int(card_sampling.get("n_samples", 1))
    if sampler == "ddim" and not 1 <= k <= T:
        raise FillError(f"--steps must be between 1 and the model's {T} training steps, got {k}.")
    LOGGER.info("Diffusion fill (%s, %s, %s steps) on %s", method, sampler, k, dev)
    with _threads(omp_nthreads, dev):
        try:
            out = inpaint_volume(
                image, mask, net, card,
                sampler=sampler, steps=k, eta=float(eta or 0.0), n_samples=int(n_samples),
                seed=seed, device=dev, jump_length=jump_length, jump_n_sample=jump_n_sample,
                extra_images=extra_images, feather=feather, zooms=tuple(zooms),
                adapt_steps=int(adapt_steps or 0), progress=_log_progress(),
            )  # fmt: skip
        except ValueError as err:
            raise FillError(str(err)) from None
    params: dict[str, Any] = {
        "Sampler": sampler,
        "Steps": out.steps,
        "NSamples": int(n_samples),
        "Eta": float(eta or 0.0) if sampler == "ddim" else 1.0,
        "ModelName": card.get("name"),
        "ModelSHA256": card.get("sha256"),
        "Architecture": card["architecture"],
        "Crops": out.crops,
        "ModelCalls": out.model_calls,
        "Feather": bool(feather),
        "AdaptSteps": int(adapt_steps or 0),
    }
    if method == "repaint":
        params.update({"JumpLength": int(jump_length), "JumpNSample": int(jump_n_sample)})
    return FillResult(filled=out.mean, std=out.std, params=params, device=str(dev))


def _register(method: str) -> None:
    def _fill(image, mask, *, zooms, seed, **params) -> FillResult:  # noqa: ANN001
        return diffusion_fill(image, mask, method=method, zooms=zooms, seed=seed, **params)

    _fill.__name__ = f"fill_{method}"
    _fill.__doc__ = f"Diffusion fill with --method {method}."
    register_filler(method)(_fill)


for _method in (*CONDITIONAL_METHODS, "repaint"):
    _register(_method)
