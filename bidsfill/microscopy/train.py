"""Training the histology DDPM on patches of whole fields or sections.

Patches are drawn at random from each image outside its held-out region (by default
the bottom-right quarter, kept for evaluation), with random 90° rotations, flips and an
intensity augmentation (gamma 0.8-1.25, contrast x0.9-1.1, offset ±0.05 in normalised
units). Each image is normalised by the percentiles of its own training region (the
rule inference applies to the intact pixels). Works for one small field or a lab's
whole sections (the images are memory-mapped TIFFs when uncompressed; a patch reads
only its window). The loss is the MSE of the noise; weights are an EMA of the
network's.

    bidsfill-train --microscopy IMAGE [IMAGE ...] --out model.safetensors --minutes 20
    (or python -m bidsfill.microscopy.train ...)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bidsfill.diffusion.card import ModelCard
from bidsfill.microscopy.model import intensity_window, new_card

__all__ = ["heldout_quarter", "main", "sample_batch", "train"]


def heldout_quarter(shape: tuple[int, int]) -> tuple[slice, slice]:
    """The bottom-right quarter of an image: never seen in training."""
    return slice(shape[0] // 2, shape[0]), slice(shape[1] // 2, shape[1])


class _Source:
    def __init__(self, image: np.ndarray, heldout: bool) -> None:
        self.image = image
        h, w = image.shape
        self.hold = heldout_quarter((h, w)) if heldout else None
        allowed = np.ones((h, w), bool)
        if self.hold is not None:
            allowed[self.hold] = False
        sub = image[:: max(1, h // 512), :: max(1, w // 512)]
        self.lo, self.hi = intensity_window(sub[allowed[:: max(1, h // 512), :: max(1, w // 512)]])

    def corner(self, patch: int, rng: np.random.Generator) -> tuple[int, int]:
        h, w = self.image.shape
        for _ in range(1000):
            y, x = int(rng.integers(0, h - patch + 1)), int(rng.integers(0, w - patch + 1))
            if self.hold is None:
                return y, x
            hy, hx = self.hold
            if y + patch <= hy.start or x + patch <= hx.start:  # clear of the quarter
                return y, x
        raise ValueError("No training patch fits outside the held-out quarter.")


def sample_batch(sources: list[_Source], batch: int, patch: int,
                 rng: np.random.Generator, augment: bool = True) -> torch.Tensor:  # fmt: skip
    out = np.empty((batch, 1, patch, patch), np.float32)
    for i in range(batch):
        src = sources[int(rng.integers(len(sources)))]
        y, x = src.corner(patch, rng)
        p = (np.asarray(src.image[y : y + patch, x : x + patch], np.float64) - src.lo)
        p = p / (src.hi - src.lo)
        if augment:
            p = np.rot90(p, int(rng.integers(4)))
            if rng.integers(2):
                p = p[:, ::-1]
            p = np.clip(p, 0, None) ** rng.uniform(0.8, 1.25)
            p = (p - 0.5) * rng.uniform(0.9, 1.1) + 0.5 + rng.uniform(-0.025, 0.025)
        out[i, 0] = 2 * p - 1
    return torch.from_numpy(out)


def train(
    images: list[np.ndarray],
    *,
    card: ModelCard | None = None,
    steps: int = 100,
    batch: int = 8,
    lr: float = 2e-4,
    ema_decay: float = 0.995,
    seed: int = 0,
    minutes: float | None = None,
    heldout: bool = True,
    log: Path | None = None,
    save_every: int = 0,
    out: Path | None = None,
) -> tuple[torch.nn.Module, ModelCard, list[float]]:
    """Train (or continue) a histology DDPM; returns the EMA network, its card, the losses."""
    from copy import deepcopy

    card = card or new_card()
    patch = int(card.preprocessing.patch_size[0])
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = card.spec.build(**card.config)
    ema = deepcopy(net).requires_grad_(False)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sources = [_Source(im, heldout) for im in images]
    sched = card.schedule
    losses: list[float] = []
    t0 = time.monotonic()
    step = 0
    for step in range(1, steps + 1):
        x0 = sample_batch(sources, batch, patch, rng)
        noise = torch.randn_like(x0)
        t = torch.randint(0, sched.num_train_timesteps, (batch,))
        xt = sched.add_noise(x0, noise, t)
        loss = (net(xt, t) - sched.training_target(x0, noise, t)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            for pe, pn in zip(ema.parameters(), net.parameters(), strict=True):
                pe.lerp_(pn, 1 - ema_decay)
        losses.append(loss.item())
        elapsed = time.monotonic() - t0
        if log is not None and step % 20 == 0:
            with open(log, "a") as fh:
                fh.write(json.dumps({"step": step, "loss20": float(np.mean(losses[-20:])),
                                     "seconds": round(elapsed, 1)}) + "\n")  # fmt: skip
        if out is not None and save_every and step % save_every == 0:
            _export(ema, card, losses, step, elapsed, out, batch, lr)
        if minutes is not None and elapsed > minutes * 60:
            break
    card = _record(card, losses, step, time.monotonic() - t0, batch, lr)
    if out is not None:
        _export(ema, card, losses, step, time.monotonic() - t0, out, batch, lr)
    return ema, card, losses


def _record(card: ModelCard, losses: list[float], step: int, seconds: float, batch: int,
            lr: float) -> ModelCard:  # fmt: skip
    tr = dict(card.training)
    tr.update({"steps": step, "batch_size": batch, "lr": lr, "wall_seconds": round(seconds, 1),
               "final_loss_mean_last_100": round(float(np.mean(losses[-100:])), 5),
               "first_loss_mean_first_100": round(float(np.mean(losses[:100])), 5),
               "weights": "ema"})  # fmt: skip
    return card.replace(training=tr)


def _export(ema, card, losses, step, seconds, out: Path, batch, lr) -> Path:
    from bidsfill.diffusion.weights import save_weights

    return save_weights(ema, _record(card, losses, step, seconds, batch, lr), out)


def main(argv: list[str] | None = None) -> int:
    from bidsfill.microscopy.io import open_lazy

    ap = argparse.ArgumentParser(prog="bidsfill-train --microscopy",
                                 description=__doc__.split("\n\n")[0])  # fmt: skip
    ap.add_argument("images", nargs="+", type=Path, help="8/16-bit grayscale PNG/TIFF fields")
    ap.add_argument("--out", type=Path, required=True, help="weights path (.safetensors)")
    ap.add_argument("--steps", type=int, default=100000)
    ap.add_argument("--minutes", type=float, default=None, help="wall-clock budget")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--patch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--save-every", type=int, default=200)
    ap.add_argument("--no-heldout", action="store_true",
                    help="train on whole images (no held-out quarter)")
    ap.add_argument("--card-json", type=Path, default=None,
                    help="JSON of training facts for the card (data, licence, ...)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    images = [open_lazy(p)[0] for p in args.images]
    facts: dict[str, Any] = json.loads(args.card_json.read_text()) if args.card_json else {}
    facts["heldout"] = ("none" if args.no_heldout else
                        "bottom-right quarter of each image (rows and columns from the middle)")
    card = new_card(patch=args.patch, training=facts)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    log = args.out.with_suffix(".log.jsonl")
    _, card, losses = train(images, card=card, steps=args.steps, batch=args.batch, lr=args.lr,
                            seed=args.seed, minutes=args.minutes, heldout=not args.no_heldout,
                            log=log, save_every=args.save_every, out=args.out)  # fmt: skip
    print(f"trained {len(losses)} steps; loss {np.mean(losses[:20]):.4f} -> "
          f"{np.mean(losses[-20:]):.4f}; weights {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
