"""Sampling loops: ancestral DDPM, DDIM with K steps, and RePaint resampling.

The model is any callable ``model(x_t, t) -> output`` (``t`` a long tensor of shape
``(N,)``); conditioning is closed over by the caller, so the loops work for conditional
and unconditional networks and a test can pass a dummy. Noise comes from a
``torch.Generator`` only, so the same seed gives the same sample on the same device.

DDIM is written here because MONAI's DDPMScheduler is not correct with fewer steps than
it was trained with, and MONAI has no RePaint.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from bidsfill.diffusion.sampling import DEFAULT_STEPS, SAMPLERS
from bidsfill.diffusion.schedules import NoiseSchedule

__all__ = [
    "SAMPLERS",
    "SampleResult",
    "StepOutput",
    "ddim_step",
    "ddim_timesteps",
    "ddpm_step",
    "draw_noise",
    "repaint_jumps",
    "sample",
    "sample_ddim",
    "sample_ddpm",
    "sample_repaint",
]

Model = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Clip = tuple[float, float] | None


@dataclass(frozen=True)
class StepOutput:
    """One reverse step: x_{t_prev} and the x_0 estimate it came from."""

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor


@dataclass(frozen=True)
class SampleResult:
    """A finished sampling run."""

    sample: torch.Tensor
    sampler: str
    steps: int
    model_calls: int
    eta: float


def draw_noise(like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Standard normal noise shaped like ``like``, on its device."""
    # Draw on the generator's device, then move: seeds reproduce on a device.
    noise = torch.randn(like.shape, generator=generator, device=generator.device, dtype=like.dtype)
    return noise.to(like.device)


def _t(t: int, x: torch.Tensor) -> torch.Tensor:
    return torch.full((x.shape[0],), int(t), dtype=torch.long, device=x.device)


def _x0(
    schedule: NoiseSchedule, out: torch.Tensor, x_t: torch.Tensor, t: int, clip: Clip
) -> tuple[torch.Tensor, torch.Tensor]:
    x0 = schedule.predict_x0(out, x_t, t)
    if clip is not None:
        x0 = x0.clamp(*clip)
        return x0, schedule.eps_from_x0(x0, x_t, t)
    return x0, schedule.predict_eps(out, x_t, t)


def ddpm_step(
    schedule: NoiseSchedule,
    model_output: torch.Tensor,
    t: int,
    x_t: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    noise: torch.Tensor | None = None,
    clip: Clip = None,
) -> StepOutput:
    """Ancestral step x_t -> x_{t-1} ~ q(x_{t-1} | x_t, x0_hat) (Ho et al. 2020)."""
    x0, _ = _x0(schedule, model_output, x_t, t, clip)
    mean, var = schedule.posterior(x0, x_t, t)
    if t == 0:
        return StepOutput(mean, x0)
    if noise is None:
        if generator is None:
            raise ValueError("ddpm_step needs a generator or a noise tensor.")
        noise = draw_noise(x_t, generator)
    return StepOutput(mean + var.sqrt() * noise, x0)


def ddim_step(
    schedule: NoiseSchedule,
    model_output: torch.Tensor,
    t: int,
    t_prev: int,
    x_t: torch.Tensor,
    *,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    noise: torch.Tensor | None = None,
    clip: Clip = None,
) -> StepOutput:
    """DDIM step x_t -> x_{t_prev} (Song et al. 2021, eq. 12); t_prev = -1 ends at x_0.

    With eta = 1 and t_prev = t - 1 this is exactly the DDPM ancestral step.
    """
    x0, eps = _x0(schedule, model_output, x_t, t, clip)
    abar_t = schedule.alpha_bar(t, x_t)
    abar_prev = schedule.alpha_bar(t_prev, x_t)
    # sigma_t(eta) = eta * sqrt((1 - abar_prev) / (1 - abar_t)) * sqrt(1 - abar_t / abar_prev)
    sigma = eta * ((1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev)).clamp(min=0).sqrt()
    direction = (1 - abar_prev - sigma**2).clamp(min=0).sqrt() * eps
    prev = abar_prev.sqrt() * x0 + direction
    if eta > 0 and t_prev >= 0:
        if noise is None:
            if generator is None:
                raise ValueError("ddim_step with eta > 0 needs a generator or a noise tensor.")
            noise = draw_noise(x_t, generator)
        prev = prev + sigma * noise
    return StepOutput(prev, x0)


def ddim_timesteps(num_train_timesteps: int, steps: int) -> list[int]:
    """K evenly spaced training timesteps, descending, ending at 0.

    K = 1 is the single step from pure noise at T - 1 (not at 0, where the network would
    take the noise for a clean image): the network's x0 estimate given only the
    conditioning, for an x0-predicting model trained with MSE the posterior mean.
    """
    if not 1 <= steps <= num_train_timesteps:
        raise ValueError(f"steps must be in 1..{num_train_timesteps}, got {steps}.")
    if steps == 1:
        return [num_train_timesteps - 1]
    ts = np.unique(np.round(np.linspace(0, num_train_timesteps - 1, steps)).astype(int))
    return [int(t) for t in ts[::-1]]


def sample_ddpm(
    model: Model,
    schedule: NoiseSchedule,
    shape: tuple[int, ...],
    *,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
    clip: Clip = None,
    x_T: torch.Tensor | None = None,
) -> SampleResult:
    """Full ancestral sampling over all T training timesteps."""
    x = x_T if x_T is not None else draw_noise(torch.empty(shape, device=device), generator)
    T = schedule.num_train_timesteps
    for t in range(T - 1, -1, -1):
        out = model(x, _t(t, x))
        x = ddpm_step(schedule, out, t, x, generator=generator, clip=clip).prev_sample
    return SampleResult(x, "ddpm", T, T, 1.0)


def sample_ddim(
    model: Model,
    schedule: NoiseSchedule,
    shape: tuple[int, ...],
    *,
    steps: int,
    generator: torch.Generator,
    eta: float = 0.0,
    device: torch.device | str = "cpu",
    clip: Clip = None,
    x_T: torch.Tensor | None = None,
) -> SampleResult:
    """DDIM with ``steps`` model calls (deterministic for eta = 0 given x_T)."""
    x = x_T if x_T is not None else draw_noise(torch.empty(shape, device=device), generator)
    ts = ddim_timesteps(schedule.num_train_timesteps, steps)
    for i, t in enumerate(ts):
        t_prev = ts[i + 1] if i + 1 < len(ts) else -1
        out = model(x, _t(t, x))
        x = ddim_step(
            schedule, out, t, t_prev, x, eta=eta, generator=generator, clip=clip
        ).prev_sample
    return SampleResult(x, "ddim", len(ts), len(ts), float(eta))


def repaint_jumps(steps: int, jump_length: int, jump_n_sample: int) -> list[int]:
    """RePaint's time walk over step indices steps..0 (Lugmayr et al. 2022, Alg. 1).

    Every ``jump_length`` steps down, the walk goes back up ``jump_length`` steps,
    ``jump_n_sample - 1`` times in all for that block.
    """
    if jump_length < 1 or jump_n_sample < 1:
        raise ValueError("jump_length and jump_n_sample must be >= 1.")
    jumps = {j: jump_n_sample - 1 for j in range(0, steps - jump_length, jump_length)}
    t = steps
    walk = [t]
    while t >= 1:
        t -= 1
        walk.append(t)
        if jumps.get(t, 0) > 0:
            jumps[t] -= 1
            for _ in range(jump_length):
                t += 1
                walk.append(t)
    return walk


def sample_repaint(
    model: Model,
    schedule: NoiseSchedule,
    known: torch.Tensor,
    known_mask: torch.Tensor,
    *,
    steps: int,
    generator: torch.Generator,
    jump_length: int = 5,
    jump_n_sample: int = 2,
    eta: float = 0.0,
    clip: Clip = None,
    to_model: Callable[[torch.Tensor], torch.Tensor] | None = None,
    from_model: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> SampleResult:
    """RePaint on a K-step DDIM time grid with an unconditional model.

    At every step the known region is replaced by the forward-noised known image
    q(x_t | x_0), so a model trained only on healthy images inpaints without
    retraining; resampling jumps (re-noising one block of steps) harmonise the two.

    Args:
        model: unconditional network callable in the model's domain.
        known: x_0 in image space (values outside ``known_mask`` are ignored).
        known_mask: 1 where ``known`` is to be kept, 0 where it is generated.
        steps: K, the number of distinct timesteps.
        jump_length: j, steps per resampling block.
        jump_n_sample: r, times each block is walked (1 = no resampling).
        to_model, from_model: optional transform from image space into the model's
            domain and back (e.g. :func:`dwt3d` / :func:`idwt3d`); it must be orthonormal
            so that i.i.d. noise stays i.i.d.
    """
    to_model = to_model or (lambda v: v)
    from_model = from_model or (lambda v: v)
    ts = ddim_timesteps(schedule.num_train_timesteps, steps)[::-1]  # ascending, ts[0] = 0
    # grid[k] is the timestep at walk index k: grid[0] = -1 (clean), grid[K] = T-ish.
    grid = [-1, *ts]
    known_mask = known_mask.to(known.dtype)
    x = draw_noise(to_model(known), generator)
    walk = repaint_jumps(len(ts), jump_length, jump_n_sample)
    calls = 0
    for k_from, k_to in zip(walk[:-1], walk[1:], strict=True):
        t_from, t_to = grid[k_from], grid[k_to]
        if k_to < k_from:  # reverse step: denoise, then impose the known region at t_to
            out = model(x, _t(t_from, x))
            calls += 1
            x = ddim_step(
                schedule, out, t_from, t_to, x, eta=eta, generator=generator, clip=clip
            ).prev_sample
            img = from_model(x)
            if t_to >= 0:
                noisy_known = schedule.add_noise(known, draw_noise(known, generator), _t(t_to, known))
            else:
                noisy_known = known
            x = to_model(known_mask * noisy_known + (1 - known_mask) * img)
        else:  # forward jump: x_{t_to} ~ q(x_{t_to} | x_{t_from})
            a_ratio = schedule.alpha_bar(t_to, x) / schedule.alpha_bar(t_from, x)
            x = a_ratio.sqrt() * x + (1 - a_ratio).sqrt() * draw_noise(x, generator)
    return SampleResult(from_model(x), "repaint", len(ts), calls, float(eta))


def sample(
    model: Model,
    schedule: NoiseSchedule,
    shape: tuple[int, ...],
    *,
    sampler: str = "ddim",
    steps: int | None = None,
    eta: float = 0.0,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
    clip: Clip = None,
    x_T: torch.Tensor | None = None,
) -> SampleResult:
    """Dispatch to :func:`sample_ddim` or :func:`sample_ddpm` by name (``x_T``: the
    starting noise; None draws it from ``generator``)."""
    if sampler == "ddpm":
        return sample_ddpm(model, schedule, shape, generator=generator, device=device, clip=clip,
                           x_T=x_T)  # fmt: skip
    if sampler == "ddim":
        return sample_ddim(
            model,
            schedule,
            shape,
            steps=steps or DEFAULT_STEPS,
            eta=eta,
            generator=generator,
            device=device,
            clip=clip,
            x_T=x_T,
        )
    raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}.")
