"""Histology repair with an unconditional 2D DDPM and RePaint (Kropp et al. 2023).

The network is the engine's own 2D U-Net (:class:`~bidsfill.diffusion.networks.Image2DUNet`,
architecture spec "histology2d"), built from MONAI's diffusion residual blocks; not
MONAI's ``DiffusionModelUNet``, which needs einops for any self-attention and always puts
attention in its bottleneck (slow on CPU). The paper's cosine schedule, an
epsilon-predicting network and the engine's RePaint (:func:`~bidsfill.diffusion.samplers.
sample_repaint`, jump length 5 by default) on a DDIM time grid.

Images larger than the model's patch are repaired in overlapping tiles that are denoised
in lockstep: at every step the network runs on each tile that holds mask pixels and the
tiles' noise predictions are blended with pyramid weights into one prediction for the
whole window, so neighbouring tiles never disagree; only mask pixels are ever written.
An image at another pixel size is resampled to the model's inside the window only and
the fill resampled back; pixels outside the mask are the input's, bit for bit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bidsfill.diffusion.card import ModelCard, Preprocessing, SamplingDefaults
from bidsfill.diffusion.samplers import sample_repaint
from bidsfill.diffusion.schedules import NoiseSchedule
from bidsfill.microscopy.io import check_mask

__all__ = [
    "ARCH",
    "DEFAULT_JUMP_LENGTH",
    "DEFAULT_STEPS",
    "RepairInfo",
    "TiledModel",
    "default_model_path",
    "intensity_window",
    "load_model",
    "new_card",
    "repaint_image",
    "repaint_large",
]

ARCH = "histology2d"
DEFAULT_STEPS = 25
DEFAULT_JUMP_LENGTH = 5
DEFAULT_JUMP_N_SAMPLE = 2
#: x0 estimates are clipped to this range of normalised intensity.
CLIP = (-2.0, 2.0)
PERCENTILES = (0.5, 99.5)


def new_card(
    *, patch: int = 64, pixel_size_um: float = 1.0, timesteps: int = 256,
    config: dict[str, Any] | None = None, training: dict[str, Any] | None = None,
) -> ModelCard:  # fmt: skip
    """A card for a new histology model (cosine schedule of 256 steps as in the paper)."""
    from bidsfill.diffusion.architectures import get_architecture

    spec = get_architecture(ARCH)
    cfg = {**spec.default_config, **(config or {})}
    pre = Preprocessing(
        patch_size=(patch, patch), voxel_size=(pixel_size_um / 1000, pixel_size_um / 1000),
        layout="image (rows, columns), grayscale; the network sees (N, 1, H, W)",
        extra={"pixel_size_um": [pixel_size_um, pixel_size_um],
               "intensity_map": f"percentiles {PERCENTILES} of the intact pixels -> [-1, 1]",
               "modality": "microscopy"},
    )  # fmt: skip
    return ModelCard(
        architecture=ARCH, config=cfg,
        schedule=NoiseSchedule(timesteps, "cosine", "epsilon"),
        preprocessing=pre, sampling=SamplingDefaults(steps=DEFAULT_STEPS),
        training=dict(training or {}),
        extra={"sampler": {"name": "repaint", "jump_length": DEFAULT_JUMP_LENGTH,
                           "jump_n_sample": DEFAULT_JUMP_N_SAMPLE}},
    )  # fmt: skip


def default_model_path() -> Path:
    """The shipped histology model (``bidsfill/data/models/histology/``)."""
    from importlib import resources

    return Path(str(resources.files("bidsfill") / "data" / "models" / "histology"
                    / "histology2d.safetensors"))  # fmt: skip


def load_model(path: str | Path | None = None) -> tuple[torch.nn.Module, ModelCard]:
    from bidsfill.diffusion.weights import load_weights

    return load_weights(path or default_model_path())


def model_pixel_size(card: ModelCard) -> float:
    return float(card.preprocessing.extra.get("pixel_size_um", [1.0])[0])


def intensity_window(values: np.ndarray) -> tuple[float, float]:
    lo, hi = np.percentile(values.astype(np.float64), PERCENTILES)
    return float(lo), float(max(hi, lo + 1.0))


def _weights(tile: int) -> torch.Tensor:
    ramp = np.minimum(np.arange(tile) + 1, tile - np.arange(tile)).astype(np.float64)
    ramp = np.clip(ramp / (tile / 4), 1e-3, 1.0)
    return torch.from_numpy(np.outer(ramp, ramp)).float()


class TiledModel:
    """``model(x, t)`` on a ``(1, 1, H, W)`` canvas by overlapping tiles.

    Only tiles holding mask pixels run; their outputs are blended with pyramid weights.
    Pixels no tile covers (all outside the mask) get 0, which RePaint overwrites.
    ``tile=None`` runs the network once on the whole canvas.
    """

    def __init__(self, net: torch.nn.Module, mask: np.ndarray, tile: int | None,
                 overlap: int, batch: int = 16) -> None:  # fmt: skip
        from bidsfill.microscopy.io import iter_tiles

        self.net, self.tile, self.batch = net, tile, batch
        self.windows = []
        if tile is not None:
            self.windows = [w for w in iter_tiles(mask.shape, tile, overlap) if mask[w].any()]
            self.w = _weights(tile)
        self.calls = 0

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.tile is None:
            return self.net(x, t)
        out = torch.zeros_like(x)
        norm = torch.zeros_like(x)
        w = self.w.to(x)
        for i in range(0, len(self.windows), self.batch):
            wins = self.windows[i : i + self.batch]
            crops = torch.cat([x[:, :, ys, xs] for ys, xs in wins])
            pred = self.net(crops, t[:1].expand(len(wins)))
            for (ys, xs), p in zip(wins, pred, strict=True):
                out[0, :, ys, xs] += p * w
                norm[0, :, ys, xs] += w
        return torch.where(norm > 0, out / norm.clamp(min=1e-12), out)


@dataclass
class RepairInfo:
    method: str
    sampler: str
    steps: int
    jump_length: int
    jump_n_sample: int
    model_calls: int
    tiles: int
    seconds: float
    resampled: bool
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _pad_to(n: int, div: int, least: int) -> int:
    return max(least, -(-n // div) * div)


def _repaint_window(net, card, image, mask, *, steps, jump_length, jump_n_sample, seed,
                    tile, overlap, batch):  # fmt: skip
    """Fill ``mask`` of a float window; returns the float window and (calls, tiles)."""
    lo, hi = intensity_window(image[~mask] if (~mask).any() else image)
    x = 2 * (image.astype(np.float64) - lo) / (hi - lo) - 1
    div = card.spec.spatial_divisor(card.config)
    patch = int(card.preprocessing.patch_size[0])
    if tile is not None and max(image.shape) <= tile:
        tile = None
    least = tile or div
    ph = _pad_to(image.shape[0], div, least) - image.shape[0]
    pw = _pad_to(image.shape[1], div, least) - image.shape[1]
    xp = np.pad(x, ((0, ph), (0, pw)), mode="symmetric")
    mp = np.pad(mask, ((0, ph), (0, pw)))
    tiled = TiledModel(net, mp, tile, overlap if tile else 0, batch)
    known = torch.from_numpy(xp).float()[None, None]
    known_mask = torch.from_numpy(~mp).float()[None, None]
    gen = torch.Generator().manual_seed(int(seed))
    res = sample_repaint(tiled, card.schedule, known, known_mask, steps=steps, generator=gen,
                         jump_length=jump_length, jump_n_sample=jump_n_sample, clip=CLIP)  # fmt: skip
    filled = res.sample[0, 0].numpy()[: image.shape[0], : image.shape[1]].astype(np.float64)
    del patch
    return (filled + 1) / 2 * (hi - lo) + lo, tiled.calls, max(1, len(tiled.windows))


def repaint_image(
    net: torch.nn.Module,
    card: ModelCard,
    image: np.ndarray,
    mask: np.ndarray,
    *,
    pixel_size_um: float | None = None,
    steps: int | None = None,
    jump_length: int = DEFAULT_JUMP_LENGTH,
    jump_n_sample: int = DEFAULT_JUMP_N_SAMPLE,
    seed: int = 0,
    tile: int | None = -1,
    overlap: int | None = None,
    batch: int = 16,
) -> tuple[np.ndarray, RepairInfo]:
    """Repair the pixels of ``mask`` in a 2D 8/16-bit ``image``.

    Args:
        pixel_size_um: the image's pixel size; when it differs from the model's by more
            than 1 % the image is resampled to the model's grid (inside the repair only).
        tile: tile size in model pixels (-1: the card's patch size; None: one pass).
        overlap: tile overlap (default: a quarter of a tile).

    Returns the repaired image (input dtype; pixels outside the mask identical) and
    what was done.
    """
    t0 = time.monotonic()
    mask = check_mask(mask, image.shape)
    steps = int(steps or card.sampling.steps or DEFAULT_STEPS)
    if tile == -1:
        tile = int(card.preprocessing.patch_size[0])
    overlap = (tile // 4 if tile else 0) if overlap is None else overlap
    out = image.copy()
    info = RepairInfo("ddpm-repaint", "repaint", steps, jump_length, jump_n_sample, 0, 0,
                      0.0, False, int(seed))  # fmt: skip
    if not mask.any():
        info.seconds = time.monotonic() - t0
        return out, info
    model_px = model_pixel_size(card)
    factor = 1.0 if pixel_size_um is None else float(pixel_size_um) / model_px
    work, work_mask = image.astype(np.float64), mask
    if abs(factor - 1) > 0.01:
        from skimage.transform import resize

        shape = tuple(max(8, int(round(s * factor))) for s in image.shape)
        work = resize(work, shape, order=1, preserve_range=True, anti_aliasing=factor < 1)
        work_mask = resize(mask.astype(float), shape, order=1) > 0.01
        info.resampled = True
    net.eval()
    filled, calls, tiles = _repaint_window(
        net, card, work, work_mask, steps=steps, jump_length=jump_length,
        jump_n_sample=jump_n_sample, seed=seed, tile=tile, overlap=overlap, batch=batch,
    )  # fmt: skip
    if info.resampled:
        from skimage.transform import resize

        filled = resize(filled, image.shape, order=1, preserve_range=True)
    lim = np.iinfo(image.dtype)
    out[mask] = np.clip(np.rint(filled[mask]), lim.min, lim.max).astype(image.dtype)
    info.model_calls, info.tiles = calls, tiles
    info.seconds = round(time.monotonic() - t0, 3)
    return out, info


def repaint_large(
    net: torch.nn.Module,
    card: ModelCard,
    image: np.ndarray,
    mask: np.ndarray,
    out: np.ndarray,
    *,
    window: int = 1024,
    seed: int = 0,
    **kw: Any,
) -> RepairInfo:
    """Repair an image larger than memory window by window (``mask`` and ``out`` may be
    memory maps; ``out`` must already hold the input, ``image`` is not read).

    Windows of ``window`` pixels overlap by a quarter; their cores (each window's share
    of the overlap) tile the image. In raster order each window repairs the mask pixels
    of its core, seeing what earlier windows repaired as known and the mask pixels not
    yet repaired as unknown. Only mask pixels of ``out`` are written.
    """
    from bidsfill.microscopy.io import iter_tiles

    del image
    t0 = time.monotonic()
    margin = window // 8
    cores: list[tuple[int, int, int, int]] = []  # repaired cores, global coordinates
    calls = tiles = 0
    last: RepairInfo | None = None
    for ys, xs in iter_tiles(mask.shape, window, 2 * margin):
        y0 = ys.start if ys.start == 0 else ys.start + margin
        x0 = xs.start if xs.start == 0 else xs.start + margin
        y1 = ys.stop if ys.stop == mask.shape[0] else ys.stop - margin
        x1 = xs.stop if xs.stop == mask.shape[1] else xs.stop - margin
        m = np.asarray(mask[ys, xs]) != 0
        core = np.zeros_like(m)
        core[y0 - ys.start : y1 - ys.start, x0 - xs.start : x1 - xs.start] = True
        if not (m & core).any():
            cores.append((y0, y1, x0, x1))
            continue
        done = np.zeros_like(m)
        for a0, a1, b0, b1 in cores:
            done[max(a0 - ys.start, 0) : max(a1 - ys.start, 0),
                 max(b0 - xs.start, 0) : max(b1 - xs.start, 0)] = True  # fmt: skip
        todo = m & ~done
        current = np.array(out[ys, xs])
        repaired, last = repaint_image(net, card, current, todo, seed=seed + tiles, **kw)
        write = todo & core
        current[write] = repaired[write]
        out[ys, xs] = current
        cores.append((y0, y1, x0, x1))
        calls += last.model_calls
        tiles += last.tiles
    info = last or RepairInfo("ddpm-repaint", "repaint", 0, 0, 0, 0, 0, 0.0, False, seed)
    info.model_calls, info.tiles, info.seed = calls, tiles, seed
    info.seconds = round(time.monotonic() - t0, 3)
    return info
