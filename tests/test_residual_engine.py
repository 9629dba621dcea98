"""Issue 12's engine: the residual parameterisation, the model grid, large-lesion crops and
adaptation to the scan, with small networks made here and the real classical prefill."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import phantom
from scipy import ndimage

from bidsfill.diffusion.adapt import adapt_model
from bidsfill.diffusion.architectures import build_network
from bidsfill.diffusion.card import default_preprocessing
from bidsfill.diffusion.crops import lesion_crops
from bidsfill.diffusion.examples import make_training_example
from bidsfill.diffusion.inference import inpaint_volume
from bidsfill.diffusion.schedules import NoiseSchedule
from bidsfill.fill.prefill import classical_prefill
from bidsfill.io.resample import box_shape, resample_box, warp_from_world

CONFIG = {"in_channels": 4, "out_channels": 1, "channels": [8, 16], "norm_num_groups": 4}


def _model(*, zero: bool, seed: int = 0):
    torch.manual_seed(seed)
    net = build_network("pseudo3d", **CONFIG)
    if not zero:
        for p in net.parameters():
            p.data.normal_(0, 0.05)
    pre = default_preprocessing("pseudo3d", ("prefill",), residual=True)
    pre.update(patch_size=[16, 16, 4], window=4, window_overlap=2, margin=3)
    card = {
        "architecture": "pseudo3d",
        "config": CONFIG,
        "schedule": NoiseSchedule(20, "cosine", "sample").to_dict(),
        "preprocessing": pre,
    }
    return net.eval(), card


def _case(shape=(32, 36, 28)):
    img = phantom(3, shape)
    mask = np.zeros(shape, bool)
    mask[10:14, 12:16, 10:13] = True
    mask[20:23, 22:26, 15:18] = True
    return img, mask


@pytest.mark.parametrize("zooms", [(1.0, 1.0, 1.0), (2.0, 2.0, 2.0), (0.8, 0.8, 1.2)])
def test_zero_correction_returns_the_prefill_exactly(zooms):
    net, card = _model(zero=True)
    img, mask = _case()
    out = inpaint_volume(
        img, mask, net, card, steps=3, zooms=zooms, seed=1, prefill=classical_prefill
    )
    prefill = classical_prefill(img, mask, zooms)
    assert np.array_equal(out.mean, prefill)  # bit for bit, also through the model grid
    assert np.array_equal(out.mean[~mask], img[~mask])


@pytest.mark.parametrize("zooms", [(2.0, 2.0, 2.0), (0.8, 0.8, 1.2)])
def test_model_grid_round_trip_writes_only_inside_the_mask(zooms):
    net, card = _model(zero=False)
    img, mask = _case()
    out = inpaint_volume(
        img, mask, net, card, steps=2, zooms=zooms, seed=1, prefill=classical_prefill
    )
    assert np.array_equal(out.mean[~mask], img[~mask])
    prefill = classical_prefill(img, mask, zooms)
    assert not np.array_equal(out.mean[mask], prefill[mask])  # the correction arrived
    assert np.isfinite(out.mean).all()


def test_resample_box_round_trip_and_edges():
    rng = np.random.default_rng(0)
    arr = ndimage.gaussian_filter(rng.normal(size=(20, 18, 10)), 2).astype(np.float32)
    up = resample_box(arr, (40, 36, 20))
    back = resample_box(up, arr.shape)
    inner = (slice(2, -2),) * 3
    assert np.abs(back - arr)[inner].max() < 0.05 * np.abs(arr).max()
    assert resample_box(arr, arr.shape) is not arr
    assert np.array_equal(resample_box(arr, arr.shape), arr)
    assert box_shape((88, 120, 111), (2.0, 2.0, 2.0), (1.0, 1.0, 1.0)) == (176, 240, 222)


def test_training_target_is_the_scaled_correction_of_the_prefill():
    _, card = _model(zero=True)
    img, mask = _case()
    prefill = classical_prefill(img, mask)
    ex = make_training_example(
        img, mask, arch="pseudo3d", config=CONFIG, preprocessing=card["preprocessing"],
        rng=np.random.default_rng(0), extra_images={"prefill": prefill},
    )  # fmt: skip
    outside = ex.mask == 0
    assert torch.count_nonzero(ex.x0[outside]) == 0  # no correction where the image is known
    assert torch.count_nonzero(ex.x0[~outside]) > 0
    with pytest.raises(ValueError, match="needs the 'prefill' channel"):
        default_preprocessing("pseudo3d", (), residual=True)


def test_scattered_lesions_get_their_own_crops_and_large_ones_more_context():
    mask = np.zeros((120, 120, 80), bool)
    rng = np.random.default_rng(0)
    for _ in range(15):  # 15 small lesions across the volume
        c = rng.integers(10, 70, 3) + (np.array([20, 20, 0]) * rng.integers(0, 2))
        mask[c[0] : c[0] + 4, c[1] : c[1] + 4, c[2] : c[2] + 3] = True
    crops = lesion_crops(mask, 8, (16, 16, 6), (4, 4, 1))
    total = sum(np.prod(c.shape) for c in crops)
    assert len(crops) > 1 and total < mask.size / 2  # never one crop around everything
    big = np.zeros((120, 120, 80), bool)
    big[40:80, 40:80, 20:60] = True
    plain = lesion_crops(big, 8, (16, 16, 6), (4, 4, 1))[0]
    wide = lesion_crops(big, 8, (16, 16, 6), (4, 4, 1), context_fraction=0.25)[0]
    assert wide.shape[0] >= plain.shape[0] + 2 * (10 - 8) - 4


def test_adaptation_is_deterministic_for_a_seed_and_leaves_the_model_alone():
    net, card = _model(zero=False)
    img = phantom(3, (64, 64, 40))
    mask = np.zeros(img.shape, bool)
    mask[14:18, 16:20, 12:15] = True
    before = {k: v.clone() for k, v in net.state_dict().items()}
    a = adapt_model(net, card, img, mask, steps=2, seed=7, prefill=classical_prefill)
    b = adapt_model(net, card, img, mask, steps=2, seed=7, prefill=classical_prefill)
    c = adapt_model(net, card, img, mask, steps=2, seed=8, prefill=classical_prefill)
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k])
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)
    assert any(not torch.equal(sa[k], before[k]) for k in sa)
    out1 = inpaint_volume(
        img, mask, net, card, steps=2, seed=7, adapt_steps=2, prefill=classical_prefill
    )
    out2 = inpaint_volume(
        img, mask, net, card, steps=2, seed=7, adapt_steps=2, prefill=classical_prefill
    )
    assert np.array_equal(out1.mean, out2.mean)
    assert np.array_equal(out1.mean[~mask], img[~mask])


def test_warp_from_world_follows_the_world_map():
    data = np.zeros((10, 10, 10), np.float32)
    data[4:6, 4:6, 4:6] = 1
    shift = np.eye(4)
    shift[:3, 3] = [2, 0, 0]  # target world x -> data world x + 2
    out = warp_from_world(data, np.eye(4), (10, 10, 10), np.eye(4), shift, order=0)
    assert np.array_equal(out[2:4, 4:6, 4:6], np.ones((2, 2, 2)))
    assert out.sum() == 8


@pytest.mark.parametrize("zooms", [(1.0, 1.0, 1.0), (0.8, 0.8, 1.2)])
def test_flipped_views_keep_the_prefill_identity_and_the_outside(zooms):
    img, mask = _case()
    zero, card = _model(zero=True)
    out = inpaint_volume(img, mask, zero, card, steps=1, n_samples=2, flip=True, zooms=zooms,
                         seed=1, prefill=classical_prefill)  # fmt: skip
    assert np.array_equal(out.mean, classical_prefill(img, mask, zooms))
    net, card = _model(zero=False)
    runs = {
        (n, flip): inpaint_volume(img, mask, net, card, steps=1, n_samples=n, flip=flip,
                                  zooms=zooms, seed=1, prefill=classical_prefill).mean
        for n in (1, 2) for flip in (False, True)
    }  # fmt: skip
    for filled in runs.values():
        assert np.array_equal(filled[~mask], img[~mask])
    assert np.array_equal(runs[1, False], runs[1, True])  # only every other sample flips
    assert not np.allclose(runs[2, False][mask], runs[2, True][mask])  # the second view is mirrored


@pytest.mark.parametrize("zooms", [(1.0, 1.0, 1.0), (2.0, 2.0, 2.0)])
def test_shifted_views_keep_the_prefill_identity_and_the_outside(zooms):
    img, mask = _case()
    zero, card = _model(zero=True)
    out = inpaint_volume(img, mask, zero, card, steps=1, n_samples=3, flip=True, shift_voxels=2,
                         zooms=zooms, seed=1, prefill=classical_prefill)  # fmt: skip
    assert np.array_equal(out.mean, classical_prefill(img, mask, zooms))
    net, card = _model(zero=False)
    runs = {
        shift: inpaint_volume(img, mask, net, card, steps=1, n_samples=2, flip=True,
                              shift_voxels=shift, zooms=zooms, seed=1,
                              prefill=classical_prefill)
        for shift in (None, 0, 2)
    }  # fmt: skip
    for out in runs.values():
        assert np.array_equal(out.mean[~mask], img[~mask])
        assert out.std is not None and np.all(out.std[mask] >= 0)
    assert np.array_equal(runs[None].mean, runs[0].mean)  # no card default: no shift
    assert not np.allclose(runs[0].mean[mask], runs[2].mean[mask])  # the second view moved


def test_shifted_grid_moves_the_box_inside_the_volume_only():
    from bidsfill.diffusion.crops import Crop, CropGrid, shifted_grid
    from bidsfill.diffusion.inference import sample_views

    grid = CropGrid.native(Crop((2, 10, 0), (18, 26, 8), labels=(1,)))
    moved = shifted_grid(grid, (4, -4, 0), (40, 40, 8))
    assert (moved.crop.start, moved.crop.stop) == ((6, 6, 0), (22, 22, 8))
    assert moved.crop.labels == (1,) and moved.pad == grid.pad
    clipped = shifted_grid(grid, (-4, 20, 0), (40, 30, 8))  # clipped at both volume edges
    assert (clipped.crop.start, clipped.crop.stop) == ((0, 14, 0), (16, 30, 8))
    padded = CropGrid.native(Crop((0, 10, 0), (12, 26, 8), ((4, 0), (0, 0), (0, 0))))
    assert shifted_grid(padded, (3, 3, 0), (40, 40, 8)).crop.start == (0, 13, 0)
    views = sample_views(3, True, (2, 1))
    assert views == [(False, (0, 0, 0)), (True, (2, 1, 0)), (False, (-2, 1, 0))]
    assert sample_views(2, False, (0, 0)) == [(False, (0, 0, 0)), (False, (0, 0, 0))]


def test_flip_default_comes_from_the_card():
    from bidsfill.diffusion.card import ModelCard
    from bidsfill.diffusion.sampling import SamplingPlan

    _, card = _model(zero=True)
    plain = ModelCard.coerce(card)
    flips = ModelCard.coerce({**card, "sampling": {"steps": 1, "n_samples": 2, "flip": True}})
    assert SamplingPlan().resolve(plain).flip is False
    assert SamplingPlan().resolve(flips).flip is True
    assert SamplingPlan(flip=False).resolve(flips).flip is False
    assert flips.sampling.to_dict() == {"steps": 1, "n_samples": 2, "flip": True}


@pytest.mark.parametrize("zooms", [(1.0, 1.0, 1.0), (2.0, 2.0, 2.0), (0.8, 0.8, 1.2)])
def test_edge_taper_scales_the_correction_by_depth(zooms):
    """The tapered fill is the prefill plus depth/width of the untapered correction: the
    edge layer keeps little of it, voxels deeper than the width all of it, and nothing
    outside the mask moves."""
    net, card = _model(zero=False)
    img, mask = _case()
    kw = {"steps": 1, "zooms": zooms, "seed": 1, "prefill": classical_prefill}
    full = inpaint_volume(img, mask, net, card, edge_taper_mm=0, **kw).mean
    width = 1.5 * max(zooms)
    tapered = inpaint_volume(img, mask, net, card, edge_taper_mm=width, **kw).mean
    prefill = classical_prefill(img, mask, zooms)
    assert np.array_equal(tapered[~mask], img[~mask])
    depth = ndimage.distance_transform_edt(mask, sampling=zooms)
    weight = np.clip(depth / width, 0, 1)
    expected = prefill + weight * (full - prefill)
    assert np.allclose(tapered[mask], expected[mask], atol=1e-5)
    edge = mask & ~ndimage.binary_erosion(mask)
    assert (weight[edge] < 1).all() and (weight[mask & (depth >= width)] == 1).all()
    assert not np.allclose(tapered[edge], full[edge])
    # the spread of two samples shrinks with the correction it comes from
    two = {**kw, "n_samples": 2, "flip": True}
    sd_full = inpaint_volume(img, mask, net, card, edge_taper_mm=0, **two).std
    sd_tapered = inpaint_volume(img, mask, net, card, edge_taper_mm=width, **two).std
    assert np.allclose(sd_tapered, weight * sd_full, atol=1e-5) and sd_full[mask].max() > 0


def test_edge_taper_default_comes_from_the_card_and_needs_a_residual_model():
    from bidsfill.diffusion.card import ModelCard
    from bidsfill.diffusion.sampling import SamplingPlan

    _, card = _model(zero=True)
    tapers = ModelCard.coerce({**card, "sampling": {"steps": 1, "edge_taper_mm": 3}})
    assert SamplingPlan().resolve(ModelCard.coerce(card)).edge_taper_mm == 0
    assert SamplingPlan().resolve(tapers).edge_taper_mm == 3.0
    assert SamplingPlan(edge_taper_mm=0).resolve(tapers).edge_taper_mm == 0
    assert tapers.sampling.to_dict() == {"steps": 1, "edge_taper_mm": 3.0}
    plain = default_preprocessing("pseudo3d", (), residual=False)
    image_model = ModelCard.coerce({**card, "preprocessing": plain,
                                    "config": {**CONFIG, "in_channels": 3}})  # fmt: skip
    with pytest.raises(ValueError, match="corrects a classical prefill"):
        SamplingPlan(edge_taper_mm=2).resolve(image_model)
    with pytest.raises(ValueError, match="at least 0"):
        SamplingPlan(edge_taper_mm=-1)


class _LinearInNoise(torch.nn.Module):
    """A pointwise network whose output is ``slope`` x its noisy input plus a function of
    the voided image: what a one-step fill's dependence on its starting noise looks like
    to first order, and mirror-equivariant, so antithetic noise must cancel it exactly."""

    def __init__(self, slope: float) -> None:
        super().__init__()
        self.slope = slope

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.slope * x[:, :1] + 0.2 * torch.tanh(x[:, 1:2])


@pytest.mark.parametrize("flip", [False, True])
def test_antithetic_noise_cancels_what_moves_with_the_noise(flip):
    _, card = _model(zero=True)
    img, mask = _case()
    kw = {"steps": 1, "n_samples": 2, "flip": flip, "zooms": (1.0, 1.0, 1.0), "seed": 3,
          "prefill": classical_prefill}  # fmt: skip
    noiseless = inpaint_volume(img, mask, _LinearInNoise(0.0), card, **kw).mean
    paired = inpaint_volume(img, mask, _LinearInNoise(0.5), card, antithetic=True, **kw)
    drawn = inpaint_volume(img, mask, _LinearInNoise(0.5), card, antithetic=False, **kw)
    assert np.allclose(paired.mean, noiseless, atol=1e-4)  # the noise term cancelled
    assert not np.allclose(drawn.mean, noiseless, atol=1e-2)  # independent draws keep it
    assert np.array_equal(paired.mean[~mask], img[~mask])
    assert paired.std is not None and paired.std[mask].max() > 0  # the two samples differ


def test_antithetic_default_comes_from_the_card_and_needs_a_conditional_model():
    from bidsfill.diffusion.card import ModelCard
    from bidsfill.diffusion.sampling import SamplingPlan

    _, card = _model(zero=True)
    paired = ModelCard.coerce({**card, "sampling": {"n_samples": 2, "antithetic": True}})
    assert SamplingPlan().resolve(ModelCard.coerce(card)).antithetic is False
    assert SamplingPlan().resolve(paired).antithetic is True
    assert SamplingPlan(antithetic=False).resolve(paired).antithetic is False
    assert paired.sampling.to_dict() == {"n_samples": 2, "antithetic": True}
    unconditional = {**card, "config": {**CONFIG, "in_channels": 1},
                     "preprocessing": default_preprocessing("pseudo3d", ())}  # fmt: skip
    with pytest.raises(ValueError, match="--antithetic needs"):
        SamplingPlan(antithetic=True).resolve(ModelCard.coerce(unconditional))
