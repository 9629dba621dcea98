"""Diffusion fillers end to end with small weights made here: outside-mask invariance,
exact geometry and intensity round trip, determinism, n-samples std, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bidsfill.diffusion.architectures import build_network
from bidsfill.diffusion.card import default_preprocessing
from bidsfill.diffusion.schedules import NoiseSchedule
from bidsfill.diffusion.weights import save_weights
from bidsfill.fill.base import FillError, available_methods, fill_image

# method -> (architecture, in_channels, out_channels)
METHODS = {
    "pseudo3d": ("pseudo3d", 3, 1),
    "slicewise": ("slicewise", 3, 1),
    "seqpos": ("seqpos", 3, 1),
    "wdm3d": ("wdm3d", 24, 8),
    "ddpm3d": ("ddpm3d", 3, 1),
    "ldm3d": ("ldm3d", 12, 4),
    "repaint": ("pseudo3d", 1, 1),
}


def _weights(tmp_path, method, arch=None, *, random=True, prediction="epsilon"):
    arch_, cin, cout = METHODS[method]
    arch = arch or arch_
    if arch == "wdm3d":
        cin, cout = (24, 8) if method != "repaint" else (8, 8)
    cfg = {"in_channels": cin, "out_channels": cout, "channels": [8, 16], "norm_num_groups": 4}
    torch.manual_seed(0)
    net = build_network(arch, **cfg)
    if random:
        for p in net.parameters():
            p.data.normal_(0, 0.05)
    card = {
        "architecture": arch,
        "config": cfg,
        "schedule": NoiseSchedule(20, "cosine", prediction).to_dict(),
        "preprocessing": default_preprocessing(arch),
    }
    return save_weights(net, card, tmp_path / f"{method}-{arch}-{prediction}-{random}")


@pytest.fixture(scope="module")
def volume():
    rng = np.random.default_rng(0)
    img = rng.normal(100, 10, (16, 16, 12)).astype(np.float32)
    mask = np.zeros(img.shape, bool)
    mask[6:9, 7:10, 4:7] = True
    mask[1:3, 1:3, 9:11] = True  # within the first one's margin: one crop
    img[mask] = 300.0  # a bright lesion
    return img, mask


def test_methods_registered():
    assert {"pseudo3d", "slicewise", "wdm3d", "repaint"} <= set(available_methods())


@pytest.mark.parametrize(
    ("method", "arch"),
    [
        ("pseudo3d", None),
        ("slicewise", None),
        ("seqpos", None),
        ("wdm3d", None),
        ("ddpm3d", None),
        ("repaint", None),
        ("repaint", "wdm3d"),
        ("repaint", "seqpos"),
        ("repaint", "ddpm3d"),
    ],  # fmt: skip
)
def test_fill_end_to_end_exact_geometry_and_intensity(tmp_path, method, arch):
    # Fresh networks have a zero output layer, so with x0 prediction the sample is x0 = 0
    # in model units: after crop, windows, blending, paste-back and the inverse intensity
    # map, every filled voxel must be exactly the tissue level that 0 maps back to.
    path = _weights(tmp_path, method, arch, random=False, prediction="sample")
    img = np.full((20, 24, 18), 120.0, np.float32)
    mask = np.zeros(img.shape, bool)
    mask[8:12, 9:13, 5:12] = True
    img[mask] = 300.0
    res = fill_image(img, mask, method=method, zooms=(1, 1, 1), seed=0, model=path, steps=5)
    assert np.array_equal(res.filled[~mask], img[~mask])
    # peak 120 -> 0.5, zero 0 -> -1, so 0 -> 120 * 1 / 1.5 = 80.
    assert np.allclose(res.filled[mask], 80.0, atol=1e-3)
    assert res.params["Sampler"] == "ddim" and res.params["Steps"] == 5
    assert res.device == "cpu"


@pytest.mark.parametrize("method", list(METHODS))
def test_fill_deterministic_and_std(tmp_path, volume, method):
    img, mask = volume
    path = _weights(tmp_path, method)
    kw = {"method": method, "zooms": (1.0, 1.0, 1.0), "model": path, "steps": 3, "device": "cpu"}
    a = fill_image(img, mask, seed=1, n_samples=2, eta=0.5, **kw)
    b = fill_image(img, mask, seed=1, n_samples=2, eta=0.5, **kw)
    c = fill_image(img, mask, seed=2, n_samples=2, eta=0.5, **kw)
    assert np.array_equal(a.filled, b.filled)
    assert not np.array_equal(a.filled, c.filled)
    assert np.array_equal(a.filled[~mask], img[~mask])
    assert np.isfinite(a.filled).all()
    assert a.std is not None and a.std.shape == img.shape
    assert (a.std[mask] > 0).any() and (a.std[~mask] == 0).all()
    p = a.params
    assert p["NSamples"] == 2 and p["Eta"] == 0.5 and p["Crops"] == 1
    assert p["ModelName"] == path.stem and len(p["ModelSHA256"]) == 64
    one = fill_image(img, mask, seed=1, n_samples=1, **kw)
    assert one.std is None


@pytest.mark.slow
def test_ddpm_sampler_uses_all_training_steps(tmp_path, volume):
    img, mask = volume
    path = _weights(tmp_path, "slicewise")
    res = fill_image(img, mask, method="slicewise", zooms=(1, 1, 1), seed=0, model=path,
                     sampler="ddpm")  # fmt: skip
    assert res.params["Steps"] == 20 and res.params["ModelCalls"] == 20
    assert np.array_equal(res.filled[~mask], img[~mask])


def test_feather_changes_only_the_boundary_layer(tmp_path, volume):
    img, mask = volume
    path = _weights(tmp_path, "pseudo3d")
    kw = {"method": "pseudo3d", "zooms": (1, 1, 1), "seed": 0, "model": path, "steps": 3}
    plain = fill_image(img, mask, **kw).filled
    feathered = fill_image(img, mask, feather=True, **kw).filled
    changed = plain != feathered
    assert changed.any() and not changed[~mask].any()
    assert not changed[7, 8, 5]  # the lesion core keeps its fill


def test_clear_errors(tmp_path, volume, monkeypatch):
    img, mask = volume
    kw = {"zooms": (1, 1, 1), "seed": 0}
    with monkeypatch.context() as m:  # an install without bundled weights
        m.setattr("bidsfill.diffusion.weights.default_model_path", lambda method: None)
        with pytest.raises(FillError, match="bidsfill-train --arch wdm3d"):
            fill_image(img, mask, method="wdm3d", model=None, **kw)
        with pytest.raises(FillError, match="bidsfill-train --arch pseudo3d --unconditional"):
            fill_image(img, mask, method="repaint", model=None, **kw)
    conditional = _weights(tmp_path, "pseudo3d")
    with pytest.raises(FillError, match="unconditional"):
        fill_image(img, mask, method="repaint", model=conditional, **kw)
    with pytest.raises(FillError, match="use --method pseudo3d"):
        fill_image(img, mask, method="slicewise", model=conditional, **kw)
    with pytest.raises(FillError, match="sampler"):
        fill_image(img, mask, method="pseudo3d", model=conditional, sampler="euler", **kw)
    with pytest.raises(FillError, match="--steps"):
        fill_image(img, mask, method="pseudo3d", model=conditional, steps=500, **kw)
    with pytest.raises(FillError, match="device"):
        fill_image(img, mask, method="pseudo3d", model=conditional, device="tpu", **kw)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(conditional.read_bytes()[:-3] + b"xyz")
    bad.with_suffix(".json").write_text(conditional.with_suffix(".json").read_text())
    with pytest.raises(FillError, match="sha256"):
        fill_image(img, mask, method="pseudo3d", model=bad, **kw)
