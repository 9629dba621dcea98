"""LDM 3D (issue 17): one autoencoder encodes every image channel, the two training
stages train their own part only and chain through the EMA weights, a run resumed at
the stage boundary equals an uninterrupted one, and RePaint refuses a latent model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_train_loop import _volume

from bidsfill.diffusion.architectures import build_network
from bidsfill.diffusion.card import default_preprocessing
from bidsfill.diffusion.schedules import NoiseSchedule
from bidsfill.diffusion.weights import load_weights, save_weights
from bidsfill.fill import fill_image
from bidsfill.fill.base import FillError
from bidsfill.train.dataset import InpaintingDataset
from bidsfill.train.export import export_checkpoint
from bidsfill.train.loop import TrainConfig, train
from bidsfill.train.masks import MaskGenerator

torch.set_num_threads(1)

NETWORK = {"in_channels": 12, "out_channels": 4, "channels": [8, 16], "norm_num_groups": 4,
           "autoencoder": {"channels": [8, 8, 8], "norm_num_groups": 4}}  # fmt: skip


def _pre() -> dict:
    pre = default_preprocessing("ldm3d")
    pre.update(patch_size=[16, 16, 16], margin=2)
    return pre


def _config(tmp_path, name: str, steps: int, ae_steps: int = 2) -> TrainConfig:
    return TrainConfig(
        run_dir=str(tmp_path / name), arch="ldm3d", network=NETWORK,
        schedule={"num_train_timesteps": 50, "prediction_type": "sample"},
        preprocessing=_pre(), steps=steps, batch_size=2, lr=1e-3, warmup_steps=1,
        checkpoint_every=2, log_every=10, device="cpu", stage_steps={"autoencoder": ae_steps},
    )  # fmt: skip


def _dataset() -> InpaintingDataset:
    return InpaintingDataset(
        [_volume()], arch="ldm3d", config=NETWORK, preprocessing=_pre(),
        masks=MaskGenerator({"random": 1.0}, volume_ml={"random": (0.03, 0.2)}),
        region=(24, 24, 20), seed=0,
    )  # fmt: skip


def test_every_channel_is_encoded_on_its_own_and_scaled():
    torch.manual_seed(0)
    net = build_network("ldm3d", **NETWORK)
    a, b = torch.randn(1, 1, 16, 16, 16), torch.randn(1, 2, 16, 16, 16)
    z = net.encode(torch.cat([a, b], 1))
    assert z.shape == (1, 12, 4, 4, 4)
    assert torch.allclose(z, torch.cat([net.encode(a), net.encode(b)], 1), atol=1e-6)
    assert net.decode(z).shape == (1, 3, 16, 16, 16)
    net.fit_latent_scale(a)
    assert float(net.encode(a).std()) == pytest.approx(1.0, rel=1e-4)


def test_stages_train_their_own_part_and_resume_at_the_boundary(tmp_path):
    dataset = _dataset()
    torch.manual_seed(0)  # the loop's seeded initialisation
    start = {k: v.clone() for k, v in build_network("ldm3d", **NETWORK).state_dict().items()}
    whole = train(_config(tmp_path, "whole", 2), dataset, resume=False)
    assert whole.step == 4
    # Stopped after the autoencoder stage: the U-Net is untouched, the autoencoder trained.
    first = train(_config(tmp_path, "split", 0), dataset, resume=False)
    state = first.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in start.items() if k.startswith("unet."))
    assert not all(torch.equal(state[k], v) for k, v in start.items() if "encoder." in k)
    # Resumed into the diffusion stage: the same as the uninterrupted run, and the
    # autoencoder is the first stage's EMA, frozen.
    second = train(_config(tmp_path, "split", 2), dataset, resume=True)
    assert second.step == 4
    for key, value in whole.ema.state_dict().items():
        assert torch.allclose(second.ema.state_dict()[key], value), key
    ae = {k: v for k, v in second.model.state_dict().items() if k.startswith("autoencoder.")}
    assert all(torch.equal(v, first.ema.state_dict()[k]) for k, v in ae.items())
    assert float(second.model.latent_scale) != 1.0
    # One file and one card hold both parts.
    path = export_checkpoint(tmp_path / "split", tmp_path / "ldm.safetensors")
    net, card = load_weights(path)
    assert card.config["autoencoder"] == NETWORK["autoencoder"]
    assert list(card.training["stages"]) == ["autoencoder", "diffusion"]
    assert float(net.latent_scale) == float(second.ema.latent_scale)


def test_repaint_refuses_a_latent_model(tmp_path):
    cfg = {**NETWORK, "in_channels": 4}
    card = {"architecture": "ldm3d", "config": cfg, "schedule": NoiseSchedule(10).to_dict(),
            "preprocessing": default_preprocessing("ldm3d")}  # fmt: skip
    path = save_weights(build_network("ldm3d", **cfg), card, tmp_path / "uncond")
    img = _volume().image
    mask = np.zeros(img.shape, bool)
    mask[12:16, 12:16, 12:16] = True
    with pytest.raises(FillError, match="latent"):
        fill_image(img, mask, method="repaint", model=str(path), zooms=(1.0, 1.0, 1.0),
                   seed=0, steps=2)  # fmt: skip


@pytest.mark.slow
def test_bidsfill_train_runs_both_stages(tmp_path, capsys):
    from conftest import phantom, save, write_description

    from bidsfill.cli.train import main

    root = tmp_path / "bids"
    write_description(root)
    save(phantom(1, (32, 32, 24)), root / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    common = ["--bids-dir", str(root), "--arch", "ldm3d", "--channels", "8", "16",
              "--norm-groups", "4", "--patch", "16", "16", "16", "--region", "24", "24", "20",
              "--mask-kinds", "random=1", "--steps", "2", "--batch-size", "1",
              "--checkpoint-every", "2", "--mask-bank", "0"]  # fmt: skip
    assert main([*common, "--run-dir", str(tmp_path / "bad"), "--stage-steps", "vae=2"]) == 64
    assert "trains in stages ['autoencoder', 'diffusion']" in capsys.readouterr().err
    out = tmp_path / "ldm.safetensors"
    assert main([*common, "--run-dir", str(tmp_path / "run"), "--stage-steps",
                 "autoencoder=1", "--export", str(out)]) == 0  # fmt: skip
    _, card = load_weights(out)
    assert card.training["steps"] == 3 and card.config["autoencoder"]["channels"] == [16, 32, 32]
    assert [s["steps"] for s in card.training["stages"].values()] == [1, 2]


def test_an_epsilon_model_fills_finite_values(tmp_path):
    # At the noisiest step an epsilon model's x0 estimate divides by sqrt(alpha_bar) ~ 0;
    # unclipped, its latents decode to inf. They are clipped to the latents' range.
    card = {"architecture": "ldm3d", "config": NETWORK, "schedule": NoiseSchedule(20).to_dict(),
            "preprocessing": {**default_preprocessing("ldm3d"), "margin": 2}}  # fmt: skip
    path = save_weights(build_network("ldm3d", **NETWORK), card, tmp_path / "eps")
    img = _volume().image
    mask = np.zeros(img.shape, bool)
    mask[12:16, 12:16, 12:16] = True
    out = fill_image(img, mask, method="ldm3d", model=str(path), zooms=(1.0, 1.0, 1.0), seed=0,
                     steps=2)  # fmt: skip
    assert np.isfinite(out.filled).all() and np.array_equal(out.filled[~mask], img[~mask])
