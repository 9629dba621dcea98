"""Checkpoints that resume a run exactly and never unpickle arbitrary objects.

A checkpoint is ``torch.save`` of plain tensors, numbers, strings, lists and dicts only
(model, EMA, optimizer, LR scheduler, step, RNG states), read back with
``torch.load(weights_only=True)``. Files are written to a temporary name and renamed,
so an interrupted save never leaves a half-written checkpoint as the latest.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "get_rng_state",
    "latest_checkpoint",
    "load_checkpoint",
    "save_checkpoint",
    "set_rng_state",
]


def get_rng_state() -> dict[str, Any]:
    """Every RNG this process uses, as tensors and plain values."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
        "numpy_pos": int(np_state[2]),
        "numpy_gauss": [int(np_state[3]), float(np_state[4])],
        "python": json.dumps(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`get_rng_state` returned."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(
        (
            "MT19937",
            state["numpy_keys"].numpy().astype(np.uint32),
            int(state["numpy_pos"]),
            int(state["numpy_gauss"][0]),
            float(state["numpy_gauss"][1]),
        )
    )
    py = json.loads(state["python"])
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(state: dict[str, Any], run_dir: Path, step: int, keep: int = 3) -> Path:
    """Write ``ckpt-<step>.pt`` atomically, point ``latest.json`` at it, prune old ones."""
    run_dir = Path(run_dir)
    ckpt_dir = run_dir / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    path = ckpt_dir / f"ckpt-{step:08d}.pt"
    tmp = path.with_suffix(".pt.tmp")
    torch.save(state, tmp)
    tmp.replace(path)
    latest = run_dir / "latest.json"
    tmp_json = latest.with_suffix(".json.tmp")
    tmp_json.write_text(json.dumps({"step": step, "checkpoint": str(path.relative_to(run_dir))}))
    tmp_json.replace(latest)
    for old in sorted(ckpt_dir.glob("ckpt-*.pt"))[:-keep] if keep > 0 else []:
        old.unlink()
    return path


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint ``latest.json`` names, or None for a fresh run."""
    latest = Path(run_dir) / "latest.json"
    if not latest.is_file():
        return None
    path = Path(run_dir) / json.loads(latest.read_text())["checkpoint"]
    return path if path.is_file() else None


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint without unpickling code (``weights_only=True``)."""
    return torch.load(path, map_location=map_location, weights_only=True)
