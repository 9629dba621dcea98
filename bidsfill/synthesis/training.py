"""Training of a cWDM synthesis model: random 3D crops, the paper's x0-MSE objective.

Friedrich et al. trained 1.2 M iterations at batch size 1 (Adam, lr 1e-5) on 1251 BraTS
cases; :func:`train_synthesis` runs the same objective for as many steps or minutes as
it is given, on whatever subjects it is given, with an EMA of the weights and one
resumable checkpoint (``latest.pt``) in the run folder.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch

from bidsfill.diffusion.wavelets import dwt3d
from bidsfill.synthesis.model import SynthesisCard
from bidsfill.synthesis.normalise import IntensityRange, normalise, reference_range
from bidsfill.synthesis.sample import brain_foreground

__all__ = ["SynthesisSubject", "TrainResult", "load_subject", "target_reference", "train_synthesis"]

LOGGER = logging.getLogger("bidsfill.synthesis")


@dataclass
class SynthesisSubject:
    """One subject's normalised sources ``(C, X, Y, Z)``, target, brain and affine."""

    name: str
    sources: np.ndarray
    target: np.ndarray
    brain: np.ndarray
    affine: np.ndarray
    target_range: IntensityRange
    paths: dict[str, str]


def load_subject(
    name: str, paths: Mapping[str, str | Path], target: str, sources: Sequence[str]
) -> SynthesisSubject:
    """Load and normalise one subject (all images on one grid, as cWDM assumes)."""
    imgs = {c: nib.load(str(paths[c])) for c in (*sources, target)}
    ref = imgs[target]
    for c, img in imgs.items():
        if img.shape[:3] != ref.shape[:3] or not np.allclose(img.affine, ref.affine, atol=1e-3):
            raise ValueError(f"{name}: {c} is not on the {target} grid; register it first.")
    src = np.stack([normalise(imgs[c].get_fdata(dtype=np.float32))[0] for c in sources])
    tgt, rng = normalise(ref.get_fdata(dtype=np.float32))
    brain = brain_foreground(list(src)) & (tgt > 0)
    return SynthesisSubject(name, src, tgt, brain, ref.affine,
                            rng, {c: str(p) for c, p in paths.items()})  # fmt: skip


def target_reference(subjects: Sequence[SynthesisSubject]) -> IntensityRange:
    """The card's scanner-like reference range of the target (see :mod:`.normalise`)."""
    return reference_range([s.target_range for s in subjects])


@dataclass
class TrainResult:
    model: torch.nn.Module
    card: SynthesisCard
    steps: int
    losses: list[float]
    seconds: float


def _crop(subject: SynthesisSubject, size: Sequence[int], rng: np.random.Generator):
    """A random crop (even start) whose centre lies in the brain's bounding box."""
    box = np.argwhere(subject.brain)
    lo, hi = box.min(0), box.max(0) + 1
    shape = subject.target.shape
    starts = []
    for ax in range(3):
        c = int(size[ax])
        centre = int(rng.integers(lo[ax], hi[ax]))
        s = int(np.clip(centre - c // 2, 0, max(0, shape[ax] - c)))
        starts.append(s - s % 2)
    sl = tuple(slice(s, s + c) for s, c in zip(starts, size, strict=False))
    stack = np.concatenate([subject.target[None], subject.sources], axis=0)[(slice(None), *sl)]
    pad = [(0, 0)] + [(0, int(c) - n) for c, n in zip(size, stack.shape[1:], strict=False)]
    stack = np.pad(stack, pad)
    if rng.random() < 0.5:  # left-right flip (X is left-right in RAS-like grids)
        stack = stack[:, ::-1]
    return np.ascontiguousarray(stack, dtype=np.float32)


def train_synthesis(
    subjects: Sequence[SynthesisSubject],
    card: SynthesisCard,
    *,
    steps: int = 1000,
    max_minutes: float = 0.0,
    patch: Sequence[int] = (64, 64, 64),
    batch_size: int = 1,
    lr: float = 2e-4,
    ema_decay: float = 0.995,
    seed: int = 0,
    run_dir: str | Path | None = None,
    checkpoint_every: int = 50,
    device: str | torch.device = "cpu",
    log_every: int = 10,
) -> TrainResult:
    """Train (or resume from ``run_dir/latest.pt``) and return the EMA model.

    The loss is the paper's: MSE between predicted and true sub-bands of the target,
    x_t being the noised target sub-bands and the sources' sub-bands the condition.
    The EMA decay ramps up as ``(1 + s) / (10 + s)`` until it reaches ``ema_decay``.
    """
    if not subjects:
        raise ValueError("train_synthesis needs at least one subject.")
    div = card.divisor
    patch = tuple(max(div, int(p) // div * div) for p in patch)
    torch.manual_seed(seed)
    model = card.build().to(device)
    ema = card.build().to(device)
    ema.load_state_dict(model.state_dict())
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    step, losses = 0, []
    ckpt = Path(run_dir) / "latest.pt" if run_dir else None
    if ckpt is not None and ckpt.is_file():
        state = torch.load(ckpt, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
        step, losses = int(state["step"]), [float(v) for v in state["losses"]]
        LOGGER.info("Resumed from %s at step %d.", ckpt, step)
    rng = np.random.default_rng(seed + step)
    schedule = card.schedule
    t0 = time.monotonic()

    def save() -> None:
        if ckpt is None:
            return
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        tmp = ckpt.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "ema": ema.state_dict(),
                    "opt": opt.state_dict(), "step": step, "losses": losses}, tmp)  # fmt: skip
        tmp.replace(ckpt)
        (ckpt.parent / "card.json").write_text(json.dumps(card.to_dict(), indent=2))

    model.train()
    while step < steps:
        if max_minutes and time.monotonic() - t0 > 60 * max_minutes:
            LOGGER.info("Time budget of %.1f min reached at step %d.", max_minutes, step)
            break
        batch = np.stack([_crop(subjects[int(rng.integers(len(subjects)))], patch, rng)
                          for _ in range(batch_size)])  # fmt: skip
        sub = dwt3d(torch.from_numpy(batch).to(device))  # (B, 8 * (1 + S), ...)
        x0, cond = sub[:, :8], sub[:, 8:]
        t = torch.randint(0, schedule.num_train_timesteps, (batch_size,), device=device)
        noise = torch.randn_like(x0)
        x_t = schedule.add_noise(x0, noise, t)
        pred = model(torch.cat([x_t, cond], dim=1), t)
        loss = torch.mean((pred - schedule.training_target(x0, noise, t)) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        # the inpainting loop's ramp: without it a short run's EMA stays mostly at the
        # random initialisation (0.999 ** 300 = 0.74)
        decay = min(ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters(), strict=False):
                pe.mul_(decay).add_(pm.detach(), alpha=1 - decay)
        step += 1
        losses.append(loss.item())
        if log_every and step % log_every == 0:
            LOGGER.info("step %d loss %.5f (mean of last %d: %.5f)", step, losses[-1],
                        min(50, len(losses)), float(np.mean(losses[-50:])))  # fmt: skip
        if checkpoint_every and step % checkpoint_every == 0:
            save()
    save()
    ema.eval()
    return TrainResult(ema, card, step, losses, time.monotonic() - t0)


def training_record(
    subjects: Sequence[SynthesisSubject], result: TrainResult, **extra: Any
) -> dict[str, Any]:
    """The card's "training" entry (data are listed by the caller, who knows licences)."""
    return {"steps": result.steps, "wall_seconds": round(result.seconds, 1),
            "final_loss_mean_last_50": float(np.mean(result.losses[-50:])) if result.losses else None,
            "weights": "ema", **extra}  # fmt: skip
