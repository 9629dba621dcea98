"""The seq-pos model's slice positions (issue 17): the absolute, normalised z of every
slice reaches the network the same way in training and at fill time, on the native and
on a resampled grid, window by window."""

from __future__ import annotations

import numpy as np
import torch

from bidsfill.diffusion.architectures import build_network, get_architecture
from bidsfill.diffusion.card import ModelCard, default_preprocessing
from bidsfill.diffusion.crops import Crop, CropGrid, training_patch
from bidsfill.diffusion.examples import make_training_example
from bidsfill.diffusion.inference import inpaint_volume
from bidsfill.diffusion.networks import Pseudo3DUNet, SlicePositionUNet
from bidsfill.diffusion.schedules import NoiseSchedule

CFG = {"in_channels": 3, "out_channels": 1, "channels": [8, 16], "norm_num_groups": 4}


def test_positions_on_native_and_resampled_grids():
    native = CropGrid.native(Crop((0, 0, 5), (8, 8, 13), ((0, 0), (0, 0), (1, 1))), (0, 20))
    assert np.allclose(native.slice_positions(), (np.arange(4, 14) + 0.5) / 20)
    # 2 mm slices [4, 8) of a 10-slice scan on a 1 mm grid: each pair of model slices
    # averages to the centre of the native slice it came from.
    grid = CropGrid(Crop((0, 0, 4), (8, 8, 8)), (8, 8, 8), ((0, 0), (0, 0), (0, 0)), (0, 10))
    pos = grid.slice_positions()
    assert np.allclose(pos.reshape(4, 2).mean(1), (np.arange(4, 8) + 0.5) / 10)
    assert np.allclose(np.diff(pos), 0.05)


def test_training_example_carries_the_regions_place_in_its_volume():
    rng = np.random.default_rng(0)
    region = rng.normal(100, 10, (24, 24, 12)).astype(np.float32)
    mask = np.zeros(region.shape, bool)
    mask[10:14, 10:14, 4:8] = True
    pre = default_preprocessing("seqpos")
    pre.update(patch_size=[16, 16, 4], window=4, window_overlap=2)
    kw = {"arch": "seqpos", "config": CFG, "preprocessing": pre}
    ex = make_training_example(region, mask, rng=np.random.default_rng(3), z_frame=(30, 90),
                               **kw)  # fmt: skip
    crop = training_patch(mask, rng=np.random.default_rng(3), **kw)
    z = crop.start[2] - crop.pad[2][0] + np.arange(4)
    assert ex.condition.shape[0] == 3  # b, m, positions: (C, Z, X, Y)
    assert torch.allclose(ex.condition[-1, :, 0, 0], torch.tensor((30 + z + 0.5) / 90).float())
    assert bool((ex.condition[-1] == ex.condition[-1, :, :1, :1]).all())  # constant per slice
    # An unconditional seq-pos model still takes its positions.
    uncond = make_training_example(region, mask, rng=np.random.default_rng(3), arch="seqpos",
                                   config={**CFG, "in_channels": 1}, preprocessing=pre)  # fmt: skip
    assert uncond.condition.shape[0] == 1
    assert torch.allclose(uncond.condition[0, :, 0, 0], torch.tensor((z + 0.5) / 12).float())


class _Spy(SlicePositionUNet):
    seen: list[torch.Tensor]

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.seen.append(x[:, -1, :, 0, 0].clone())
        return super().forward(x, t)


def test_fill_gives_every_window_its_absolute_positions():
    net = _Spy(**CFG)
    net.seen = []
    pre = default_preprocessing("seqpos")
    pre.update(window=4, window_overlap=2, margin=2)
    card = ModelCard.from_dict({"architecture": "seqpos", "config": CFG,
                                "schedule": NoiseSchedule(10).to_dict(),
                                "preprocessing": pre})  # fmt: skip
    img = np.full((16, 16, 30), 100.0, np.float32)
    mask = np.zeros(img.shape, bool)
    mask[6:9, 6:9, 20:23] = True
    inpaint_volume(img, mask, net, card, steps=1, zooms=(1.0, 1.0, 2.0))  # 2 mm slices
    windows = torch.cat(net.seen)
    assert windows.shape[1] == 4
    # On the 1 mm grid consecutive slices are half a native slice apart, and the window
    # around the lesion sits where the lesion is in the 30-slice scan.
    assert torch.allclose(windows[:, 1:] - windows[:, :-1], torch.tensor(0.5 / 30))
    lesion = (np.arange(20, 23) + 0.5) / 30
    assert windows.min() < lesion.min() and windows.max() > lesion.max()
    assert float(windows.max()) < 1.0 and float(windows.min()) > 0.5


def test_untrained_position_embedding_is_the_slicewise_model():
    torch.manual_seed(0)
    seqpos = build_network("seqpos", **CFG)
    slicewise = Pseudo3DUNet(**CFG, z_conv=False)
    last = {id(p) for p in seqpos.pos_embed[-1].parameters()}
    for p in seqpos.parameters():  # any weights but the zero-initialised last layer
        if id(p) not in last:
            p.data.normal_(0, 0.1)
    slicewise.load_state_dict(
        {k: v for k, v in seqpos.state_dict().items() if not k.startswith("pos_embed")}
    )
    x = torch.randn(2, 3, 4, 8, 8)
    pos = torch.rand(2, 1, 4, 1, 1).expand(2, 1, 4, 8, 8)
    t = torch.tensor([3, 7])
    assert torch.allclose(seqpos(torch.cat([x, pos], 1), t), slicewise(x, t), atol=1e-6)
    spec = get_architecture("seqpos")
    assert spec.condition_channels(pos, False).shape[1] == 1
    assert spec.condition_channels(pos, True) is pos
    assert get_architecture("slicewise").condition_channels(pos, False) is None
