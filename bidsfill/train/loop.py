"""The training loop: AdamW, warm-up + cosine LR, EMA, AMP, clipping, exact resume, DDP.

Randomness is counter-based: the examples of step ``s`` on rank ``r`` and their noise and
timesteps are functions of ``(seed, s, r)`` only. A run resumed from a checkpoint
therefore continues bit-identically (the RNG states are saved as well, for anything
else that draws from the global generators).
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from bidsfill.diffusion.architectures import build_network, get_architecture
from bidsfill.diffusion.card import ModelCard, Preprocessing
from bidsfill.diffusion.objective import sample_timesteps, weighted_loss
from bidsfill.diffusion.schedules import NoiseSchedule
from bidsfill.train.checkpoint import (
    get_rng_state,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    set_rng_state,
)
from bidsfill.train.distributed import DistInfo, barrier, setup_distributed

__all__ = [
    "TrainConfig",
    "TrainResult",
    "lr_factor",
    "train",
]

LOGGER = logging.getLogger("bidsfill.train")


@dataclass
class TrainConfig:
    """Every setting of a run; saved in the run folder and in the model card.

    Args:
        run_dir: folder for checkpoints, logs and the config.
        arch: network architecture ("pseudo3d", "slicewise", "wdm3d").
        network: network config (``build_network`` keywords).
        schedule: noise schedule (``NoiseSchedule`` keywords).
        preprocessing: the model card's preprocessing (patch size, window, intensity).
        steps: total optimisation steps.
        batch_size: examples per step and rank.
        lr: peak learning rate.
        weight_decay: AdamW weight decay.
        warmup_steps: linear warm-up length.
        min_lr_ratio: final LR of the cosine decay, relative to ``lr``.
        ema_decay: EMA decay (with the usual (1 + s) / (10 + s) ramp at the start).
        grad_clip: max gradient norm.
        outside_weight: loss weight of voxels outside the mask (inside weighs 1).
        log_mse_eps: 0 pools the squared error of the whole batch; > 0 averages each
            crop's log(MSE + eps) instead (``weighted_loss``): every crop counts alike.
        amp: bf16 autocast on CUDA.
        checkpoint_every: steps between checkpoints.
        val_every: steps between validations (0: never).
        val_steps: DDIM steps used to fill validation cases.
        log_every: steps between log lines.
        keep_checkpoints: how many checkpoints to keep.
        seed: base seed.
        num_workers: DataLoader worker processes.
        max_minutes: stop (after a checkpoint) when this session has run this long.
        device: "auto", "cpu", "cuda" or "cuda:N".
        init_from: exported weights (``.safetensors`` with its card) to start from
            instead of a random initialisation: fine-tuning a shipped model on new data.
            Its architecture and config must match ``arch`` and ``network``.
        high_t_fraction: share of examples whose timestep is drawn from the noisiest
            10 % instead of all T; those steps decide a few-step DDIM fill (one step from
            pure noise is the network's posterior-mean estimate).
        high_t_span: the share of the schedule those noisiest timesteps come from (0.1:
            the noisiest 10 %; 0.01: only where x_t holds no signal, the step a one-step
            fill evaluates).
        stage_steps: steps of each training stage the architecture has before its
            diffusion stage (``{"autoencoder": N}`` for ldm3d); ``steps`` are the
            diffusion stage's. Stages run in order on one step counter.
    """

    run_dir: str = "runs/default"
    arch: str = "pseudo3d"
    network: dict[str, Any] = field(default_factory=dict)
    schedule: dict[str, Any] = field(default_factory=dict)
    preprocessing: dict[str, Any] = field(default_factory=dict)
    steps: int = 1000
    batch_size: int = 2
    lr: float = 2e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    min_lr_ratio: float = 0.05
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    outside_weight: float = 0.1
    log_mse_eps: float = 0.0
    amp: bool = True
    checkpoint_every: int = 100
    val_every: int = 0
    val_steps: int = 10
    log_every: int = 10
    keep_checkpoints: int = 3
    seed: int = 0
    num_workers: int = 0
    max_minutes: float = 0.0
    device: str = "auto"
    init_from: str = ""
    high_t_fraction: float = 0.0
    high_t_span: float = 0.1
    stage_steps: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class TrainResult:
    """What a finished (or stopped) run leaves: the live and EMA networks, and facts."""

    model: torch.nn.Module
    ema: torch.nn.Module
    step: int
    losses: list[float]
    elapsed: float
    validation: list[dict[str, Any]]


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warm-up to 1, then cosine decay to ``min_ratio`` at ``total``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


@dataclass(frozen=True)
class _Stages:
    """An architecture's training stages on one step counter: stage ``i`` runs steps
    ``starts[i]`` to ``starts[i] + lengths[i]``; the last one is the diffusion stage."""

    names: tuple[str, ...]
    starts: tuple[int, ...]
    lengths: tuple[int, ...]

    @classmethod
    def of(cls, config: TrainConfig) -> _Stages:
        names = get_architecture(config.arch).stages
        unknown = set(config.stage_steps) - set(names[:-1])
        if unknown:
            raise ValueError(f"{config.arch} has no training stage {sorted(unknown)}.")
        lengths = [int(config.stage_steps.get(n, 0)) for n in names[:-1]] + [int(config.steps)]
        starts = [sum(lengths[:i]) for i in range(len(lengths))]
        return cls(tuple(names), tuple(starts), tuple(lengths))

    @property
    def total(self) -> int:
        return self.starts[-1] + self.lengths[-1]

    def at(self, step: int) -> int:
        """The stage that runs ``step`` (a stage of no steps never runs)."""
        return max(i for i, s0 in enumerate(self.starts) if s0 <= step)

    def lr(self, step: int, config: TrainConfig) -> float:
        """Warm-up and cosine decay within the stage of ``step``."""
        i = self.at(step)
        return lr_factor(step - self.starts[i], config.warmup_steps, self.lengths[i],
                         config.min_lr_ratio)  # fmt: skip


class _StepBatches(torch.utils.data.Sampler):
    """Batches of example indices for steps ``start, start+1, ...`` of one rank."""

    def __init__(self, start: int, stop: int, batch: int, rank: int, world: int) -> None:
        self.start, self.stop, self.batch, self.rank, self.world = start, stop, batch, rank, world

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.stop):
            base = (step * self.world + self.rank) * self.batch
            yield list(range(base, base + self.batch))

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


def _collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


@torch.no_grad()
def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for e, p in zip(ema.parameters(), model.parameters(), strict=True):
        e.lerp_(p.detach(), 1 - decay)
    for e, b in zip(ema.buffers(), model.buffers(), strict=True):
        e.copy_(b)


def _card(config: TrainConfig, schedule: NoiseSchedule) -> ModelCard:
    """The card of the model being trained, for validation fills."""
    return ModelCard(
        architecture=config.arch,
        config=config.network,
        schedule=schedule,
        preprocessing=Preprocessing.coerce(config.preprocessing),
    )


class _Progress:
    """One status line with rate and ETA (tqdm is not a dependency)."""

    def __init__(self, total: int, start: int) -> None:
        self.total, self.start, self.t0 = total, start, time.perf_counter()

    def line(self, step: int, loss: float, lr: float) -> str:
        done = step + 1 - self.start
        rate = done / max(time.perf_counter() - self.t0, 1e-9)
        left = (self.total - step - 1) / rate if rate > 0 else float("inf")
        eta = time.strftime("%H:%M:%S", time.gmtime(left)) if math.isfinite(left) else "?"
        pct = 100.0 * (step + 1) / self.total
        return (
            f"step {step + 1}/{self.total} ({pct:5.1f}%) loss {loss:.4f} lr {lr:.2e} "
            f"{rate:.2f} it/s ETA {eta}"
        )


def train(
    config: TrainConfig,
    dataset: torch.utils.data.Dataset,
    *,
    resume: bool = True,
    validate_fn: Callable[[torch.nn.Module, dict[str, Any]], dict[str, float]] | None = None,
    info: DistInfo | None = None,
    extra_state: dict[str, Any] | None = None,
) -> TrainResult:
    """Train (or resume training) a diffusion inpainting network.

    Args:
        config: the run's settings.
        dataset: deterministic examples (``x0``, ``condition``, ``mask``) by index.
        resume: continue from ``run_dir``'s latest checkpoint if there is one.
        validate_fn: ``f(ema_model, card) -> metrics`` run on rank 0 every ``val_every``.
        info: distributed setup (from :func:`setup_distributed` when None).
        extra_state: JSON-able facts saved in checkpoints (e.g. training data list).
    """
    info = info or setup_distributed(config.device)
    stages, spec = _Stages.of(config), get_architecture(config.arch)
    run_dir = Path(config.run_dir)
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    barrier(info)
    # 1. model, EMA, optimizer, schedule (seeded so every rank starts identical)
    torch.manual_seed(config.seed)
    model = build_network(config.arch, **config.network).to(info.device)
    ema = copy.deepcopy(model).requires_grad_(False)
    schedule = NoiseSchedule(**config.schedule)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: stages.lr(s, config))
    start, elapsed, losses, val_hist = 0, 0.0, [], []
    stage_log: dict[str, dict[str, Any]] = {}  # steps, seconds and machine of each stage
    # 2. resume everything from the latest checkpoint, or start from exported weights
    ckpt_path = latest_checkpoint(run_dir) if resume else None
    if ckpt_path is None and config.init_from:
        _init_from(model, ema, config)
    if ckpt_path is not None:
        ckpt = load_checkpoint(ckpt_path, map_location=info.device)
        model.load_state_dict(ckpt["model"])
        ema.load_state_dict(ckpt["ema"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        start, elapsed = int(ckpt["step"]), float(ckpt["elapsed"])
        losses = [float(v) for v in ckpt.get("losses", [])]
        val_hist = json.loads(ckpt.get("validation", "[]"))
        stage_log = json.loads(ckpt.get("stages", "{}"))
        rng = ckpt["rng"]
        set_rng_state(rng[info.rank] if isinstance(rng, list) and len(rng) > info.rank else rng[0])
        if info.is_main:
            LOGGER.info("Resumed from %s at step %d", ckpt_path, start)
    net = model
    if info.distributed:
        ids = [info.device.index] if info.device.type == "cuda" else None
        # an earlier stage trains part of the network only (ldm3d: the autoencoder)
        net = DistributedDataParallel(
            model, device_ids=ids, find_unused_parameters=len(stages.names) > 1
        )
    use_amp = config.amp and info.device.type == "cuda"
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=_StepBatches(
            start, stages.total, config.batch_size, info.rank, info.world_size
        ),
        num_workers=config.num_workers,
        collate_fn=_collate,
        persistent_workers=False,
    )
    log_path = run_dir / "train_log.csv"
    progress = _Progress(stages.total, start)
    session_t0 = time.perf_counter()
    t_last = time.perf_counter()
    step = start
    model.train()
    for step, batch in zip(range(start, stages.total), loader, strict=False):
        # 3. noise and timesteps from a generator keyed by (seed, step, rank)
        gen = torch.Generator().manual_seed(
            int(np.random.SeedSequence([config.seed, step, info.rank]).generate_state(1)[0])
        )
        x0 = batch["x0"].to(info.device)
        cond = batch["condition"].to(info.device)
        mask = batch["mask"].to(info.device)
        i_stage = stages.at(step)
        stage, s0 = stages.names[i_stage], stages.starts[i_stage]
        entry = stage_log.setdefault(stage, {"elapsed_at_start": elapsed})
        if step == s0:
            if i_stage and s0:  # a later stage starts from the EMA weights of the earlier
                model.load_state_dict(ema.state_dict())
                if spec.latent and i_stage == len(stages.names) - 1:
                    model.fit_latent_scale(x0)  # latents of unit variance for the noise
        if i_stage < len(stages.names) - 1:  # an earlier stage: the network's own objective
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
                loss = net(torch.cat([x0, cond], dim=1), None, stage=stage)
        else:
            x0, cond = spec.encode(model, x0), spec.encode(model, cond)  # latents (ldm3d)
            n = x0.shape[0]
            t = sample_timesteps(
                n, schedule.num_train_timesteps, config.high_t_fraction, gen, config.high_t_span
            )
            t = t.to(info.device)
            noise = torch.randn(x0.shape, generator=gen).to(info.device)
            x_t = schedule.add_noise(x0, noise, t)
            target = schedule.training_target(x0, noise, t)
            # 4. forward (x_t, b, m, extras), loss weighted toward the mask, step
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
                out = net(torch.cat([x_t, cond], dim=1), t)
            loss = weighted_loss(out, target, mask, config.outside_weight, config.log_mse_eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        opt.step()
        sched.step()
        local = step - s0  # the EMA warms up again in each stage
        decay = min(config.ema_decay, (1 + local) / (10 + local))
        _ema_update(ema, model, decay)
        loss_v = float(loss.detach())
        losses.append(loss_v)
        done = step + 1
        now = time.perf_counter()
        elapsed += now - t_last
        t_last = now
        entry.update(steps=done - s0, wall_seconds=round(elapsed - entry["elapsed_at_start"], 1))
        # 5. log, checkpoint, validate (rank 0 writes; all ranks checkpoint in step)
        if info.is_main and (done % config.log_every == 0 or done == stages.total):
            new = not log_path.exists()
            with open(log_path, "a", newline="") as fh:
                w = csv.writer(fh)
                if new:
                    w.writerow(["step", "loss", "mean_loss", "lr", "grad_norm", "elapsed_s"])
                recent = losses[-config.log_every :]
                w.writerow(
                    [done, f"{loss_v:.6f}", f"{np.mean(recent):.6f}",
                     f"{sched.get_last_lr()[0]:.3e}", f"{float(grad_norm):.4f}", f"{elapsed:.1f}"]
                )  # fmt: skip
            print(progress.line(step, float(np.mean(recent)), sched.get_last_lr()[0]),
                  file=sys.stderr, flush=True)  # fmt: skip
        last_stage = i_stage == len(stages.names) - 1  # a model to validate exists
        if validate_fn and config.val_every and done % config.val_every == 0 and last_stage:
            if info.is_main:
                metrics = validate_fn(ema, _card(config, schedule))
                val_hist.append({"step": done, **metrics})
                _write_val(run_dir / "val_log.csv", val_hist[-1])
                LOGGER.info("validation at step %d: %s", done, metrics)
            barrier(info)
            t_last = time.perf_counter()  # validation time is not training time
        out_of_time = config.max_minutes and (now - session_t0) / 60 >= config.max_minutes
        if done % config.checkpoint_every == 0 or done == stages.total or out_of_time:
            entry["ran_on"] = _ran_on(info)
            _checkpoint(
                config, info, model, ema, opt, sched, done, elapsed, losses, val_hist, extra_state,
                stage_log,
            )  # fmt: skip
        if out_of_time:
            if info.is_main:
                LOGGER.info("Stopping at step %d: --max-minutes reached.", done)
            break
    return TrainResult(model, ema, step + 1 if losses else start, losses, elapsed, val_hist)


def _init_from(model: torch.nn.Module, ema: torch.nn.Module, config: TrainConfig) -> None:
    """Load exported weights into the live and EMA networks (fine-tuning)."""
    from bidsfill.diffusion.weights import load_weights

    net, card = load_weights(config.init_from)
    if card.architecture != config.arch or any(
        card.config.get(k) != v for k, v in config.network.items() if k != "in_channels"
    ):
        raise ValueError(
            f"{config.init_from} is a {card.architecture} model with config "
            f"{card.config}, not {config.arch} with {config.network}."
        )
    state = net.state_dict()
    # More input channels than the start (a conditioning channel added, e.g. --prefill or
    # --mirror): the first convolution's new input weights start at zero, so the network
    # computes exactly the exported function until training teaches it to use the new
    # channel. The start's channels keep their weights wherever the new order puts them.
    target = model.state_dict()
    for key, value in state.items():
        want = target[key].shape
        if value.shape != want:
            if not (key.endswith("conv_in.weight") and value.shape[1] < want[1]):
                raise ValueError(
                    f"{config.init_from}: {key} is {tuple(value.shape)}, not {tuple(want)}."
                )
            grown = torch.zeros(want, dtype=value.dtype)
            order = _channel_order(card.preprocessing.extras, config.preprocessing, want[1])
            if len(order) != value.shape[1]:
                raise ValueError(f"{config.init_from}: its {value.shape[1]} input channels are "
                                 f"not its extras {list(card.preprocessing.extras)} after the rest.")
            grown[:, order] = value
            state[key] = grown
    residual = Preprocessing.coerce(config.preprocessing).residual_scale is not None
    if residual and card.preprocessing.residual_scale is None:
        # An image model becomes a residual one: its output layer starts at zero, so the
        # first fill is exactly the prefill and training only ever adds a correction.
        for key in [k for k in state if k.startswith("out.")][-2:]:
            state[key] = torch.zeros_like(state[key])
    model.load_state_dict(state)
    ema.load_state_dict(state)
    LOGGER.info("Starting from %s (sha256 %s)", config.init_from, (card.sha256 or "")[:12])


def _channel_order(start_extras: tuple[str, ...], preprocessing: Any, n_target: int) -> list[int]:
    """Where each input channel of the start sits among the target's ``n_target``: the
    leading ones (noisy image, masked image, mask) in place, each extra by its name
    (extras are the last channels, in card order)."""
    target_extras = list(Preprocessing.coerce(preprocessing).extras)
    missing = [e for e in start_extras if e not in target_extras]
    if missing:
        raise ValueError(f"The start has extra channels {missing} this model lacks.")
    lead = n_target - len(target_extras)
    return list(range(lead)) + [lead + target_extras.index(e) for e in start_extras]


def _write_val(path: Path, row: dict[str, Any]) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)


def _ran_on(info: DistInfo) -> dict[str, Any]:
    """Where this stage trains, for the model card (CPU threads or GPU name, world size)."""
    import platform

    out: dict[str, Any] = {
        "device": info.device.type,
        "world_size": info.world_size,
        "machine": platform.machine(),
    }
    if info.device.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(info.device)
    else:
        out["cpu_threads"] = torch.get_num_threads()
    return out


def _checkpoint(
    config: TrainConfig,
    info: DistInfo,
    model: torch.nn.Module,
    ema: torch.nn.Module,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    step: int,
    elapsed: float,
    losses: list[float],
    val_hist: list[dict[str, Any]],
    extra_state: dict[str, Any] | None,
    stage_log: dict[str, Any],
) -> None:
    rng = get_rng_state()
    if info.distributed:
        import torch.distributed as dist

        gathered: list[Any] = [None] * info.world_size
        dist.all_gather_object(gathered, rng)
        rng_all: Any = gathered
    else:
        rng_all = [rng]
    if info.is_main:
        state = {
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "ema": {k: v.detach().cpu() for k, v in ema.state_dict().items()},
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "step": step,
            "elapsed": elapsed,
            "ran_on": _ran_on(info),
            "losses": losses,
            "validation": json.dumps(val_hist),
            "rng": [
                {k: (v.cpu() if torch.is_tensor(v) else v) for k, v in r.items()} for r in rng_all
            ],
            "config": json.dumps(config.to_dict()),
            "extra": json.dumps(extra_state or {}),
            "stages": json.dumps(stage_log),
        }
        save_checkpoint(state, Path(config.run_dir), step, keep=config.keep_checkpoints)
    barrier(info)
