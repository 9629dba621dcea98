"""One spec per network architecture: its network, its layout and how its crops are made.

Everything that differs between architectures is a field or method of
:class:`ArchitectureSpec`, so no other module tests an architecture's name and adding
an architecture means adding one entry to :data:`SPECS`.

Layouts: volumes are ``(X, Y, Z)`` with Z axial. Slice models see ``(C, Z, X, Y)``
(axial slices first; windows of consecutive slices share one timestep), seq-pos models
with one more channel after the conditioning: each slice's position in its volume; 3D
image-space models see ``(C, X, Y, Z)`` as it is; the wavelet model sees the 8 Haar
sub-bands of each channel at half resolution. A latent model (ldm3d) takes the image
channels as they are and encodes them itself (:meth:`ArchitectureSpec.encode`) into its
autoencoder's latent space.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from bidsfill.diffusion.latent import (
    AUTOENCODER_DEFAULTS,
    LATENT_CHANNELS,
    LATENT_CLIP,
    LATENT_FACTOR,
    LatentDiffusion,
)
from bidsfill.diffusion.networks import (
    Image2DUNet,
    Pseudo3DUNet,
    SlicePositionUNet,
    Volume3DUNet,
    WaveletUNet,
)
from bidsfill.diffusion.wavelets import dwt3d, idwt3d

__all__ = [
    "ARCHITECTURES",
    "DEFAULT_CONFIGS",
    "IMAGE_2D_ARCHITECTURES",
    "SPECS",
    "ArchitectureSpec",
    "build_network",
    "get_architecture",
    "spatial_divisor",
]

#: Network config keys a card may set (the constructor arguments of every network).
CONFIG_KEYS = ("in_channels", "out_channels", "channels", "num_res_blocks", "norm_num_groups")


@dataclass(frozen=True)
class ArchitectureSpec:
    """What the engine needs to know about one architecture.

    Args:
        name: the model card's "architecture" value.
        network: builds the network from the card's config (keywords of CONFIG_KEYS).
        default_config: config values a card may leave out.
        bands: network channels per image channel (8 Haar sub-bands for wavelets).
        downsample: image voxels per network voxel along each axis.
        layout: "slices": the network sees windows of axial slices (``(C, Z, X, Y)``),
            so crops need only be divisible in-plane and at least one window deep;
            "volume": the image channels as they are; "wavelet": their Haar sub-bands.
        patch_size: default training patch ``(X, Y, Z)``.
        window, window_overlap: default z-window of slice models (None otherwise).
        image_dims: 3 for the MRI volume models (the fill methods of the app), 2 for
            models of 2D images (histology), which the MRI code never lists.
        slice_position: the network takes each slice's position in its volume as a last
            input channel (seq-pos); the crop pipeline appends it after the conditioning,
            for unconditional models too.
        config_keys: the config keys its network takes (CONFIG_KEYS and its own).
        latent: the network diffuses in a latent space of its own: it has ``encode``
            and ``decode`` for image channels in the layout (:meth:`encode`).
        stages: its training stages in order; the last is "diffusion", each earlier one
            an objective of the network's own (``network.stage_loss(stage, channels)``).
    """

    name: str
    network: Callable[..., nn.Module]
    default_config: dict[str, Any]
    bands: int = 1
    downsample: int = 1
    layout: str = "slices"
    patch_size: tuple[int, int, int] = (64, 64, 8)
    window: int | None = 8
    window_overlap: int | None = 4
    image_dims: int = 3
    network_kwargs: dict[str, Any] = field(default_factory=dict)
    slice_position: bool = False
    config_keys: tuple[str, ...] = CONFIG_KEYS
    latent: bool = False
    stages: tuple[str, ...] = ("diffusion",)

    # -- network ----------------------------------------------------------------------
    def build(self, **config: Any) -> nn.Module:
        """The network from a card's config; missing keys take :attr:`default_config`."""
        cfg = {**self.default_config, **config}
        unknown = set(cfg) - set(self.config_keys)
        if unknown:
            raise ValueError(f"Unknown config keys for {self.name}: {sorted(unknown)}.")
        return self.network(**cfg, **self.network_kwargs)

    def card_config(self, config: dict[str, Any]) -> dict[str, Any]:
        """``config`` with the defaults of this network's own keys (beyond CONFIG_KEYS)
        written out, so a card keeps them when the defaults change."""
        own = {k: v for k, v in self.default_config.items() if k not in CONFIG_KEYS}
        return {**own, **config}

    def encode(self, net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, ...)`` image channels in the layout -> what the diffusion runs on:
        a latent model's latents, else ``x`` itself."""
        return net.encode(x) if self.latent else x

    def decode(self, net: nn.Module, z: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`encode`."""
        return net.decode(z) if self.latent else z

    def is_conditional(self, in_channels: int) -> bool:
        """True when the network takes conditioning channels after x_t."""
        return int(in_channels) > self.bands

    def condition_channels(self, cond: torch.Tensor, conditional: bool) -> torch.Tensor | None:
        """The channels after x_t that the network takes, from all conditioning channels
        ``cond`` (with or without a batch axis): all of them for a conditional model; for
        an unconditional one the slice-position channel of a seq-pos model, else none."""
        if conditional:
            return cond
        if not self.slice_position:
            return None
        axis = cond.ndim - 4  # slice layout: (..., C, Z, X, Y)
        return cond.narrow(axis, cond.shape[axis] - 1, 1)

    def channels_for(self, n_conditions: int) -> dict[str, int]:
        """``in_channels``/``out_channels`` of a network with ``n_conditions`` conditioning
        images after x_t (0: unconditional)."""
        return {"in_channels": (1 + n_conditions) * self.bands, "out_channels": self.bands}

    # -- geometry ---------------------------------------------------------------------
    def spatial_divisor(self, config: dict[str, Any]) -> int:
        """Image-space size multiple a crop must be padded to for this network."""
        levels = len(config.get("channels", self.default_config["channels"]))
        return 2 ** (levels - 1) * self.downsample

    def crop_divisor(self, config: dict[str, Any]) -> tuple[int, int, int]:
        """Per-axis size multiple of a crop (slice models: any depth)."""
        d = self.spatial_divisor(config)
        return (d, d, 1) if self.slices else (d, d, d)

    def min_crop(self, config: dict[str, Any], window: int | None) -> tuple[int, int, int]:
        """Smallest crop: one divisor in-plane, and one z-window deep for slice models."""
        d = self.spatial_divisor(config)
        return (d, d, int(window)) if self.slices else (d, d, d)

    # -- layout -----------------------------------------------------------------------
    @property
    def slices(self) -> bool:
        """The network sees windows of axial slices."""
        return self.layout == "slices"

    @property
    def voxelwise(self) -> bool:
        """The network layout is a permutation of image voxels: image-unit clipping and
        RePaint's known mask apply in it directly (not so for wavelet sub-bands)."""
        return self.bands == 1 and self.downsample == 1

    def sample_clip(self, image_clip: tuple[float, float] | None) -> tuple[float, float] | None:
        """The range of the sampler's x0 estimate in the network's space: the image's
        (``image_clip``) where the layout is voxelwise, +-LATENT_CLIP for unit-variance
        latents, none for sub-band coefficients (no image values)."""
        if self.latent:
            return (-LATENT_CLIP, LATENT_CLIP)
        return image_clip if self.voxelwise else None

    def to_network(self, channels: torch.Tensor) -> torch.Tensor:
        """``(C, X, Y, Z)`` image channels -> the network's layout (no batch axis)."""
        if self.slices:
            return channels.movedim(-1, 1).contiguous()
        if self.layout == "volume":
            return channels
        return dwt3d(channels[None])[0]

    def from_network(self, out: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        """``(N, C, ...)`` network output -> ``(N, C', X, Y, Z)`` image channels."""
        if self.slices:
            return out.movedim(2, -1)
        if self.layout == "volume":
            return out
        return idwt3d(out, shape)


SPECS: dict[str, ArchitectureSpec] = {
    spec.name: spec
    for spec in (
        ArchitectureSpec(
            "pseudo3d",
            Pseudo3DUNet,
            {"in_channels": 3, "out_channels": 1, "channels": [16, 32, 64],
             "num_res_blocks": 1, "norm_num_groups": 8},
            network_kwargs={"z_conv": True},
        ),
        ArchitectureSpec(
            "slicewise",
            Pseudo3DUNet,
            {"in_channels": 3, "out_channels": 1, "channels": [16, 32, 64],
             "num_res_blocks": 1, "norm_num_groups": 8},
            network_kwargs={"z_conv": False},
        ),
        # DDPM 2D seq-pos (Durrer et al. 2025): the slice-wise model with each slice's
        # position in its volume (z of the slice centre over the volume's extent, 0..1,
        # so grids of any voxel size agree) embedded and added to the time embedding.
        # The paper also conditions each slice on the one sampled before it; that needs
        # slice-by-slice sampling, which the windows of slices denoised together (the
        # crop pipeline every slice model shares) do not have, so it is left out.
        ArchitectureSpec(
            "seqpos",
            SlicePositionUNet,
            {"in_channels": 3, "out_channels": 1, "channels": [16, 32, 64],
             "num_res_blocks": 1, "norm_num_groups": 8},
            slice_position=True,
        ),
        ArchitectureSpec(
            "wdm3d",
            WaveletUNet,
            {"in_channels": 24, "out_channels": 8, "channels": [16, 32, 64],
             "num_res_blocks": 1, "norm_num_groups": 8},
            bands=8,
            downsample=2,
            layout="wavelet",
            patch_size=(32, 32, 32),
            window=None,
            window_overlap=None,
        ),
        # DDPM 3D mem-eff (Durrer et al. 2025, after Bieder et al.'s memory-efficient 3D
        # DDPM): 3D convolutions in image space, memory-efficient in two ways. Patch-wise:
        # it trains on 32^3 patches and fills one crop per lesion cluster (its context
        # margin included), never the whole scan, so memory grows with the crop, not the
        # volume, and the patch-coordinate channels Bieder et al. need to sample a whole
        # volume from patches are not needed. Reduced channels and no attention: 16-32-64
        # channels (the 2D models of the paper have 128 base channels) and no
        # self-attention over voxels, which is quadratic in a crop's voxels (hence
        # Volume3DUNet, not MONAI's DiffusionModelUNet, whose bottleneck always attends).
        ArchitectureSpec(
            "ddpm3d",
            Volume3DUNet,
            {"in_channels": 3, "out_channels": 1, "channels": [16, 32, 64],
             "num_res_blocks": 1, "norm_num_groups": 8},
            layout="volume",
            patch_size=(32, 32, 32),
            window=None,
            window_overlap=None,
        ),
        # LDM 3D (Durrer et al. 2025, after Khader et al.): MONAI's AutoencoderKL encodes
        # each image channel (x0, the voided image b, the mask m, extras) on its own to 4
        # channels at 1/4 resolution, as the paper encodes x, b and m with one
        # autoencoder, and a 3D U-Net denoises the stacked latents. Two-stage training
        # (autoencoder, then diffusion on its frozen latents); one file holds both.
        ArchitectureSpec(
            "ldm3d",
            LatentDiffusion,
            {"in_channels": 3 * LATENT_CHANNELS, "out_channels": LATENT_CHANNELS,
             "channels": [16, 32, 64], "num_res_blocks": 1, "norm_num_groups": 8,
             "autoencoder": dict(AUTOENCODER_DEFAULTS)},
            bands=LATENT_CHANNELS,
            downsample=LATENT_FACTOR,
            layout="volume",
            patch_size=(32, 32, 32),
            window=None,
            window_overlap=None,
            config_keys=(*CONFIG_KEYS, "autoencoder"),
            latent=True,
            stages=("autoencoder", "diffusion"),
        ),
        # 2D unconditional model of histology sections (bidsfill.microscopy, issue 18);
        # its layout methods are not used: images are (N, 1, H, W) as they are.
        ArchitectureSpec(
            "histology2d",
            Image2DUNet,
            {"in_channels": 1, "out_channels": 1, "channels": [32, 64, 64, 64],
             "num_res_blocks": 1, "norm_num_groups": 16},
            layout="volume",
            patch_size=(64, 64, 1),
            window=None,
            window_overlap=None,
            image_dims=2,
        ),
    )
}  # fmt: skip

#: The MRI volume architectures (each is also a fill method of the app).
ARCHITECTURES = tuple(n for n, s in SPECS.items() if s.image_dims == 3)

#: Architectures of 2D image models (histology sections).
IMAGE_2D_ARCHITECTURES = tuple(n for n, s in SPECS.items() if s.image_dims == 2)

#: Default configs; small enough to fill a demo subject on 2 CPU cores in about a minute.
DEFAULT_CONFIGS: dict[str, dict[str, Any]] = {n: SPECS[n].default_config for n in ARCHITECTURES}


def get_architecture(arch: str | ArchitectureSpec) -> ArchitectureSpec:
    """The spec of a model card's architecture name."""
    if isinstance(arch, ArchitectureSpec):
        return arch
    try:
        return SPECS[arch]
    except KeyError:
        raise ValueError(f"Unknown architecture {arch!r}; choose one of {ARCHITECTURES}.") from None


def build_network(arch: str, **config: Any) -> nn.Module:
    """Build a network from its model-card architecture name and config."""
    return get_architecture(arch).build(**config)


def spatial_divisor(arch: str, config: dict[str, Any]) -> int:
    """Image-space size multiple a crop must be padded to for this network."""
    return get_architecture(arch).spatial_divisor(config)
