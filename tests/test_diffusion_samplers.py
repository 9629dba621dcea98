"""Schedules and samplers: parameterisations, DDIM vs DDPM, recovery of a toy
distribution by a tiny model trained here, RePaint consistency, seed determinism."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bidsfill.diffusion.samplers import (
    ddim_step,
    ddim_timesteps,
    ddpm_step,
    repaint_jumps,
    sample,
    sample_repaint,
)
from bidsfill.diffusion.schedules import NoiseSchedule


@pytest.mark.parametrize("prediction", ["epsilon", "sample", "v_prediction"])
@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_parameterisations_invert(prediction, kind):
    sched = NoiseSchedule(200, kind, prediction)
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    t = torch.tensor([0, 50, 120, 190])
    x_t = sched.add_noise(x0, noise, t)
    target = sched.training_target(x0, noise, t)
    assert torch.allclose(sched.predict_x0(target, x_t, t), x0, atol=1e-4)
    assert torch.allclose(sched.predict_eps(target, x_t, t), noise, atol=1e-4)
    assert NoiseSchedule.from_dict(sched.to_dict()).to_dict() == sched.to_dict()


def test_ddim_with_k_equal_t_matches_ddpm_posterior():
    sched = NoiseSchedule(50, "cosine", "epsilon")
    assert ddim_timesteps(50, 50) == list(range(49, -1, -1))
    assert ddim_timesteps(50, 1) == [49]  # one step starts from pure noise
    g = torch.Generator().manual_seed(1)
    x_t, out, z = (torch.randn(2, 5, generator=g) for _ in range(3))
    for t in (49, 20, 1):
        x0 = sched.predict_x0(out, x_t, t)
        mean, var = sched.posterior(x0, x_t, t)
        # eta = 1 with consecutive timesteps: the DDPM posterior mean and variance.
        ddim = ddim_step(sched, out, t, t - 1, x_t, eta=1.0, noise=z).prev_sample
        ddpm = ddpm_step(sched, out, t, x_t, noise=z).prev_sample
        assert torch.allclose(ddim, mean + var.sqrt() * z, atol=1e-5)
        assert torch.allclose(ddim, ddpm, atol=1e-5)
        assert torch.allclose(
            ddim_step(sched, out, t, t - 1, x_t, eta=1.0, noise=0 * z).prev_sample, mean, atol=1e-5
        )


def test_repaint_walk():
    walk = repaint_jumps(10, 3, 2)
    assert walk[0] == 10 and walk[-1] == 0
    assert all(abs(a - b) == 1 for a, b in zip(walk, walk[1:], strict=False))
    assert sum(b < a for a, b in zip(walk, walk[1:], strict=False)) == 10 + 3 * 3
    assert repaint_jumps(4, 2, 1) == [4, 3, 2, 1, 0]


class _AffineEps(nn.Module):
    """eps(x, t) = A_t x + b_t: the exact form of the optimal eps for Gaussian data."""

    def __init__(self, T: int, dim: int) -> None:
        super().__init__()
        self.A = nn.Parameter(torch.zeros(T, dim, dim))
        self.b = nn.Parameter(torch.zeros(T, dim))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.einsum("nij,nj->ni", self.A[t], x) + self.b[t]


# Toy data: x1 ~ N(0.5, 0.3^2), x2 = x1 + N(0, 0.05^2) (strongly correlated pair).
def _toy(n: int, g: torch.Generator) -> torch.Tensor:
    x1 = 0.5 + 0.3 * torch.randn(n, generator=g)
    return torch.stack([x1, x1 + 0.05 * torch.randn(n, generator=g)], dim=1)


@pytest.fixture(scope="module")
def toy_model():
    """Train the tiny model on the denoising loss, solved per timestep by least squares
    (the exact minimiser of the same MSE that SGD would approach, in under a second)."""
    T, n = 1000, 1000
    sched = NoiseSchedule(T, "cosine", "epsilon")
    g = torch.Generator().manual_seed(0)
    x0 = _toy(T * n, g)
    noise = torch.randn(x0.shape, generator=g)
    x_t = sched.add_noise(x0, noise, torch.arange(T).repeat_interleave(n)).reshape(T, n, 2)
    design = torch.cat([x_t, torch.ones(T, n, 1)], dim=2).double()
    w = torch.linalg.lstsq(design, noise.reshape(T, n, 2).double()).solution.float()
    model = _AffineEps(T, 2)
    with torch.no_grad():
        model.A.copy_(w[:, :2].transpose(1, 2))
        model.b.copy_(w[:, 2])
        # The fit is a trained denoiser: it beats predicting zero by far on fresh data.
        x0v = _toy(4000, g)
        nv = torch.randn(x0v.shape, generator=g)
        tv = torch.randint(0, T, (4000,), generator=g)
        loss = ((model(sched.add_noise(x0v, nv, tv), tv) - nv) ** 2).mean()
    assert loss < 0.5 * (nv**2).mean()
    return model.eval(), sched


@pytest.mark.parametrize(
    ("sampler", "steps", "eta"),
    [
        pytest.param("ddpm", None, 1.0, marks=pytest.mark.slow),
        pytest.param("ddim", 1000, 0.0, marks=pytest.mark.slow),
        ("ddim", 50, 0.0),
        ("ddim", 50, 1.0),
    ],
)
def test_samplers_recover_toy_distribution(toy_model, sampler, steps, eta):
    model, sched = toy_model
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        x = sample(model, sched, (2000, 2), sampler=sampler, steps=steps, eta=eta, generator=g)
    x = x.sample
    assert x.mean(0).tolist() == pytest.approx([0.5, 0.5], abs=0.03)
    assert x[:, 0].std().item() == pytest.approx(0.3, abs=0.03)
    assert (x[:, 1] - x[:, 0]).std().item() == pytest.approx(0.05, abs=0.025)


def test_repaint_keeps_known_and_samples_the_conditional(toy_model):
    model, sched = toy_model
    n = 2000
    known = torch.zeros(n, 2)
    known[:, 0] = torch.linspace(0.0, 1.0, n)  # x1 known, x2 to inpaint
    known[:, 1] = 99.0  # garbage in the unknown part must not leak
    keep = torch.zeros(n, 2)
    keep[:, 0] = 1
    errors = {}
    for jumps in (1, 3):
        g = torch.Generator().manual_seed(4)
        with torch.no_grad():
            res = sample_repaint(
                model, sched, known, keep, steps=50, generator=g, jump_length=5,
                jump_n_sample=jumps, eta=1.0,
            )  # fmt: skip
        x = res.sample
        assert torch.equal(x[:, 0], known[:, 0])  # the known region is exactly the input
        err = x[:, 1] - x[:, 0]  # x2 | x1 is x1 +- 0.05
        assert err.mean().abs().item() < 0.02
        errors[jumps] = err.std().item()
    # Resampling harmonises the generated part with the known part (RePaint's point).
    assert errors[3] < 0.09
    assert errors[3] < 0.85 * errors[1]


def test_same_seed_same_sample_different_seed_differs(toy_model):
    model, sched = toy_model

    def run(seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            return sample(
                model, sched, (16, 2), sampler="ddim", steps=5, eta=0.5, generator=g
            ).sample

    assert torch.equal(run(7), run(7))
    assert not torch.equal(run(7), run(8))


def test_bad_sampler_arguments():
    sched = NoiseSchedule(10)
    with pytest.raises(ValueError):
        ddim_timesteps(10, 11)
    with pytest.raises(ValueError):
        sample(lambda x, t: x, sched, (1,), sampler="euler", generator=torch.Generator())
    with pytest.raises(ValueError):
        NoiseSchedule(10, "quadratic")
    with pytest.raises(ValueError):
        NoiseSchedule(10, prediction_type="score")
