"""The typed model card, the architecture specs, the fill-method table and the sampling plan."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bidsfill.diffusion.architectures import ARCHITECTURES, build_network, get_architecture
from bidsfill.diffusion.card import CARD_VERSION, ModelCard, Preprocessing, default_preprocessing
from bidsfill.diffusion.sampling import DEFAULT_STEPS, SamplingPlan
from bidsfill.diffusion.schedules import NoiseSchedule
from bidsfill.diffusion.weights import default_model_path, load_weights, save_weights
from bidsfill.fill.methods import FILL_METHODS, classical_methods, fill_method
from bidsfill.references import REFERENCES

MODELS = Path(__file__).parents[1] / "bidsfill" / "data" / "models"
CFG = {"in_channels": 3, "out_channels": 1, "channels": [8, 16], "norm_num_groups": 4}


# The fill models' cards (a synthesis model's card is a SynthesisCard, tested with it).
FILL_CARDS = sorted(p for p in MODELS.glob("*.json") if p.stem in FILL_METHODS)


@pytest.mark.parametrize("path", FILL_CARDS, ids=lambda p: p.name)
def test_shipped_version_1_cards_load_and_round_trip(path):
    data = json.loads(path.read_text())
    card = ModelCard.load(path)
    assert card.version == data.get("card_version", 1)
    assert card.architecture == data["architecture"] and card.sha256 == data["sha256"]
    assert card.preprocessing.extras == tuple(data["preprocessing"].get("extras", []))
    # Nothing is lost or changed: the dict written back is the one read, plus a version.
    assert card.to_dict() == {**data, "card_version": CARD_VERSION}
    assert ModelCard.from_dict(card.to_dict()).to_dict() == card.to_dict()


def test_shipped_weights_load_through_the_wrapped_monai_block():
    # The resnet block is MONAI's behind one method; its state-dict keys must not move.
    net, card = load_weights(default_model_path("pseudo3d"))
    assert any(k.endswith("block.time_emb_proj.weight") for k in net.state_dict())
    x = torch.zeros(1, card.config["in_channels"], 2, 8, 8)
    assert net(x, torch.tensor([3])).shape == (1, 1, 2, 8, 8)


def test_a_minimal_old_card_loads_with_the_old_defaults():
    old = {
        "architecture": "wdm3d",
        "schedule": {"num_train_timesteps": 50},
        "preprocessing": {"intensity": {"clip": [-1, 1]}, "margin": 4, "patch_size": [8, 8, 8],
                          "window": None, "window_overlap": None, "future_key": 3},
        "someone_elses_key": {"kept": True},
    }  # fmt: skip
    card = ModelCard.from_dict(old)
    assert card.version == 1 and card.config == {} and card.sampling.steps is None
    pre = card.preprocessing
    assert pre.context_fraction == 0.0 and pre.voxel_size is None and pre.residual_scale is None
    assert pre.intensity.clip == (-1.0, 1.0) and pre.prefill == "nonlocal"
    again = card.to_dict()
    assert again["someone_elses_key"] == {"kept": True}
    assert again["preprocessing"]["future_key"] == 3 and "voxel_size" not in again["preprocessing"]


def test_card_round_trip_through_save_and_load_weights(tmp_path):
    torch.manual_seed(0)
    net = build_network("pseudo3d", **CFG)
    pre = Preprocessing.default("pseudo3d", ("prefill",), residual=True)
    card = ModelCard("pseudo3d", CFG, NoiseSchedule(50, "cosine", "sample"), pre,
                     training={"steps": 3}, scorecard={"bar": {}})  # fmt: skip
    path = save_weights(net, card, tmp_path / "m")
    _, loaded = load_weights(path)
    assert loaded.name == "m" and loaded.sha256 and loaded.version == CARD_VERSION
    assert loaded.replace(name=None, sha256=None).to_dict() == card.to_dict()
    assert loaded.preprocessing.residual_scale == 2.0 and loaded.conditional


def test_card_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="'schedule'"):
        ModelCard.from_dict({"architecture": "pseudo3d", "preprocessing": {}})
    with pytest.raises(ValueError, match="version 99"):
        ModelCard.from_dict({"card_version": 99, "architecture": "pseudo3d",
                             "schedule": {}, "preprocessing": {}})  # fmt: skip
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        ModelCard.load(bad)


def test_default_preprocessing_comes_from_the_spec():
    for arch in ARCHITECTURES:
        spec, pre = get_architecture(arch), default_preprocessing(arch)
        assert pre["window"] == spec.window and pre["patch_size"] == list(spec.patch_size)
        assert Preprocessing.from_dict(pre).to_dict() == pre
    with pytest.raises(ValueError, match="residual"):
        Preprocessing.default("pseudo3d", residual=True)


def test_architecture_specs_describe_their_networks():
    for arch in ARCHITECTURES:
        spec = get_architecture(arch)
        cfg = {**spec.channels_for(2), "channels": [8, 16], "norm_num_groups": 4}
        net = spec.build(**cfg)
        d = spec.spatial_divisor(cfg)
        depth = spec.min_crop(cfg, 4)[2]
        extra = int(spec.slice_position)  # the slice-position channel goes in as well
        x = torch.zeros(1, cfg["in_channels"] // spec.bands + extra, d, d, depth)
        layout = spec.encode(net, spec.to_network(x[0])[None])  # latents of a latent model
        assert layout.shape[1] == cfg["in_channels"] + extra
        out = spec.decode(net, net(layout, torch.tensor([1])))
        assert spec.from_network(out, (d, d, depth)).shape == (1, 1, d, d, depth)
        assert spec.is_conditional(cfg["in_channels"]) and not spec.is_conditional(spec.bands)
    with pytest.raises(ValueError, match="Unknown architecture"):
        get_architecture("unet9d")


def test_registry_knows_every_method():
    assert set(classical_methods()) == {"nawm", "ring", "nonlocal", "fsl"}
    for name, entry in FILL_METHODS.items():
        assert entry.name == name and entry.text.startswith(("with", "from"))
        assert entry.citations and set(entry.citations) <= set(REFERENCES)
        assert entry.uses_model == (entry.kind == "diffusion")
        assert not entry.uses_gpu("cpu")
        assert entry.uses_gpu("cuda:0") == entry.uses_model
    # Every architecture can be run as a conditional method of its own name.
    assert all(FILL_METHODS[a].conditional for a in ARCHITECTURES)
    assert not FILL_METHODS["repaint"].conditional
    plugin = fill_method("my-plugin")
    assert plugin.kind == "classical" and "my-plugin" in plugin.text
    plan = SamplingPlan(steps=5, device="cuda", jump_length=3)
    assert FILL_METHODS["pseudo3d"].fill_params(plan, "m.safetensors") == {
        "sampler": "ddim", "steps": 5, "eta": 0.0, "device": "cuda", "feather": False,
        "model": "m.safetensors",
    }  # fmt: skip
    assert FILL_METHODS["repaint"].fill_params(plan)["jump_length"] == 3
    assert FILL_METHODS["nawm"].fill_params(plan, "m.safetensors") == {}


def test_sampling_plan_is_resolved_once_against_the_card():
    card = ModelCard.from_dict({"architecture": "pseudo3d", "config": CFG,
                                "schedule": NoiseSchedule(30).to_dict(),
                                "preprocessing": default_preprocessing("pseudo3d"),
                                "sampling": {"steps": 4, "n_samples": 2}})  # fmt: skip
    assert SamplingPlan().resolve(card).steps == 4
    assert SamplingPlan().resolve(card).n_samples == 2
    assert SamplingPlan(steps=7, n_samples=1).resolve(card).steps == 7
    ddpm = SamplingPlan(sampler="DDPM", steps=3, eta=0.2).resolve(card)
    assert (ddpm.sampler, ddpm.steps, ddpm.eta) == ("ddpm", 30, 1.0)
    bare = card.replace(sampling=type(card.sampling)())
    assert SamplingPlan().resolve(bare).steps == min(DEFAULT_STEPS, 30)
    assert SamplingPlan().resolve(bare).n_samples == 1
    with pytest.raises(ValueError, match="between 1 and the model's 30"):
        SamplingPlan(steps=31).resolve(card)
    with pytest.raises(ValueError, match="--n-samples must be at least 1"):
        SamplingPlan(n_samples=0)
    with pytest.raises(ValueError, match="Unknown sampler"):
        SamplingPlan(sampler="euler")
    plan = SamplingPlan.from_params({"steps": 3, "model": "x", "omp_nthreads": 2})
    assert plan == SamplingPlan(steps=3) and SamplingPlan.from_params(plan.to_params()) == plan
