"""Export a training checkpoint's EMA weights as safetensors + the model card the engine loads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bidsfill.diffusion.architectures import build_network, get_architecture
from bidsfill.diffusion.card import ModelCard, Preprocessing, SamplingDefaults
from bidsfill.diffusion.schedules import NoiseSchedule
from bidsfill.diffusion.weights import save_weights
from bidsfill.train.checkpoint import latest_checkpoint, load_checkpoint

__all__ = ["export_checkpoint"]


def export_checkpoint(
    checkpoint: str | Path,
    out_path: str | Path,
    *,
    use_ema: bool = True,
    metrics: dict[str, Any] | None = None,
    notes: dict[str, Any] | None = None,
    sampling: dict[str, Any] | None = None,
) -> Path:
    """Write ``out_path`` (.safetensors) and its .json card from a checkpoint or run folder.

    Args:
        checkpoint: a ``ckpt-*.pt`` file or a run folder (its latest checkpoint).
        out_path: target weights path.
        use_ema: export the EMA weights (default) rather than the live ones.
        metrics: validation metrics for the card (default: the checkpoint's last ones).
        notes: more card entries under "training" (e.g. held-out data).
        sampling: the model's default sampling settings (``steps``, ``n_samples``) that
            ``bidsfill`` uses when the user gives none.

    Returns:
        The weights path.
    """
    path = Path(checkpoint)
    if path.is_dir():
        found = latest_checkpoint(path)
        if found is None:
            raise ValueError(f"{path} holds no checkpoint to export.")
        path = found
    ckpt = load_checkpoint(path)
    config = json.loads(ckpt["config"])
    extra = json.loads(ckpt.get("extra", "{}"))
    spec = get_architecture(config["arch"])
    model = build_network(config["arch"], **config["network"])
    model.load_state_dict(ckpt["ema" if use_ema else "model"])
    history = json.loads(ckpt.get("validation", "[]"))
    losses = [float(v) for v in ckpt.get("losses", [])]
    tail = losses[-100:]
    training = {
        "steps": int(ckpt["step"]),
        "wall_seconds": round(float(ckpt["elapsed"]), 1),
        "final_loss_mean_last_100": round(sum(tail) / len(tail), 6) if tail else None,
        "weights": "ema" if use_ema else "live",
        "ran_on": ckpt.get("ran_on"),
        "hyperparameters": {
            k: config.get(k)
            for k in (
                "steps",
                "batch_size",
                "lr",
                "weight_decay",
                "warmup_steps",
                "min_lr_ratio",
                "ema_decay",
                "grad_clip",
                "outside_weight",
                "log_mse_eps",
                "seed",
                "high_t_fraction",
                "high_t_span",
            )
        },  # fmt: skip
        "checkpoint": path.name,
        # each stage's steps, seconds and machine, for models trained in stages (ldm3d)
        **({"stages": _stages(ckpt, spec.stages)} if len(spec.stages) > 1 else {}),
        **extra,
        **(notes or {}),
    }
    if config.get("init_from"):  # fine-tuned: the card also tells where it started
        start = ModelCard.load(Path(config["init_from"]).with_suffix(".json"))
        before = start.training
        training["fine_tuned_from"] = {
            "sha256": start.sha256,
            "steps": before.get("steps"),
            "wall_seconds": before.get("wall_seconds"),
            "ran_on": before.get("ran_on"),
            "hyperparameters": before.get("hyperparameters"),
            "training_data": before.get("training_data"),
            # every earlier stage, so the card keeps the whole chain
            "fine_tuned_from": before.get("fine_tuned_from"),
        }
        earlier = before.get("total_wall_seconds", before.get("wall_seconds")) or 0
        training["total_wall_seconds"] = round(training["wall_seconds"] + float(earlier), 1)
    card = ModelCard(
        architecture=config["arch"],
        config=spec.card_config(config["network"]),
        schedule=NoiseSchedule(**config["schedule"]),
        preprocessing=Preprocessing.from_dict(config["preprocessing"]),
        sampling=SamplingDefaults.from_dict(sampling),
        training=training,
        metrics=metrics if metrics is not None else (history[-1] if history else {}),
        validation_history=history,
    )
    return save_weights(model, card, out_path)


def _stages(ckpt: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """The checkpoint's record of each training stage, in order."""
    log = json.loads(ckpt.get("stages", "{}"))
    return {
        name: {k: v for k, v in log[name].items() if k != "elapsed_at_start"}
        for name in names
        if name in log
    }
