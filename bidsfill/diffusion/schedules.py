"""Noise schedules: the forward process q(x_t | x_0) and the parameterisations.

A schedule holds no weights and does tensor arithmetic only, so training
(:meth:`NoiseSchedule.add_noise`, :meth:`NoiseSchedule.training_target`) and every
sampler share one definition of alpha-bar and of what the network predicts.
"""

from __future__ import annotations

import math

import torch

__all__ = ["BETA_SCHEDULES", "PREDICTION_TYPES", "NoiseSchedule"]

BETA_SCHEDULES = ("linear", "cosine")
PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")


def _betas(kind: str, num_steps: int, beta_start: float, beta_end: float) -> torch.Tensor:
    if kind == "linear":
        # Ho et al. 2020; scaled so other T keep the same total noise as T = 1000.
        scale = 1000.0 / num_steps
        return torch.linspace(beta_start * scale, beta_end * scale, num_steps, dtype=torch.float64)
    # Nichol & Dhariwal 2021 cosine schedule with s = 0.008.
    steps = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
    abar = torch.cos((steps + 0.008) / 1.008 * math.pi / 2) ** 2
    return torch.clamp(1 - abar[1:] / abar[:-1], max=0.999)


class NoiseSchedule:
    """Discrete DDPM noise schedule with epsilon, x0 ("sample") or v prediction.

    Args:
        num_train_timesteps: T, the number of training timesteps.
        beta_schedule: "linear" or "cosine".
        prediction_type: what the network outputs: "epsilon", "sample" (x0) or
            "v_prediction".
        beta_start: first beta of the linear schedule (at T = 1000).
        beta_end: last beta of the linear schedule (at T = 1000).
    """

    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_schedule: str = "linear",
        prediction_type: str = "epsilon",
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
    ) -> None:
        if num_train_timesteps < 1:
            raise ValueError(f"num_train_timesteps must be >= 1, got {num_train_timesteps}.")
        if beta_schedule not in BETA_SCHEDULES:
            raise ValueError(
                f"beta_schedule must be one of {BETA_SCHEDULES}, got {beta_schedule!r}."
            )
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(
                f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}."
            )
        self.num_train_timesteps = int(num_train_timesteps)
        self.beta_schedule = beta_schedule
        self.prediction_type = prediction_type
        self.beta_start = float(beta_start)
        self.beta_end = float(beta_end)
        self.betas = _betas(beta_schedule, self.num_train_timesteps, beta_start, beta_end)
        self.alphas = 1.0 - self.betas
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)

    # -- serialisation (model card "schedule") -------------------------------------------
    def to_dict(self) -> dict:
        """JSON-serialisable parameters, stored in the model card."""
        return {
            "num_train_timesteps": self.num_train_timesteps,
            "beta_schedule": self.beta_schedule,
            "prediction_type": self.prediction_type,
            "beta_start": self.beta_start,
            "beta_end": self.beta_end,
        }

    @classmethod
    def from_dict(cls, data: dict) -> NoiseSchedule:
        return cls(**data)

    # -- helpers -------------------------------------------------------------------------
    def alpha_bar(self, t: torch.Tensor | int, like: torch.Tensor) -> torch.Tensor:
        """alpha-bar_t broadcast to ``like`` (t = -1 means alpha-bar = 1, i.e. clean data)."""
        t = torch.as_tensor(t, dtype=torch.long).reshape(-1).cpu()
        abar = torch.where(
            t >= 0, self.alphas_cumprod[t.clamp(min=0)], torch.ones((), dtype=torch.float64)
        )
        abar = abar.to(device=like.device, dtype=like.dtype)
        return abar.reshape(-1, *([1] * (like.ndim - 1)))

    # -- forward process and training ----------------------------------------------------
    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps."""
        abar = self.alpha_bar(t, x0)
        return abar.sqrt() * x0 + (1 - abar).sqrt() * noise

    def training_target(
        self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor
    ) -> torch.Tensor:
        """What the network should output for (x_0, eps, t) under ``prediction_type``."""
        if self.prediction_type == "epsilon":
            return noise
        if self.prediction_type == "sample":
            return x0
        abar = self.alpha_bar(t, x0)
        return abar.sqrt() * noise - (1 - abar).sqrt() * x0

    # -- inverting the parameterisation --------------------------------------------------
    def predict_x0(
        self, model_output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor | int
    ) -> torch.Tensor:
        """x_0 implied by the network output at x_t."""
        if self.prediction_type == "sample":
            return model_output
        abar = self.alpha_bar(t, x_t)
        if self.prediction_type == "epsilon":
            return (x_t - (1 - abar).sqrt() * model_output) / abar.sqrt()
        return abar.sqrt() * x_t - (1 - abar).sqrt() * model_output

    def predict_eps(
        self, model_output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor | int
    ) -> torch.Tensor:
        """eps implied by the network output at x_t."""
        if self.prediction_type == "epsilon":
            return model_output
        abar = self.alpha_bar(t, x_t)
        if self.prediction_type == "sample":
            return (x_t - abar.sqrt() * model_output) / (1 - abar).sqrt()
        return (1 - abar).sqrt() * x_t + abar.sqrt() * model_output

    def eps_from_x0(
        self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor | int
    ) -> torch.Tensor:
        """eps consistent with a (possibly clipped) x_0 estimate."""
        abar = self.alpha_bar(t, x_t)
        return (x_t - abar.sqrt() * x0) / (1 - abar).sqrt()

    def posterior(
        self, x0: torch.Tensor, x_t: torch.Tensor, t: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of q(x_{t-1} | x_t, x_0) (Ho et al. 2020, eq. 7)."""
        abar_t = self.alphas_cumprod[t]
        abar_prev = self.alphas_cumprod[t - 1] if t > 0 else torch.ones((), dtype=torch.float64)
        beta_t = self.betas[t]
        coef_x0 = float(beta_t * abar_prev.sqrt() / (1 - abar_t))
        coef_xt = float((1 - abar_prev) * self.alphas[t].sqrt() / (1 - abar_t))
        var = float(beta_t * (1 - abar_prev) / (1 - abar_t))
        mean = coef_x0 * x0 + coef_xt * x_t
        return mean, torch.full((), var, dtype=x_t.dtype, device=x_t.device)
