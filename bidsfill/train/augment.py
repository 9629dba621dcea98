"""Data augmentation of training regions with MONAI transforms.

Healthy training scans are few (templates and a couple of real subjects), so every
region is deformed (affine + elastic, which also varies the apparent voxel size),
flipped, and given a different bias field, gamma, scale and noise. The intensity
changes also teach the model the robustness that the known-tissue normalisation
(:func:`bidsfill.diffusion.intensity.fit_intensity_map`: fitted on the unmasked tissue
around each lesion, not on the whole volume) relies on. Image and lesion mask share the
spatial transform; the mask is resampled nearest-neighbour and never touched by
intensity transforms. With ``p_lowres`` a region is also given a coarser acquisition and
brought back to 1 mm, as the fill brings a 1.6 or 2 mm scan's crop to the model's grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from monai.transforms import (
    Compose,
    Rand3DElasticd,
    RandAdjustContrastd,
    RandAffined,
    RandBiasFieldd,
    RandFlipd,
    RandGaussianNoised,
    RandScaleIntensityd,
)
from scipy import ndimage

__all__ = ["AugmentConfig", "Augmenter"]


@dataclass(frozen=True)
class AugmentConfig:
    """Strength of each augmentation (probabilities and ranges), recorded in the card.

    Args:
        p_spatial: probability of the affine deformation.
        p_elastic: probability of the (slower) elastic deformation.
        rotate_deg: maximum rotation about each axis, in degrees.
        scale: maximum relative zoom (both ways), which also mimics other voxel sizes.
        elastic_sigma: smoothing of the elastic displacement field, in voxels.
        elastic_magnitude: displacement magnitude range, in voxels.
        p_flip: probability of a left-right flip.
        p_bias: probability of a bias field.
        bias_coeff: bias-field polynomial coefficient range.
        p_gamma: probability of a gamma change.
        gamma: gamma range.
        p_scale: probability of an intensity scaling.
        scale_intensity: relative intensity scaling.
        p_noise: probability of Gaussian noise.
        noise_std: noise standard deviation relative to the region's 99th percentile.
        p_lowres: probability of a coarser acquisition (SynthSeg's resolution
            randomisation, Billot et al. 2023): the default's training scans are mostly
            near 1 mm, while users' scans (and two of the held-out ones) are often 1.6-2
            mm, whose crops reach the model linearly upsampled.
        lowres_mm: range of the simulated voxel size, drawn per axis, in mm.
    """

    p_spatial: float = 0.8
    p_elastic: float = 0.2
    rotate_deg: float = 12.0
    scale: float = 0.2
    elastic_sigma: tuple[float, float] = (6.0, 9.0)
    elastic_magnitude: tuple[float, float] = (0.0, 60.0)
    p_flip: float = 0.5
    p_bias: float = 0.5
    bias_coeff: tuple[float, float] = (0.0, 0.3)
    p_gamma: float = 0.5
    gamma: tuple[float, float] = (0.7, 1.5)
    p_scale: float = 0.5
    scale_intensity: float = 0.3
    p_noise: float = 0.5
    noise_std: float = 0.04
    p_lowres: float = 0.0
    lowres_mm: tuple[float, float] = (1.0, 2.2)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


class Augmenter:
    """Seeded augmentation of (image, mask, extras) regions of shape ``(X, Y, Z)``.

    The transforms are built once; each call reseeds them from ``seed``, so a region's
    augmentation depends only on its seed (resumed training sees the same data).

    Args:
        config: augmentation strengths; ``None`` disables augmentation.
    """

    def __init__(self, config: AugmentConfig | None = AugmentConfig()) -> None:
        self.config = config
        if config is None:
            self.spatial = self.intensity = None
            return
        rot = np.deg2rad(config.rotate_deg)
        self.spatial = Compose(
            [
                RandAffined(
                    keys=["image", "mask"],
                    prob=config.p_spatial,
                    rotate_range=(rot, rot, rot),
                    scale_range=(config.scale,) * 3,
                    mode=("bilinear", "nearest"),
                    padding_mode="zeros",
                ),
                Rand3DElasticd(
                    keys=["image", "mask"],
                    sigma_range=config.elastic_sigma,
                    magnitude_range=config.elastic_magnitude,
                    prob=config.p_elastic,
                    mode=("bilinear", "nearest"),
                    padding_mode="zeros",
                ),
                RandFlipd(keys=["image", "mask"], prob=config.p_flip, spatial_axis=0),
            ]
        )
        self.intensity = Compose(
            [
                RandBiasFieldd(keys=["image"], coeff_range=config.bias_coeff, prob=config.p_bias),
                RandAdjustContrastd(keys=["image"], gamma=config.gamma, prob=config.p_gamma),
                RandScaleIntensityd(
                    keys=["image"], factors=config.scale_intensity, prob=config.p_scale
                ),
            ]
        )
        self.noise = RandGaussianNoised(keys=["image"], prob=config.p_noise, std=1.0)

    def __call__(
        self,
        image: np.ndarray,
        mask: np.ndarray,
        extras: list[np.ndarray] | None = None,
        *,
        seed: int,
        like_image: Sequence[int] = (),
        masks: list[np.ndarray] | None = None,
    ) -> tuple:
        """Augment one region.

        Args:
            image: T1w region in scanner units, ``(X, Y, Z)``.
            mask: lesion mask of the region.
            extras: further images on the same grid (FLAIR); they follow the spatial
                transform and get their own intensity changes.
            seed: the region's seed.
            like_image: indices of ``extras`` that are the T1w itself (its mirror): they
                get the image's bias, gamma and scaling (their own noise), so they stay
                in the image's units as the fill's mirror is.
            masks: further masks that follow the spatial transform and the coarser
                acquisition as ``mask`` does (nearest neighbour).

        Returns:
            The augmented image (float32, >= 0), mask (bool) and extras; and the further
            masks (bool) when ``masks`` is given.
        """
        extras = list(extras or [])
        more = [np.asarray(m, dtype=bool) for m in masks] if masks is not None else None
        if self.config is None:
            out = image.astype(np.float32), mask.astype(bool), extras
            return out if more is None else (*out, more)
        # 1. one spatial transform for all channels: stack the images, the masks apart
        stack = np.stack([image, *extras]).astype(np.float32)
        data = {
            "image": torch.from_numpy(stack),
            "mask": torch.from_numpy(np.stack([mask, *(more or [])]).astype(np.float32)),
        }
        self.spatial.set_random_state(seed=seed % (2**32))
        data = self.spatial(data)
        stack = np.asarray(data["image"], dtype=np.float32)
        all_masks = np.asarray(data["mask"]) > 0.5
        out_mask, more = all_masks[0], list(all_masks[1:])
        # 2. intensity changes per channel; gamma needs non-negative values
        rng = np.random.default_rng([seed, 1])
        channels = []
        for i, chan in enumerate(stack):
            chan = np.clip(chan, 0, None)
            key = 0 if i - 1 in like_image else i
            self.intensity.set_random_state(seed=(seed + 7919 * (key + 1)) % (2**32))
            chan = np.asarray(self.intensity({"image": chan[None]})["image"])[0]
            # 3. noise relative to the region's bright tissue, only where there is signal
            level = float(np.percentile(chan, 99)) if chan.any() else 1.0
            self.noise.set_random_state(seed=(seed + 104729 * (i + 1)) % (2**32))
            noisy = np.asarray(self.noise({"image": chan[None]})["image"])[0]
            std = rng.uniform(0, self.config.noise_std) * level
            chan = chan + (noisy - chan) * std * (chan > 0)
            channels.append(np.clip(chan, 0, None).astype(np.float32))
        if rng.random() < self.config.p_lowres:
            mm = rng.uniform(*self.config.lowres_mm, size=3)
            channels = [coarse_acquisition(c, mm) for c in channels]
            coarse_mask = coarse_acquisition(out_mask, mm, order=0) > 0.5
            if coarse_mask.sum() >= 2:
                out_mask = coarse_mask
                more = [coarse_acquisition(m, mm, order=0) > 0.5 for m in more]
        out = channels[0], out_mask, channels[1:]
        return out if masks is None else (*out, more)


def coarse_acquisition(region: np.ndarray, mm: np.ndarray, order: int = 1) -> np.ndarray:
    """``region`` (1 mm voxels) as a scan of ``mm`` voxels brought back to 1 mm the way the
    fill brings a crop to the model's grid (:func:`bidsfill.io.resample.resample_box`).

    Images (``order`` 1) are blurred first to the coarser voxel's point spread (a Gaussian
    of FWHM ``mm``, less the 1 mm already there); masks (``order`` 0) go nearest-neighbour
    both ways, so they come back blocky as a coarse scan's mask does.
    """
    from bidsfill.io.resample import resample_box

    data = np.asarray(region, dtype=np.float32)
    if order:
        sigma = np.sqrt(np.maximum(np.asarray(mm, float) ** 2 - 1.0, 0.0)) / 2.3548
        data = ndimage.gaussian_filter(data, sigma, mode="nearest")
    shape = tuple(max(2, int(round(n / m))) for n, m in zip(data.shape, mm, strict=True))
    return resample_box(resample_box(data, shape, order), data.shape, order)
