"""Diffusion U-Nets: pseudo-3D, slice-wise and seq-pos 2D on z-windows, 3D U-Nets.

Every network is called as ``model(x, t)`` with ``t`` a long tensor of shape ``(N,)``
and is built from a JSON-serialisable config by
:func:`bidsfill.diffusion.architectures.build_network`, so a model card can rebuild it.
Conditional models take their channels in this order: the noisy image x_t, the voided
image b = x * (1 - m), the mask m, then optional extras (mirrored contralateral image,
FLAIR); unconditional (RePaint) models take x_t only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from monai.networks.nets.diffusion_model_unet import (
    DiffusionUnetDownsample,
    DiffusionUNetResnetBlock,
    get_timestep_embedding,
)
from torch import nn

__all__ = ["Image2DUNet", "Pseudo3DUNet", "SlicePositionUNet", "Volume3DUNet", "WaveletUNet"]

#: A slice position (0..1) is scaled to the timesteps' range before its sinusoidal
#: embedding, so the same frequencies resolve neighbouring slices.
POSITION_SCALE = 1000.0


class _ZConv(nn.Module):
    """1D convolution along z applied to a stack of 2D feature maps.

    Written by hand because MONAI has no pseudo-3D block. Initialised to the identity
    (Dirac kernel, zero bias) so a pretrained 2D U-Net's behaviour is kept at the start.
    """

    def __init__(self, channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2)
        nn.init.dirac_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, h: torch.Tensor, nz: int) -> torch.Tensor:
        nzb, c, hh, ww = h.shape
        n = nzb // nz
        # (N*Z, C, H, W) -> (N*H*W, C, Z) -> conv along Z -> back
        h = h.reshape(n, nz, c, hh, ww).permute(0, 3, 4, 2, 1).reshape(n * hh * ww, c, nz)
        h = self.conv(h)
        return h.reshape(n, hh, ww, c, nz).permute(0, 4, 3, 1, 2).reshape(nzb, c, hh, ww)


class _MonaiResnetBlock(DiffusionUNetResnetBlock):
    """MONAI's diffusion residual block behind one signature, :meth:`run`.

    The only code that knows the block's attribute names, so a rename in MONAI breaks
    here alone; the state-dict keys stay MONAI's, so shipped weights keep loading.
    """

    def run(
        self,
        x: torch.Tensor,
        emb: torch.Tensor,
        after_conv1: Callable[[torch.Tensor], torch.Tensor],
        after_conv2: Callable[[torch.Tensor], torch.Tensor],
    ) -> torch.Tensor:
        """The block's forward pass with a hook after each of its two convolutions."""
        h = after_conv1(self.conv1(self.nonlinearity(self.norm1(x))))
        temb = self.time_emb_proj(self.nonlinearity(emb))
        h = h + temb.reshape(*emb.shape[:1], -1, *[1] * self.spatial_dims)
        # second conv pair (zero-initialised 2D conv, so the block starts as identity)
        h = after_conv2(self.conv2(self.nonlinearity(self.norm2(h))))
        return self.skip_connection(x) + h


def _identity(h: torch.Tensor) -> torch.Tensor:
    return h


class _ResBlock(nn.Module):
    """MONAI's 2D diffusion residual block with optional z convolutions after each conv."""

    def __init__(
        self, in_ch: int, out_ch: int, temb_ch: int, groups: int, z_conv: bool, dims: int = 2
    ) -> None:
        super().__init__()
        self.dims = dims
        self.block = _MonaiResnetBlock(
            spatial_dims=dims,
            in_channels=in_ch,
            temb_channels=temb_ch,
            out_channels=out_ch,
            norm_num_groups=groups,
        )
        self.zconv1 = _ZConv(out_ch) if z_conv else None
        self.zconv2 = _ZConv(out_ch) if z_conv else None

    def forward(self, x: torch.Tensor, emb: torch.Tensor, nz: int) -> torch.Tensor:
        # 2D convs, each followed by the 1D z conv (Pseudo3D, Durrer et al. 2025)
        if self.zconv1 is None or self.zconv2 is None:
            return self.block.run(x, emb, _identity, _identity)
        return self.block.run(x, emb, lambda h: self.zconv1(h, nz), lambda h: self.zconv2(h, nz))


class _Upsample(nn.Module):
    def __init__(self, channels: int, dims: int = 2) -> None:
        super().__init__()
        conv = nn.Conv3d if dims == 3 else nn.Conv2d
        self.conv = conv(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(nn.functional.interpolate(x, scale_factor=2.0, mode="nearest"))


class _UNetCore(nn.Module):
    """Encoder-decoder of MONAI diffusion residual blocks, in 2D (per slice) or 3D.

    Written out here instead of using MONAI's ``DiffusionModelUNet`` because that class
    cannot host the z convolutions and always puts self-attention (einops, slow on CPU)
    in its bottleneck.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        channels: Sequence[int],
        num_res_blocks: int,
        norm_num_groups: int,
        z_conv: bool,
        dims: int,
    ) -> None:
        super().__init__()
        channels = [int(c) for c in channels]
        if in_channels < 1 or out_channels < 1:
            raise ValueError("in_channels and out_channels must be >= 1.")
        if not channels or any(c % norm_num_groups for c in channels):
            raise ValueError(
                f"channels {channels} must be non-empty and divisible by norm_num_groups "
                f"{norm_num_groups}."
            )
        if num_res_blocks < 1:
            raise ValueError(f"num_res_blocks must be >= 1, got {num_res_blocks}.")
        self.dims = dims
        self.divisor = 2 ** (len(channels) - 1)
        conv = nn.Conv3d if dims == 3 else nn.Conv2d
        ch0 = channels[0]
        temb = 4 * ch0
        self.temb_dim = ch0
        self.time_embed = nn.Sequential(nn.Linear(ch0, temb), nn.SiLU(), nn.Linear(temb, temb))
        self.conv_in = conv(in_channels, ch0, 3, padding=1)

        def res(i: int, o: int) -> _ResBlock:
            return _ResBlock(i, o, temb, norm_num_groups, z_conv, dims)

        self.down = nn.ModuleList()
        skip_ch = [ch0]
        prev = ch0
        for level, ch in enumerate(channels):
            for _ in range(num_res_blocks):
                self.down.append(res(prev, ch))
                prev = ch
                skip_ch.append(ch)
            if level < len(channels) - 1:
                self.down.append(DiffusionUnetDownsample(dims, ch, use_conv=True))
                skip_ch.append(ch)
        self.mid = nn.ModuleList([res(prev, prev), res(prev, prev)])
        self.up = nn.ModuleList()
        for level in reversed(range(len(channels))):
            ch = channels[level]
            for _ in range(num_res_blocks + 1):
                self.up.append(res(prev + skip_ch.pop(), ch))
                prev = ch
            if level > 0:
                self.up.append(_Upsample(ch, dims))
        self.out = nn.Sequential(
            nn.GroupNorm(norm_num_groups, prev), nn.SiLU(), conv(prev, out_channels, 3, padding=1)
        )
        # Zero-initialised output: an untrained model predicts 0 (the mean of eps / x_0).
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def _check_input(self, x: torch.Tensor, layout: str, checked: int) -> None:
        """Refuse an input of the wrong rank, or whose last ``checked`` sizes the U-Net's
        down-sampling cannot halve ``len(channels) - 1`` times."""
        if x.ndim != len(layout.split(", ")):
            raise ValueError(f"Expected ({layout}), got shape {tuple(x.shape)}.")
        sizes = tuple(x.shape[-checked:])
        if any(s % self.divisor for s in sizes):
            raise ValueError(f"Sizes {sizes} must be divisible by {self.divisor}.")

    def run(
        self, h: torch.Tensor, t: torch.Tensor, nz: int, extra_emb: torch.Tensor | None = None
    ) -> torch.Tensor:
        # 1. timestep embedding, shared by the nz slices of a window (plus a per-slice
        # embedding, e.g. the slice position, when given)
        emb = get_timestep_embedding(t.reshape(-1), self.temb_dim).to(dtype=h.dtype)
        emb = self.time_embed(emb).repeat_interleave(nz, dim=0)
        if extra_emb is not None:
            emb = emb + extra_emb
        # 2. encoder
        h = self.conv_in(h)
        skips = [h]
        for layer in self.down:
            h = layer(h, emb, nz) if isinstance(layer, _ResBlock) else layer(h, emb)
            skips.append(h)
        # 3. bottleneck
        for layer in self.mid:
            h = layer(h, emb, nz)
        # 4. decoder with skip connections
        for layer in self.up:
            if isinstance(layer, _ResBlock):
                h = layer(torch.cat([h, skips.pop()], dim=1), emb, nz)
            else:
                h = layer(h)
        return self.out(h)


class Pseudo3DUNet(_UNetCore):
    """2D diffusion U-Net on windows of consecutive slices, with optional z convolutions.

    Input ``(N, C, Z, H, W)``: channels x_t (1), voided image b (1), mask m (1) and extras
    for conditional models, x_t only for unconditional ones; Z consecutive axial slices;
    H and W divisible by ``2 ** (len(channels) - 1)``. One timestep per window: ``t`` is
    ``(N,)``. Output ``(N, out_channels, Z, H, W)``.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        channels: feature channels per resolution level.
        num_res_blocks: residual blocks per level.
        norm_num_groups: GroupNorm groups (must divide every entry of ``channels``).
        z_conv: True for pseudo3d (1D convs along z), False for slicewise.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        channels: Sequence[int] = (32, 64, 128),
        num_res_blocks: int = 1,
        norm_num_groups: int = 8,
        z_conv: bool = True,
    ) -> None:
        super().__init__(
            in_channels, out_channels, channels, num_res_blocks, norm_num_groups, z_conv, 2
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self._check_input(x, "N, C, Z, H, W", 2)
        n, c, nz, hh, ww = x.shape
        # slices become the batch: (N, C, Z, H, W) -> (N*Z, C, H, W) and back
        h = x.permute(0, 2, 1, 3, 4).reshape(n * nz, c, hh, ww)
        h = self.run(h, t, nz)
        return h.reshape(n, nz, -1, hh, ww).permute(0, 2, 1, 3, 4)


class SlicePositionUNet(Pseudo3DUNet):
    """The slice-wise 2D U-Net with each slice's position in its volume as an embedding
    (DDPM 2D seq-pos, Durrer et al. 2025).

    Input ``(N, C + 1, Z, H, W)``: the ``C = in_channels`` channels of
    :class:`Pseudo3DUNet`, then one slice-position channel, constant over each slice (the
    slice's normalised z in its volume, :meth:`~bidsfill.diffusion.crops.CropGrid.
    slice_positions`). That channel is not convolved: its value is embedded like the
    timestep (sinusoids and an MLP) and added to the slice's time embedding. The MLP's
    last layer starts at zero, so an untrained model is exactly the slice-wise one.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        channels: Sequence[int] = (32, 64, 128),
        num_res_blocks: int = 1,
        norm_num_groups: int = 8,
    ) -> None:
        super().__init__(in_channels, out_channels, channels, num_res_blocks, norm_num_groups,
                         z_conv=False)  # fmt: skip
        temb = 4 * self.temb_dim
        self.pos_embed = nn.Sequential(
            nn.Linear(self.temb_dim, temb), nn.SiLU(), nn.Linear(temb, temb)
        )
        nn.init.zeros_(self.pos_embed[-1].weight)
        nn.init.zeros_(self.pos_embed[-1].bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self._check_input(x, "N, C, Z, H, W", 2)
        n, c, nz, hh, ww = x.shape
        pos = x[:, -1, :, 0, 0].reshape(-1).float()  # (N*Z,): one value per slice
        pemb = get_timestep_embedding(pos * POSITION_SCALE, self.temb_dim).to(dtype=x.dtype)
        h = x[:, :-1].permute(0, 2, 1, 3, 4).reshape(n * nz, c - 1, hh, ww)
        h = self.run(h, t, nz, self.pos_embed(pemb))
        return h.reshape(n, nz, -1, hh, ww).permute(0, 2, 1, 3, 4)


class Volume3DUNet(_UNetCore):
    """3D diffusion U-Net on ``(N, C, D, H, W)`` volumes: image-space patches (ddpm3d),
    Haar sub-bands (:class:`WaveletUNet`) or latents (ldm3d).

    MONAI's residual and down-sampling blocks in 3D, without self-attention: MONAI's
    ``DiffusionModelUNet`` always puts self-attention in its bottleneck (an
    ``AttnMidBlock``, which needs einops), and attention over the voxels of a 3D crop is
    what a memory-efficient 3D model must avoid. D, H, W divisible by
    ``2 ** (len(channels) - 1)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        channels: Sequence[int] = (32, 64, 128),
        num_res_blocks: int = 1,
        norm_num_groups: int = 8,
    ) -> None:
        super().__init__(
            in_channels, out_channels, channels, num_res_blocks, norm_num_groups, False, 3
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self._check_input(x, "N, C, D, H, W", 3)
        return self.run(x, t, 1)


class WaveletUNet(Volume3DUNet):
    """3D diffusion U-Net on Haar sub-bands (cWDM / WDM 3D style).

    Input ``(N, 8 * k, D, H, W)`` at half resolution: the 8 sub-bands of x_t, then those of
    b and m (and extras) for conditional models. Predicts the sub-bands of x_0 (or eps,
    per the schedule). D, H, W divisible by ``2 ** (len(channels) - 1)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        channels: Sequence[int] = (32, 64, 128),
        num_res_blocks: int = 1,
        norm_num_groups: int = 8,
    ) -> None:
        if in_channels % 8 or out_channels % 8:
            raise ValueError("wdm3d in_channels and out_channels must be multiples of 8.")
        super().__init__(in_channels, out_channels, channels, num_res_blocks, norm_num_groups)


class Image2DUNet(_UNetCore):
    """Plain 2D diffusion U-Net on ``(N, C, H, W)`` images (histology, issue 18).

    The same MONAI residual blocks as the other networks, without self-attention:
    MONAI's ``DiffusionModelUNet`` needs einops for any attention and always puts it in
    its bottleneck, which is slow on CPU. H and W divisible by ``2 ** (len(channels) - 1)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        channels: Sequence[int] = (32, 64, 64, 64),
        num_res_blocks: int = 1,
        norm_num_groups: int = 16,
    ) -> None:
        super().__init__(
            in_channels, out_channels, channels, num_res_blocks, norm_num_groups, False, 2
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self._check_input(x, "N, C, H, W", 2)
        return self.run(x, t, 1)
