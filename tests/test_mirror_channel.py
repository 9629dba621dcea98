"""The contralateral ("mirror") channel of the residual default hides what the mask hides.

Reflected about the mid-sagittal plane, a scan shows next to a midline-near mask what the
mask covers: the truth in training, the lesion in a patient. A card with
``mirror_hides_mask`` shows the prefill there instead, in training and in the fill alike.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from bidsfill.diffusion.architectures import build_network
from bidsfill.diffusion.card import default_preprocessing
from bidsfill.diffusion.schedules import NoiseSchedule
from bidsfill.diffusion.weights import save_weights
from bidsfill.fill.base import fill_image
from bidsfill.segment.midline import GridReflection, MidPlane, reflected_mask
from bidsfill.train.dataset import InpaintingDataset, TrainVolume
from bidsfill.train.loop import TrainConfig, train
from bidsfill.train.masks import MaskGenerator

N = 32
PLANE = MidPlane((1.0, 0.0, 0.0), (N - 1) / 2)  # on the identity grid: x -> 31 - x


def _volume(n: int = N) -> TrainVolume:
    """A textured, left-right asymmetric 'brain' with its mirror about its centre plane
    (PLANE for the default size)."""
    rng = np.random.default_rng(3)
    g = np.indices((n, n, n)).astype(np.float32) - (n - 1) / 2
    r = np.sqrt((g**2).sum(0))
    wm = np.clip((n / 3.2 - r) / 2 + 0.5, 0, 1).astype(np.float32)
    brain = r < n / 2 - 2
    texture = gaussian_filter(rng.standard_normal((n, n, n)), 1.5) * 25
    image = np.where(brain, 60 + 40 * wm + texture, 0).astype(np.float32)
    return TrainVolume("asym", image, np.eye(4), (1.0, 1.0, 1.0), wm, brain,
                       extras={"mirror": np.ascontiguousarray(image[::-1])},
                       midplane=PLANE)  # fmt: skip


def _preprocessing(hides: bool = True, margin: int = 2) -> dict:
    pre = default_preprocessing("pseudo3d", ("mirror", "prefill"), residual=True)
    pre.update(patch_size=[16, 16, 4], window=4, window_overlap=2, margin=margin,
               prefill_method="nonlocal", mirror_hides_mask=hides)  # fmt: skip
    return pre


def test_reflected_mask_is_the_mask_reflected_on_a_box_too():
    mask = np.zeros((N, N, N), bool)
    mask[3:7, 10:14, 5:9] = True
    full = reflected_mask(mask, np.eye(4), PLANE)
    assert np.array_equal(full, mask[::-1])
    first = np.eye(4)  # a box cut from the volume: its own first voxel at x = 2
    first[0, 3] = 2
    assert np.array_equal(reflected_mask(mask[2:30], first, PLANE), full[2:30])


def test_training_mirror_shows_the_prefill_where_it_would_show_the_hidden_truth():
    vol = _volume()
    ds = InpaintingDataset(
        [vol], arch="pseudo3d", config={"in_channels": 5}, preprocessing=_preprocessing(),
        masks=MaskGenerator({"random": 1.0}, volume_ml={"random": (0.2, 0.8)}),
        region=(24, 24, 8), seed=0, mask_bank=6,
    )  # fmt: skip
    hidden_somewhere = False
    for index in range(6):
        image, mask, extras, _ = ds._region(index)
        # The region's crop, drawn as _region draws it, and the reflection worked out by
        # hand: region x index i is volume x i + s, mirrored to 31 - i - s.
        j = int(np.random.default_rng([ds.seed, index]).integers(ds.mask_bank))
        _, crop, _ = ds._bank_entry(j)
        s = crop.start[0] - crop.pad[0][0]
        src = (N - 1) - np.arange(mask.shape[0]) - 2 * s
        ok = (src >= 0) & (src < mask.shape[0])
        reflected = np.zeros_like(mask)
        reflected[ok] = mask[src[ok]]
        plain = crop.extract(vol.extras["mirror"])
        expected = np.where(reflected, extras["prefill"], plain)
        assert np.array_equal(extras["mirror"], expected)
        # where the plain mirror shows the truth under the mask, the channel does not
        truth_shown = reflected & ~mask
        if truth_shown.any():
            hidden_somewhere = True
            assert not np.allclose(extras["mirror"][truth_shown], plain[truth_shown])
    assert hidden_somewhere


def test_a_model_grows_the_mirror_channel_with_each_old_channel_in_its_place(tmp_path):
    """From a [prefill] model to a [mirror, prefill] one: at step 0 the grown network is
    the start, whatever the mirror holds, and the prefill keeps its own weights."""
    cfg4 = {"in_channels": 4, "out_channels": 1, "channels": [8, 16], "num_res_blocks": 1,
            "norm_num_groups": 4}  # fmt: skip
    torch.manual_seed(0)
    start = build_network("pseudo3d", **cfg4)
    for p in start.parameters():
        p.data.normal_(0, 0.05)
    start_pre = default_preprocessing("pseudo3d", ("prefill",), residual=True)
    schedule = {"num_train_timesteps": 100, "beta_schedule": "cosine", "prediction_type": "sample"}
    path = save_weights(start, {"architecture": "pseudo3d", "config": cfg4,
                                "schedule": schedule, "preprocessing": start_pre},
                        tmp_path / "start")  # fmt: skip
    cfg5 = {**cfg4, "in_channels": 5}
    ds = InpaintingDataset(
        [_volume()], arch="pseudo3d", config=cfg5, preprocessing=_preprocessing(),
        masks=MaskGenerator({"random": 1.0}, volume_ml={"random": (0.03, 0.2)}),
        region=(24, 24, 8), seed=0, mask_bank=2,
    )  # fmt: skip
    config = TrainConfig(run_dir=str(tmp_path / "run"), arch="pseudo3d", network=cfg5,
                         schedule=schedule, preprocessing=_preprocessing(), steps=0,
                         batch_size=1, init_from=str(path))  # fmt: skip
    grown = train(config, ds, resume=False).ema.eval()
    x = torch.randn(1, 3, 4, 16, 16)  # noisy image, masked image, mask
    prefill = torch.randn(1, 1, 4, 16, 16)
    t = torch.tensor([99])
    with torch.no_grad():
        want = start.eval()(torch.cat([x, prefill], 1), t)
        for _ in range(2):
            mirror = torch.randn(1, 1, 4, 16, 16)
            got = grown(torch.cat([x, mirror, prefill], 1), t)
            assert torch.allclose(got, want, atol=1e-6)


def _mirror_model(tmp_path, hides: bool):
    cfg = {"in_channels": 5, "out_channels": 1, "channels": [8, 16], "norm_num_groups": 4}
    torch.manual_seed(0)
    net = build_network("pseudo3d", **cfg)
    for p in net.parameters():  # random weights: every input channel moves the fill
        p.data.normal_(0, 0.05)
    card = {"architecture": "pseudo3d", "config": cfg, "preprocessing": _preprocessing(hides, margin=6),
            "schedule": NoiseSchedule(20, "cosine", "sample").to_dict()}  # fmt: skip
    return save_weights(net, card, tmp_path / f"mirror-{hides}")


def test_the_fill_never_sees_what_the_mask_covers(tmp_path):
    """Two scans that differ only under the mask get the same fill bit for bit; a model
    whose mirror shows everything sees the difference across the midline."""
    image = _volume().image
    mask = np.zeros(image.shape, bool)
    mask[11:14, 12:18, 13:17] = True  # left of the midline, its unmasked reflection in view
    other = np.where(mask, image[::-1] * 0.3 + 200, image).astype(np.float32)
    for hides in (True, False):
        kwargs = {"method": "pseudo3d", "zooms": (1.0, 1.0, 1.0), "seed": 0, "steps": 1,
                  "n_samples": 1, "device": "cpu", "model": str(_mirror_model(tmp_path, hides))}
        a = fill_image(image, mask, **kwargs)
        b = fill_image(other, mask, **kwargs)
        assert np.array_equal(a.filled[~mask], image[~mask])
        assert np.array_equal(a.filled, b.filled) == hides


def test_grid_reflection_follows_a_box_and_a_resampled_grid():
    """Adaptation hides each drawn mask's reflection on the model's grid: a box of it and
    the scan resampled to it (here 2 mm -> 1 mm about the array's centre: the mirror of
    the new array)."""
    coarse = GridReflection.array_centre((16, 16, 16))
    fine = coarse.resampled((16, 16, 16), (32, 32, 32))
    mask = np.zeros((32, 32, 32), bool)
    mask[6:10, 8:20, 5:9] = True
    assert np.array_equal(fine.in_box(mask, (0, 0, 0)), mask[::-1])
    assert np.array_equal(fine.in_box(mask[4:28], (4, 0, 0)), mask[::-1][4:28])


def test_adaptation_of_a_mirror_model_never_sees_what_the_mask_covers(tmp_path):
    """--adapt-steps draws masks in the scan's healthy tissue and hides their reflections;
    the lesion stays hidden too: two scans that differ only under the mask get the same
    adapted fill, on the model's own grid and through a resampled one."""
    image = _volume(64).image  # room for adaptation regions away from the lesion
    mask = np.zeros(image.shape, bool)
    mask[25:30, 28:34, 28:32] = True
    other = np.where(mask, image[::-1] * 0.3 + 200, image).astype(np.float32)
    model = str(_mirror_model(tmp_path, True))
    for zooms in ((1.0, 1.0, 1.0), (1.2, 1.2, 1.2)):
        kwargs = {"method": "pseudo3d", "zooms": zooms, "seed": 0, "steps": 1,
                  "n_samples": 1, "device": "cpu", "model": model}  # fmt: skip
        plain = fill_image(image, mask, **kwargs)
        a = fill_image(image, mask, adapt_steps=2, **kwargs)
        b = fill_image(other, mask, adapt_steps=2, **kwargs)
        assert np.array_equal(a.filled, b.filled)
        assert not np.array_equal(a.filled, plain.filled)  # adaptation changed the model
