"""Training the histology DDPM on patches of whole fields or sections.

Patches are drawn at random from each image outside its held-out region (by default
the bottom-right quarter, kept for evaluation), with random 90° rotations, flips and an
intensity augmentation (gamma 0.8-1.25, contrast x0.9-1.1, offset ±0.05 in normalised
units). Each image is normalised by the percentiles of its own training region (the
rule inference applies to the intact pixels). Works for one small field or a lab's
whole sections (the images are memory-mapped TIFFs when uncompressed; a patch reads
only its window). Patches that are mostly glass are redrawn (``--min-tissue``, see
``tissue.py``; the card records the rule and how often it fired). The loss is the MSE of
the noise; weights are an EMA of the network's.

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
from bidsfill.microscopy.tissue import BLOCK, FLAT_TOLERANCE, tissue_grid

__all__ = [
    "MIN_TISSUE",
    "TISSUE_DRAWS",
    "heldout_quarter",
    "main",
    "sample_batch",
    "tissue_filter_facts",
    "train",
]

#: Default least tissue fraction of a training patch (0 turns the filter off).
MIN_TISSUE = 0.5
#: Draws per patch before the filter gives up and takes the draw with most tissue.
TISSUE_DRAWS = 20


def heldout_quarter(shape: tuple[int, int]) -> tuple[slice, slice]:
    """The bottom-right quarter of an image: never seen in training."""
    return slice(shape[0] // 2, shape[0]), slice(shape[1] // 2, shape[1])


class _Source:
    def __init__(self, image: np.ndarray, heldout: bool, min_tissue: float = 0.0) -> None:
        self.image = image
        h, w = image.shape
        self.hold = heldout_quarter((h, w)) if heldout else None
        allowed = np.ones((h, w), bool)
        if self.hold is not None:
            allowed[self.hold] = False
        sub = image[:: max(1, h // 512), :: max(1, w // 512)]
        self.lo, self.hi = intensity_window(sub[allowed[:: max(1, h // 512), :: max(1, w // 512)]])
        self.min_tissue = float(min_tissue)
        self.tissue = tissue_grid(image, self.lo, self.hi) if self.min_tissue > 0 else None
        self.drawn = self.rejected = self.fallbacks = 0

    def _draw(self, patch: int, rng: np.random.Generator) -> tuple[int, int]:
        h, w = self.image.shape
        for _ in range(1000):
            y, x = int(rng.integers(0, h - patch + 1)), int(rng.integers(0, w - patch + 1))
            if self.hold is None:
                return y, x
            hy, hx = self.hold
            if y + patch <= hy.start or x + patch <= hx.start:  # clear of the quarter
                return y, x
        raise ValueError("No training patch fits outside the held-out quarter.")

    def corner(self, patch: int, rng: np.random.Generator) -> tuple[int, int]:
        """A patch corner outside the held-out quarter; with the tissue filter, the first
        of ``TISSUE_DRAWS`` draws that is tissue enough, else the draw with most tissue."""
        self.drawn += 1
        if self.tissue is None:
            return self._draw(patch, rng)
        best, best_frac = (0, 0), -1.0
        for _ in range(TISSUE_DRAWS):
            y, x = self._draw(patch, rng)
            frac = self.tissue.fraction(y, x, patch)
            if frac >= self.min_tissue:
                return y, x
            self.rejected += 1
            if frac > best_frac:
                best, best_frac = (y, x), frac
        self.fallbacks += 1
        return best


def sample_batch(sources: list[_Source], batch: int, patch: int,
                 rng: np.random.Generator, augment: bool = True) -> torch.Tensor:  # fmt: skip
    out = np.empty((batch, 1, patch, patch), np.float32)
    for i in range(batch):
        src = sources[int(rng.integers(len(sources)))]
        y, x = src.corner(patch, rng)
        p = np.asarray(src.image[y : y + patch, x : x + patch], np.float64) - src.lo
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
    min_tissue: float = MIN_TISSUE,
    log: Path | None = None,
    save_every: int = 0,
    out: Path | None = None,
) -> tuple[torch.nn.Module, ModelCard, list[float]]:
    """Train (or continue) a histology DDPM; returns the EMA network, its card, the losses.

    ``min_tissue``: least tissue fraction of a patch (``tissue.py``); 0 disables the filter.
    """
    from copy import deepcopy

    card = card or new_card()
    patch = int(card.preprocessing.patch_size[0])
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = card.spec.build(**card.config)
    ema = deepcopy(net).requires_grad_(False)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sources = [_Source(im, heldout, min_tissue) for im in images]
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
            _export(ema, card, losses, step, elapsed, out, batch, lr, sources)
        if minutes is not None and elapsed > minutes * 60:
            break
    card = _record(card, losses, step, time.monotonic() - t0, batch, lr, sources)
    if out is not None:
        _export(ema, card, losses, step, time.monotonic() - t0, out, batch, lr, sources)
    return ema, card, losses


def tissue_filter_facts(sources: list[_Source]) -> dict[str, Any]:
    """The tissue filter's rule and what it did, for the card."""
    least = sources[0].min_tissue if sources else 0.0
    if least <= 0:
        return {"min_tissue_fraction": 0.0, "rule": "off: patches drawn anywhere outside "
                "the held-out region, glass included"}  # fmt: skip
    return {
        "min_tissue_fraction": least,
        "rule": f"tissue = blocks of {BLOCK} px (grid of at most 512 a side) whose pixel "
        f"std exceeds {FLAT_TOLERANCE:.0%} of the intensity window, after removing flat "
        "areas narrower than 3 blocks (binary opening); a patch is kept when at least "
        f"{least:.0%} of its area is tissue (blocks weighted by overlap), else redrawn, at most "
        f"{TISSUE_DRAWS} draws (then the draw with most tissue)",
        "tissue_fraction_per_image": [round(s.tissue.fraction_of_image, 4) for s in sources],
        "patches": sum(s.drawn for s in sources),
        "rejected_draws": sum(s.rejected for s in sources),
        "patches_after_all_draws_failed": sum(s.fallbacks for s in sources),
    }


def _record(card: ModelCard, losses: list[float], step: int, seconds: float, batch: int,
            lr: float, sources: list[_Source]) -> ModelCard:  # fmt: skip
    tr = dict(card.training)
    tr.update({"steps": step, "batch_size": batch, "lr": lr, "wall_seconds": round(seconds, 1),
               "final_loss_mean_last_100": round(float(np.mean(losses[-100:])), 5),
               "first_loss_mean_first_100": round(float(np.mean(losses[:100])), 5),
               "weights": "ema", "tissue_filter": tissue_filter_facts(sources)})  # fmt: skip
    return card.replace(training=tr)


def _export(ema, card, losses, step, seconds, out: Path, batch, lr, sources) -> Path:
    from bidsfill.diffusion.weights import save_weights

    return save_weights(ema, _record(card, losses, step, seconds, batch, lr, sources), out)


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
    ap.add_argument(
        "--min-tissue",
        type=float,
        default=MIN_TISSUE,
        metavar="FRACTION",
        help="least tissue fraction of a training patch; mostly-glass patches "
        f"are redrawn (default {MIN_TISSUE}; 0 disables)",
    )
    ap.add_argument(
        "--no-heldout", action="store_true", help="train on whole images (no held-out quarter)"
    )
    ap.add_argument(
        "--card-json",
        type=Path,
        default=None,
        help="JSON of training facts for the card (data, licence, ...)",
    )
    args = ap.parse_args(argv)
    if not 0 <= args.min_tissue <= 1:
        ap.error("--min-tissue must be a fraction from 0 to 1")
    torch.set_num_threads(args.threads)
    images = [open_lazy(p)[0] for p in args.images]
    facts: dict[str, Any] = json.loads(args.card_json.read_text()) if args.card_json else {}
    facts["heldout"] = (
        "none"
        if args.no_heldout
        else "bottom-right quarter of each image (rows and columns from the middle)"
    )
    card = new_card(patch=args.patch, training=facts)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    log = args.out.with_suffix(".log.jsonl")
    _, card, losses = train(images, card=card, steps=args.steps, batch=args.batch, lr=args.lr,
                            seed=args.seed, minutes=args.minutes, heldout=not args.no_heldout,
                            min_tissue=args.min_tissue, log=log, save_every=args.save_every, out=args.out)  # fmt: skip
    print(
        f"trained {len(losses)} steps; loss {np.mean(losses[:20]):.4f} -> "
        f"{np.mean(losses[-20:]):.4f}; weights {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
