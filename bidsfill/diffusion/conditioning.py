"""The conditioning channels: what the network sees beside the noisy image, and its layout.

Conditioning channels are the voided image ``x (1 - m)``, the mask ``m`` and the extras
named in the card ("mirror": the left-right mirrored T1w; "prefill": a classical fill
of the mask; other contrasts such as "flair"), stacked and put in the architecture's
layout (:mod:`bidsfill.diffusion.architectures`).
"""

from __future__ import annotations

import numpy as np
import torch

from bidsfill.diffusion.architectures import ArchitectureSpec, get_architecture

__all__ = ["build_condition", "extra_channels", "hide_reflected_mask", "mirror_lr", "to_network"]


def build_condition(
    x_norm: np.ndarray | torch.Tensor,
    mask: np.ndarray | torch.Tensor,
    extras: tuple[np.ndarray | torch.Tensor, ...] | list = (),
) -> torch.Tensor:
    """Conditioning channels ``(2 + len(extras), *spatial)``: voided image b = x (1 - m), m, extras."""
    x = torch.as_tensor(np.asarray(x_norm, dtype=np.float32))
    m = torch.as_tensor(np.asarray(mask, dtype=np.float32))
    chans = [x * (1 - m), m] + [torch.as_tensor(np.asarray(e, dtype=np.float32)) for e in extras]
    return torch.stack(chans, dim=0)


def mirror_lr(volume: np.ndarray) -> np.ndarray:
    """Left-right mirrored volume (axis 0) about the array's centre.

    The contralateral context of Santorum et al. only for an image centred in MNI space;
    the app and training pass the image reflected about each scan's estimated
    mid-sagittal plane instead (``extra_images["mirror"]``, from
    :func:`bidsfill.segment.midline.contralateral_image`), and this is the fallback when
    no affine is known.
    """
    return np.ascontiguousarray(np.asarray(volume)[::-1])


def hide_reflected_mask(
    mirror: np.ndarray, prefill: np.ndarray, reflected_mask: np.ndarray
) -> np.ndarray:
    """The "mirror" channel with the prefill where the contralateral point is in the mask.

    There the plain mirror shows what the mask hides (the truth in training, the lesion
    in a patient), one reflection away from where the network fills: it would learn to
    copy it across the midline. Training and the fill both build the channel here."""
    return np.where(reflected_mask, prefill, mirror).astype(np.float32)


def extra_channels(
    image: np.ndarray,
    names: list[str] | tuple[str, ...],
    extra_images: dict[str, np.ndarray] | None = None,
) -> list[np.ndarray]:
    """Full-volume extra conditioning images, in scanner units, in card order."""
    out = []
    for name in names:
        if extra_images and name in extra_images:
            out.append(np.asarray(extra_images[name], dtype=np.float32))
        elif name == "mirror":  # no estimated plane given: the array's own centre
            out.append(mirror_lr(image))
        else:
            raise ValueError(f"The model needs a {name!r} image as extra conditioning.")
    return out


def to_network(
    arch: str | ArchitectureSpec,
    image_norm: np.ndarray,
    mask: np.ndarray,
    extras_norm: list[np.ndarray],
    positions: np.ndarray | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x0, condition) of a normalised crop in the network's layout (no batch axis).

    ``positions`` (one per z slice, seq-pos models) becomes a last condition channel,
    constant over each slice.
    """
    spec = get_architecture(arch)
    x = torch.as_tensor(np.asarray(image_norm, np.float32))[None]
    cond = build_condition(image_norm, mask, extras_norm)
    if positions is not None:
        plane = np.broadcast_to(np.asarray(positions, np.float32), np.shape(image_norm))
        cond = torch.cat([cond, torch.as_tensor(np.ascontiguousarray(plane))[None]])
    return spec.to_network(x), spec.to_network(cond)
