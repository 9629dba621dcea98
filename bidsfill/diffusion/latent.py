"""LDM 3D: a 3D autoencoder and a diffusion U-Net in its latent space, in one module.

Durrer et al. 2025 (after Khader et al.) encode the noisy image, the voided image b and
the mask m with one autoencoder and diffuse in its latent space. Here MONAI's
``AutoencoderKL`` encodes every image channel on its own, x0 (or a residual model's
correction), b, m and extras alike, into :data:`LATENT_CHANNELS` channels at
1/:data:`LATENT_FACTOR` of the resolution, and :class:`~bidsfill.diffusion.networks.
Volume3DUNet` denoises the stacked latents. Both live in one module, so one safetensors
file and one card hold both stages. Training is two-staged (the spec's ``stages``): the
autoencoder first (:meth:`LatentDiffusion.stage_loss`), then the diffusion model on the
frozen autoencoder's latents, scaled to unit variance (:meth:`LatentDiffusion.
fit_latent_scale`, as Rombach et al.'s scale factor).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from monai.networks.nets import AutoencoderKL
from torch import nn

from bidsfill.diffusion.networks import Volume3DUNet

__all__ = [
    "AUTOENCODER_DEFAULTS",
    "LATENT_CHANNELS",
    "LATENT_CLIP",
    "LATENT_FACTOR",
    "LatentDiffusion",
]

#: Latent channels per image channel, and image voxels per latent voxel along each axis
#: (three autoencoder levels; 4 as the paper's 128^3 -> 32^3). Fixed, so the spec's
#: bands and downsample are constants.
LATENT_CHANNELS = 4
LATENT_FACTOR = 4

#: The autoencoder's config (three levels; no attention: MONAI's needs einops and is
#: quadratic in a crop's voxels).
AUTOENCODER_DEFAULTS: dict[str, Any] = {"channels": [16, 32, 32], "num_res_blocks": 1,
                                        "norm_num_groups": 8}  # fmt: skip

#: The sampler clips a latent model's x0 estimate to +-this: its latents have unit
#: variance (fit_latent_scale), and an epsilon model's estimate at the noisiest steps,
#: unclipped, decodes to values far outside any image.
LATENT_CLIP = 5.0

#: Weight of the KL term in the autoencoder loss (MONAI's 3D LDM tutorial uses 1e-6): a
#: nearly plain autoencoder, whose latents fit_latent_scale brings to unit variance.
KL_WEIGHT = 1e-6


class LatentDiffusion(nn.Module):
    """An ``AutoencoderKL`` (``self.autoencoder``) and a latent U-Net (``self.unet``).

    ``model(z, t)`` runs the U-Net on ``(N, in_channels, D, H, W)`` latents;
    :meth:`encode` and :meth:`decode` map image channels to latents and back.

    Args:
        in_channels, out_channels: latent channels of the U-Net (multiples of
            :data:`LATENT_CHANNELS`: x_t's latent, then b's, m's and the extras').
        channels, num_res_blocks, norm_num_groups: the U-Net's.
        autoencoder: the autoencoder's ``channels`` (three levels), ``num_res_blocks``,
            ``norm_num_groups`` (defaults :data:`AUTOENCODER_DEFAULTS`).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        channels: Sequence[int] = (16, 32, 64),
        num_res_blocks: int = 1,
        norm_num_groups: int = 8,
        autoencoder: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if in_channels % LATENT_CHANNELS or out_channels % LATENT_CHANNELS:
            raise ValueError(
                f"ldm3d in_channels and out_channels must be multiples of {LATENT_CHANNELS}."
            )
        ae = {**AUTOENCODER_DEFAULTS, **(autoencoder or {})}
        unknown = set(ae) - set(AUTOENCODER_DEFAULTS)
        if unknown:
            raise ValueError(f"Unknown autoencoder config keys: {sorted(unknown)}.")
        if 2 ** (len(ae["channels"]) - 1) != LATENT_FACTOR:
            raise ValueError(f"The autoencoder needs 3 levels of channels, got {ae['channels']}.")
        levels = len(ae["channels"])
        self.autoencoder = AutoencoderKL(
            spatial_dims=3, in_channels=1, out_channels=1, channels=tuple(ae["channels"]),
            latent_channels=LATENT_CHANNELS, num_res_blocks=int(ae["num_res_blocks"]),
            norm_num_groups=int(ae["norm_num_groups"]), attention_levels=(False,) * levels,
            with_encoder_nonlocal_attn=False, with_decoder_nonlocal_attn=False,
        )  # fmt: skip
        self.unet = Volume3DUNet(in_channels, out_channels, channels, num_res_blocks,
                                 norm_num_groups)  # fmt: skip
        # latents are multiplied by this before diffusion (saved with the weights)
        self.register_buffer("latent_scale", torch.ones(()))

    def forward(
        self, z: torch.Tensor, t: torch.Tensor | None, stage: str | None = None
    ) -> torch.Tensor:
        """The U-Net on latents ``z`` at timesteps ``t``; with ``stage``, the loss of that
        training stage on image channels ``z`` instead (:meth:`stage_loss`), so that
        DistributedDataParallel, which wraps forward only, syncs every stage."""
        if stage is not None:
            return self.stage_loss(stage, z)
        return self.unet(z, t)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, X, Y, Z)`` image channels -> ``(N, C * L, X/f, Y/f, Z/f)`` latents (the
        autoencoder's posterior means, scaled), each channel encoded on its own."""
        n, c = x.shape[:2]
        mu, _ = self.autoencoder.encode(x.reshape(n * c, 1, *x.shape[2:]).float())
        return (mu * self.latent_scale).reshape(n, c * LATENT_CHANNELS, *mu.shape[2:])

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`encode` (up to the autoencoder's reconstruction error)."""
        n, cl = z.shape[:2]
        c = cl // LATENT_CHANNELS
        lat = (z.float() / self.latent_scale).reshape(n * c, LATENT_CHANNELS, *z.shape[2:])
        img = self.autoencoder.decode(lat)
        return img.reshape(n, c, *img.shape[2:])

    def stage_loss(self, stage: str, x: torch.Tensor) -> torch.Tensor:
        """The objective of a training stage before diffusion: for "autoencoder", the L1
        reconstruction of every image channel of ``x`` (``(N, C, X, Y, Z)``: x0, b, m,
        extras, as :meth:`encode` will see them) plus a small KL term."""
        if stage != "autoencoder":
            raise ValueError(f"LatentDiffusion has no training stage {stage!r}.")
        images = x.reshape(-1, 1, *x.shape[2:])
        recon, mu, sigma = self.autoencoder(images)
        var = sigma.pow(2).clamp(min=1e-12)
        kl = 0.5 * (mu.pow(2) + var - var.log() - 1).sum(dim=(1, 2, 3, 4)).mean()
        return nn.functional.l1_loss(recon.float(), images.float()) + KL_WEIGHT * kl

    @torch.no_grad()
    def fit_latent_scale(self, x: torch.Tensor) -> float:
        """Set the latent scale so that the latents of image channels ``x`` have unit
        standard deviation, as the noise schedule assumes; returns it."""
        self.latent_scale.fill_(1.0)
        std = float(self.encode(x).std())
        self.latent_scale.fill_(1.0 / max(std, 1e-6))
        return float(self.latent_scale)
