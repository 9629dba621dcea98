"""Every diffusion architecture the app offers trains, exports, reloads and fills
(issue 17): a few steps on a tiny generated volume, then ``fill_image`` with its
``--method`` and the exported file. It fails if any architecture breaks anywhere on
that path (dataset layout, loss, checkpoint, card, loading, crops, sampling)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_train_loop import _volume

from bidsfill.diffusion.card import default_preprocessing
from bidsfill.fill import fill_image
from bidsfill.fill.methods import FILL_METHODS
from bidsfill.train.dataset import InpaintingDataset
from bidsfill.train.export import export_checkpoint
from bidsfill.train.loop import TrainConfig, train
from bidsfill.train.masks import MaskGenerator

torch.set_num_threads(1)

# --method -> (architecture, in_channels, out_channels, patch, region)
CASES = {
    "pseudo3d": ("pseudo3d", 3, 1, [16, 16, 4], (24, 24, 8)),
    "slicewise": ("slicewise", 3, 1, [16, 16, 4], (24, 24, 8)),
    "seqpos": ("seqpos", 3, 1, [16, 16, 4], (24, 24, 8)),
    "wdm3d": ("wdm3d", 24, 8, [16, 16, 16], (24, 24, 20)),
    "ddpm3d": ("ddpm3d", 3, 1, [16, 16, 16], (24, 24, 20)),
    "ldm3d": ("ldm3d", 12, 4, [16, 16, 16], (24, 24, 20)),
    "repaint": ("pseudo3d", 1, 1, [16, 16, 4], (24, 24, 8)),
}

# --method -> (network config of its own, steps of the training stages before diffusion)
OWN = {"ldm3d": ({"autoencoder": {"channels": [8, 8, 8], "norm_num_groups": 4}},
                 {"autoencoder": 3})}  # fmt: skip


def test_every_diffusion_method_is_covered():
    diffusion = {name for name, m in FILL_METHODS.items() if m.uses_model}
    assert diffusion == set(CASES)


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(CASES))
def test_train_export_reload_fill(method, tmp_path):
    arch, cin, cout, patch, region = CASES[method]
    own, stage_steps = OWN.get(method, ({}, {}))
    network = {"in_channels": cin, "out_channels": cout, "channels": [8, 16],
               "num_res_blocks": 1, "norm_num_groups": 4, **own}  # fmt: skip
    pre = default_preprocessing(arch)
    pre.update(patch_size=patch, margin=2)
    if pre.get("window"):
        pre.update(window=4, window_overlap=2)
    dataset = InpaintingDataset(
        [_volume()], arch=arch, config=network, preprocessing=pre,
        masks=MaskGenerator({"random": 1.0}, volume_ml={"random": (0.03, 0.2)}),
        region=region, seed=0,
    )  # fmt: skip
    config = TrainConfig(
        run_dir=str(tmp_path / "run"), arch=arch, network=network,
        schedule={"num_train_timesteps": 50, "beta_schedule": "cosine",
                  "prediction_type": "sample"},
        preprocessing=pre, steps=3, batch_size=2, lr=1e-3, warmup_steps=1,
        checkpoint_every=3, log_every=1, device="cpu", stage_steps=stage_steps,
    )  # fmt: skip
    total = 3 + sum(stage_steps.values())
    result = train(config, dataset, resume=False)
    assert result.step == total and all(np.isfinite(result.losses))
    path = export_checkpoint(tmp_path / "run", tmp_path / f"{method}.safetensors")
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["architecture"] == arch and card["training"]["steps"] == total
    assert {k: card["config"][k] for k in own} == own  # the card holds every part
    if stage_steps:  # each stage's steps and machine are in the card
        stages = card["training"]["stages"]
        assert [s["steps"] for s in stages.values()] == [*stage_steps.values(), 3]
        assert all(s["ran_on"]["device"] == "cpu" for s in stages.values())
    vol = _volume(1)
    mask = np.zeros(vol.image.shape, bool)
    mask[13:18, 12:17, 12:18] = True
    out = fill_image(vol.image, mask, method=method, zooms=(1.0, 1.0, 1.0), seed=0,
                     model=str(path), steps=2, n_samples=1, device="cpu",
                     jump_length=1, jump_n_sample=1)  # fmt: skip
    assert np.array_equal(out.filled[~mask], vol.image[~mask])
    assert np.isfinite(out.filled[mask]).all()
    assert not np.array_equal(out.filled[mask], vol.image[mask])
    assert out.params["ModelSHA256"] == card["sha256"]
