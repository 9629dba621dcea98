"""Tiny real models for the tests (seconds on a CPU): a FLAIR-conditioned fill model and a
cWDM that synthesises a FLAIR from a T1w and a T2w, both on the conftest phantom."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from conftest import make_lesioned, phantom

from bidsfill.diffusion.architectures import build_network, get_architecture
from bidsfill.diffusion.card import default_preprocessing
from bidsfill.diffusion.schedules import NoiseSchedule
from bidsfill.diffusion.weights import save_weights
from bidsfill.synthesis.model import SynthesisCard, save_synthesis_model
from bidsfill.synthesis.normalise import IntensityRange, normalise
from bidsfill.synthesis.training import SynthesisSubject, train_synthesis


def flair_fill_model(path: Path, contrasts: tuple[str, ...] = ("flair",)) -> Path:
    """A tiny pseudo3d model conditioned on a FLAIR, or on ``contrasts`` (random weights,
    so every input channel moves its output)."""
    cfg = {**get_architecture("pseudo3d").channels_for(2 + len(contrasts)), "channels": [8, 16],
           "norm_num_groups": 4}  # fmt: skip
    torch.manual_seed(0)
    net = build_network("pseudo3d", **cfg)
    for p in net.parameters():
        p.data.normal_(0, 0.05)
    card = {
        "architecture": "pseudo3d",
        "config": cfg,
        "schedule": NoiseSchedule(20, "cosine", "epsilon").to_dict(),
        "preprocessing": default_preprocessing("pseudo3d", contrasts),
    }
    return save_weights(net, card, path)


def cwdm_flair_model(folder: Path) -> Path:
    """A tiny cWDM (FLAIR from T1w + T2w), trained for 40 steps on one phantom subject."""
    card = SynthesisCard.new("FLAIR", ["T1w", "T2w"], channels=(8, 16), norm_num_groups=4,
                             target_range=IntensityRange(0.0, 400.0), steps=2,
                             crop=(32, 32, 32), overlap=8,
                             training={"note": "random weights, for tests"})  # fmt: skip
    t1 = make_lesioned(1)
    t2 = np.where(t1 > 0, 250.0 - t1, 0)
    flair = np.where(phantom(1) > 0, 200.0 - phantom(1), 0)
    src = np.stack([normalise(t1)[0], normalise(t2)[0]])
    subject = SynthesisSubject("sub-x", src, normalise(flair)[0], t1 > 0, np.eye(4),
                               IntensityRange(0.0, 400.0), {})  # fmt: skip
    torch.manual_seed(0)
    net = train_synthesis([subject], card, steps=40, patch=(16, 16, 16), lr=2e-3).model
    return save_synthesis_model(net, card, Path(folder) / "tiny-cwdm-flair")
