"""Weights: safetensors + card round trip; tampered or mismatched files are refused."""

from __future__ import annotations

import json

import pytest
import torch

from bidsfill.diffusion.architectures import build_network
from bidsfill.diffusion.card import default_preprocessing
from bidsfill.diffusion.schedules import NoiseSchedule
from bidsfill.diffusion.weights import default_model_path, load_weights, save_weights

CFG = {"in_channels": 3, "out_channels": 1, "channels": [8, 16], "norm_num_groups": 4}


def _card():
    return {
        "architecture": "pseudo3d",
        "config": CFG,
        "schedule": NoiseSchedule(50).to_dict(),
        "preprocessing": default_preprocessing("pseudo3d"),
        "training": {"data": "test"},
    }


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    net = build_network("pseudo3d", **CFG)
    for p in net.parameters():
        p.data.normal_(0, 0.1)
    return net, save_weights(net, _card(), tmp_path / "tiny")


def test_round_trip(saved):
    net, path = saved
    assert path.suffix == ".safetensors" and path.with_suffix(".json").is_file()
    loaded, card = load_weights(path)
    assert card.name == "tiny" and len(card.sha256) == 64
    assert set(card.to_dict()) >= {"name", "architecture", "config", "schedule",
                                   "preprocessing", "training", "metrics", "sha256"}  # fmt: skip
    x, t = torch.randn(1, 3, 2, 8, 8), torch.tensor([4])
    with torch.no_grad():
        assert torch.equal(loaded(x, t), net.eval()(x, t))


def test_tampered_weights_refused(saved):
    _, path = saved
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256"):
        load_weights(path)


def test_config_mismatch_refused(saved):
    _, path = saved
    card_path = path.with_suffix(".json")
    card = json.loads(card_path.read_text())
    card["config"]["channels"] = [8, 24]
    card_path.write_text(json.dumps(card))
    with pytest.raises(ValueError, match="do not fit the architecture"):
        load_weights(path)


def test_missing_files_refused(tmp_path, saved):
    _, path = saved
    with pytest.raises(ValueError, match="do not exist"):
        load_weights(tmp_path / "nothing.safetensors")
    path.with_suffix(".json").unlink()
    with pytest.raises(ValueError, match="no model card"):
        load_weights(path)


def test_card_needs_architecture(tmp_path):
    with pytest.raises(ValueError, match="architecture"):
        save_weights(build_network("slicewise", **CFG), {"config": CFG}, tmp_path / "x")


def test_default_model_path_absent_for_unknown_method():
    assert default_model_path("no-such-method") is None


def test_average_weights_is_the_mean_of_the_snapshots_and_names_them(saved, tmp_path):
    from bidsfill.diffusion.weights import average_weights

    net, first = saved
    other = build_network("pseudo3d", **CFG)
    for p in other.parameters():
        p.data.normal_(0, 0.1)
    second = save_weights(other, _card(), tmp_path / "other")
    mean_net, card = average_weights([first, second])
    for key, value in mean_net.state_dict().items():
        a, b = net.state_dict()[key], other.state_dict()[key]
        if value.is_floating_point():
            assert torch.allclose(value, (a + b) / 2, atol=1e-7)
    assert [s["name"] for s in card["weight_average"]["sources"]] == ["tiny.safetensors",
                                                                     "other.safetensors"]  # fmt: skip
    path = save_weights(mean_net, card, tmp_path / "mean")
    loaded, _ = load_weights(path)  # a valid model with a matching sha256
    assert torch.equal(next(loaded.parameters()), next(mean_net.parameters()))
    small = {**CFG, "channels": [8, 8]}
    third = save_weights(build_network("pseudo3d", **small), {**_card(), "config": small},
                         tmp_path / "small")  # fmt: skip
    with pytest.raises(ValueError, match="not the same network"):
        average_weights([first, third])
    with pytest.raises(ValueError, match="at least two"):
        average_weights([first])
