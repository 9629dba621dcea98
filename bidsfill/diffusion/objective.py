"""The denoising objective shared by training and ``--adapt-steps``: which timesteps a
batch sees and how its error is weighted. In one place so that adapting a model to a
scan optimises exactly what training optimised.
"""

from __future__ import annotations

import torch

__all__ = ["sample_timesteps", "weighted_loss"]


def sample_timesteps(
    n: int, T: int, high_fraction: float, generator: torch.Generator, high_span: float = 0.1
) -> torch.Tensor:
    """Uniform timesteps, a share ``high_fraction`` of them from the noisiest ``high_span``
    of the schedule (10 % by default; 1 % keeps only the timesteps a one-step fill uses,
    where x_t holds no signal and the network learns to ignore its noise)."""
    if not 0 < high_span <= 1:
        raise ValueError(f"high_span must be in (0, 1], got {high_span}.")
    t = torch.randint(0, T, (n,), generator=generator)
    if high_fraction > 0:
        high = torch.randint(T - max(1, round(T * high_span)), T, (n,), generator=generator)
        pick = torch.rand(n, generator=generator) < high_fraction
        t = torch.where(pick, high, t)
    return t


def weighted_loss(
    output: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    outside_weight: float,
    log_eps: float = 0.0,
) -> torch.Tensor:
    """MSE weighted toward the mask: weight 1 inside, ``outside_weight`` outside.

    ``log_eps`` 0 pools every voxel of the batch, so a crop with a large lesion outweighs
    one with a small lesion by its voxel count. ``log_eps`` > 0 takes each crop's own
    weighted MSE and averages ``log(mse + log_eps)`` over the crops: the mean PSNR of the
    crops, which is how the scorecard averages cases (each case's PSNR counts once,
    whatever its lesion volume); ``log_eps`` keeps near-perfect crops from dominating.

    A wavelet model's output has the sub-bands at half resolution while its mask is in
    image space: a coefficient counts as inside when any voxel of its 2x2x2 block is
    (max pooling), for every sub-band.
    """
    if mask.shape[2:] != output.shape[2:]:
        factor = mask.shape[-1] // output.shape[-1]
        mask = torch.nn.functional.max_pool3d(mask.float(), factor)
    w = (mask + outside_weight * (1 - mask)).expand_as(output)
    err = w * (output.float() - target.float()) ** 2
    if log_eps <= 0:
        return err.sum() / w.sum().clamp(min=1e-8)
    per_crop = err.flatten(1).sum(1) / w.flatten(1).sum(1).clamp(min=1e-8)
    return torch.log(per_crop + log_eps).mean()
