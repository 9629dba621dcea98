"""Weights as safetensors plus a JSON model card; loading never unpickles.

The card (:class:`~bidsfill.diffusion.card.ModelCard`) records everything needed to
rebuild and use the model and what it was trained on, with the sha256 of the
safetensors file so a swapped or corrupted file is refused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from bidsfill.diffusion.card import ModelCard

__all__ = ["average_weights", "default_model_path", "file_sha256", "load_weights", "save_weights"]


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _paths(path: str | Path) -> tuple[Path, Path]:
    path = Path(path)
    base = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
    return base.with_suffix(".safetensors"), base.with_suffix(".json")


def save_weights(
    model: torch.nn.Module, card: ModelCard | Mapping[str, Any], path: str | Path
) -> Path:
    """Write ``<name>.safetensors`` and its ``<name>.json`` card; return the weights path.

    Args:
        model: the network (built from the card's architecture and config).
        card: the model card, or its dict with at least "architecture", "config",
            "schedule" and "preprocessing"; name (default: the file stem) and sha256
            are filled in here.
        path: target path, with or without the ``.safetensors`` suffix.
    """
    if not isinstance(card, ModelCard):
        for key in ("architecture", "config", "schedule", "preprocessing"):
            if key not in card:
                raise ValueError(f"The model card needs a {key!r} entry.")
        card = ModelCard.from_dict(card)
    st_path, card_path = _paths(path)
    st_path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(st_path), metadata={"architecture": card.architecture})
    card.replace(name=card.name or st_path.stem, sha256=file_sha256(st_path)).save(card_path)
    return st_path


def load_weights(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, ModelCard]:
    """Load a model and its card, refusing files that do not match the card.

    Raises:
        ValueError: missing card or weights, sha256 mismatch, or state-dict keys/shapes
            that do not fit the card's architecture and config.
    """
    st_path, card_path = _paths(path)
    if not st_path.is_file():
        raise ValueError(f"Model weights {st_path} do not exist.")
    if not card_path.is_file():
        raise ValueError(
            f"Model weights {st_path} have no model card {card_path.name} beside them."
        )
    card = ModelCard.load(card_path)
    digest = file_sha256(st_path)
    if card.sha256 != digest:
        raise ValueError(
            f"Model weights {st_path.name} do not match the sha256 in their model card "
            "(file changed or corrupted)."
        )
    try:
        model = card.spec.build(**card.config)
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"Model card {card_path.name} describes no valid network: {err}") from None
    state = load_file(str(st_path))  # safetensors: plain tensors, no pickle
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    if expected != got:
        diff = sorted(set(expected) ^ set(got)) or sorted(
            k for k in expected if expected[k] != got[k]
        )
        raise ValueError(
            f"Model weights {st_path.name} do not fit the architecture in their card "
            f"(first mismatching tensor: {diff[0]})."
        )
    model.load_state_dict(state)
    model.to(device).eval()
    return model, card


def average_weights(paths: list[str | Path]) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The uniform mean of snapshots of one network (stochastic weight averaging, Izmailov
    et al. 2018) and the first snapshot's card with a ``weight_average`` entry naming each.

    ``torch.optim.swa_utils.AveragedModel`` averages during a run; these snapshots already
    exist as files, so they are averaged here. Integer buffers keep the first's values.

    Raises:
        ValueError: fewer than two snapshots, or snapshots of different networks.
    """
    if len(paths) < 2:
        raise ValueError("Give at least two snapshots to average.")
    loaded = [load_weights(p) for p in paths]
    first_model, first = loaded[0]
    for path, (_, card) in zip(paths[1:], loaded[1:], strict=True):
        if card.architecture != first.architecture or card.config != first.config:
            raise ValueError(f"{Path(path).name} is not the same network as {Path(paths[0]).name}.")
    states = [model.state_dict() for model, _ in loaded]
    mean = {
        key: torch.stack([s[key].double() for s in states]).mean(0).to(value.dtype)
        if value.is_floating_point() else value
        for key, value in states[0].items()
    }  # fmt: skip
    first_model.load_state_dict(mean)
    out = first.to_dict()
    out.pop("sha256", None)
    out["weight_average"] = {
        "method": "uniform mean of the snapshots' weights (SWA, Izmailov et al. 2018)",
        "sources": [
            {"name": Path(p).name, "steps": card.to_dict().get("training", {}).get("steps"),
             "sha256": card.sha256}  # fmt: skip
            for p, (_, card) in zip(paths, loaded, strict=True)
        ],
    }
    return first_model, out


def default_model_path(method: str) -> Path | None:
    """The shipped weights for a fill method, or None when none are bundled."""
    path = Path(str(resources.files("bidsfill") / "data" / "models" / f"{method}.safetensors"))
    return path if path.is_file() and path.with_suffix(".json").is_file() else None
