"""Networks: shapes, argument checks, identity-initialised z convolutions."""

from __future__ import annotations

import pytest
import torch

from bidsfill.diffusion.architectures import build_network, spatial_divisor

SMALL = {"channels": [8, 16], "norm_num_groups": 4}


@pytest.mark.parametrize(
    ("arch", "cin", "cout", "shape"),
    [
        ("pseudo3d", 4, 1, (2, 4, 3, 8, 12)),
        ("slicewise", 3, 1, (1, 3, 5, 8, 8)),
        ("wdm3d", 24, 8, (1, 24, 4, 6, 8)),
    ],
)
def test_forward_shapes(arch, cin, cout, shape):
    net = build_network(arch, in_channels=cin, out_channels=cout, **SMALL)
    out = net(torch.randn(shape), torch.tensor([3] * shape[0]))
    assert out.shape == (shape[0], cout, *shape[2:])


def test_pseudo3d_starts_as_slicewise_and_then_mixes_slices():
    torch.manual_seed(0)
    p3d = build_network("pseudo3d", in_channels=3, out_channels=1, **SMALL)
    slw = build_network("slicewise", in_channels=3, out_channels=1, **SMALL)
    torch.nn.init.normal_(p3d.out[-1].weight, std=0.1)
    slw.load_state_dict({k: v for k, v in p3d.state_dict().items() if "zconv" not in k})
    x, t = torch.randn(1, 3, 4, 8, 8), torch.tensor([10])
    # Identity-initialised z convs: the pseudo-3D net equals its 2D net at the start.
    assert torch.allclose(p3d(x, t), slw(x, t), atol=1e-5)
    # Once a z conv is trained, a change in slice 0 reaches slice 1 (not so slice-wise).
    for m in p3d.modules():
        if m.__class__.__name__ == "_ZConv":
            torch.nn.init.normal_(m.conv.weight, std=0.2)
    torch.nn.init.normal_(p3d.down[0].block.conv2.conv.weight, std=0.2)
    torch.nn.init.normal_(slw.down[0].block.conv2.conv.weight, std=0.2)
    x2 = x.clone()
    x2[:, :, 0] += 1.0
    assert not torch.allclose(p3d(x, t)[:, :, 1], p3d(x2, t)[:, :, 1])
    assert torch.allclose(slw(x, t)[:, :, 1], slw(x2, t)[:, :, 1])


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="architecture"):
        build_network("unet9d")
    with pytest.raises(ValueError, match="norm_num_groups"):
        build_network("pseudo3d", channels=[6, 12], norm_num_groups=4)
    with pytest.raises(ValueError, match="multiples of 8"):
        build_network("wdm3d", in_channels=10, **SMALL)
    with pytest.raises(ValueError, match="Unknown config"):
        build_network("slicewise", widths=[1])
    net = build_network("slicewise", in_channels=1, **SMALL)
    with pytest.raises(ValueError, match="divisible"):
        net(torch.zeros(1, 1, 2, 7, 8), torch.tensor([0]))


def test_spatial_divisor():
    assert spatial_divisor("pseudo3d", {"channels": [8, 16, 32]}) == 4
    assert spatial_divisor("wdm3d", {"channels": [8, 16, 32]}) == 8
