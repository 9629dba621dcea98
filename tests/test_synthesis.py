"""Missing-contrast synthesis (issue 15 part 3): normalisation, regression baseline, and
a tiny cWDM that trains, exports, reloads and synthesises a whole volume (real torch)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

from bidsfill.synthesis.model import SynthesisCard, load_synthesis_model, save_synthesis_model
from bidsfill.synthesis.normalise import IntensityRange, denormalise, normalise, reference_range
from bidsfill.synthesis.regression import LinearBaseline
from bidsfill.synthesis.sample import crop_starts, synthesize_files, synthesize_normalised
from bidsfill.synthesis.scores import synthesis_scores
from bidsfill.synthesis.training import SynthesisSubject, train_synthesis


def test_normalisation_round_trip():
    rng = np.random.default_rng(0)
    image = rng.gamma(2.0, 100.0, (20, 22, 18)).astype(np.float32)
    norm, r = normalise(image)
    assert norm.min() == 0.0 and norm.max() == 1.0
    assert r.lo == pytest.approx(np.percentile(image.astype(np.float64), 0.1))
    assert r.hi == pytest.approx(np.percentile(image.astype(np.float64), 99.9))
    back = denormalise(norm, r)
    np.testing.assert_allclose(back, np.clip(image, r.lo, r.hi), rtol=1e-5, atol=1e-3)
    ref = reference_range([IntensityRange(0, 10), IntensityRange(2, 30), IntensityRange(1, 20)])
    assert (ref.lo, ref.hi) == (1.0, 20.0)
    with pytest.raises(ValueError, match="constant"):
        normalise(np.ones((4, 4, 4)))


def test_regression_baseline_recovers_a_linear_relation():
    rng = np.random.default_rng(1)
    subjects = [[rng.random((16, 16, 16)), rng.random((16, 16, 16))] for _ in range(3)]
    targets = [0.2 + 0.5 * a - 0.1 * b for a, b in subjects]
    masks = [np.ones((16, 16, 16), bool)] * 3
    fit = LinearBaseline.fit(subjects, targets, masks, max_voxels=5000)
    assert fit.intercept == pytest.approx(0.2, abs=1e-9)
    assert fit.coefficients == pytest.approx((0.5, -0.1), abs=1e-9)
    new = [rng.random((8, 8, 8)), rng.random((8, 8, 8))]
    np.testing.assert_allclose(fit.predict(new), 0.2 + 0.5 * new[0] - 0.1 * new[1], atol=1e-6)
    scores = synthesis_scores(fit.predict(new), 0.2 + 0.5 * new[0] - 0.1 * new[1],
                              np.ones((8, 8, 8), bool))  # fmt: skip
    assert scores["mse"] < 1e-10 and scores["ssim"] > 0.999


def test_crop_starts_cover_the_volume():
    for size, crop in [(40, 16), (48, 48), (44, 24)]:
        starts = crop_starts(size, crop, 8, 4)
        covered = np.zeros(size, bool)
        for s in starts:
            assert s % 4 == 0
            covered[s : s + crop] = True
        assert covered.all() and starts[-1] + crop <= max(size, crop)


def _phantom(seed: int, shape=(24, 24, 24)) -> SynthesisSubject:
    """Two 'sources' and a 'target' that is a fixed non-linear mix of them."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*(np.linspace(-1, 1, s) for s in shape), indexing="ij"))
    r = np.sqrt((grid**2).sum(0))
    brain = r < 0.9
    a = np.where(brain, 0.5 + 0.3 * np.sin(3 * grid[0] + seed) , 0).astype(np.float32)
    b = np.where(brain, 0.4 + 0.3 * np.cos(2 * grid[1] - seed), 0).astype(np.float32)
    a += 0.01 * rng.random(shape).astype(np.float32) * brain
    t = np.where(brain, np.clip(0.8 * a - 0.3 * b + 0.3, 0, 1), 0).astype(np.float32)
    return SynthesisSubject(f"sub-{seed}", np.stack([a, b]), t, brain, np.eye(4),
                            IntensityRange(0.0, 500.0), {})  # fmt: skip


def _fixed_loss(model, card, subject) -> float:
    from bidsfill.diffusion.wavelets import dwt3d

    gen = torch.Generator().manual_seed(0)
    stack = torch.from_numpy(np.concatenate([subject.target[None], subject.sources]))[None]
    sub = dwt3d(stack.float())
    x0, cond = sub[:, :8], sub[:, 8:]
    losses = []
    with torch.no_grad():
        for t in (50, 300, 600, 900):
            noise = torch.randn(x0.shape, generator=gen)
            tt = torch.tensor([t])
            pred = model(torch.cat([card.schedule.add_noise(x0, noise, tt), cond], 1), tt)
            losses.append(float(torch.mean((pred - x0) ** 2)))
    return float(np.mean(losses))


def test_tiny_cwdm_trains_exports_reloads_and_synthesises(tmp_path):
    torch.manual_seed(0)
    subjects = [_phantom(1), _phantom(2)]
    card = SynthesisCard.new("FLAIR", ["T1w", "T2w"], channels=(8, 16), norm_num_groups=4,
                             target_range=IntensityRange(0.0, 500.0), steps=3,
                             crop=(16, 16, 16), overlap=8)  # fmt: skip
    assert card.config["in_channels"] == 24 and card.config["out_channels"] == 8
    before = _fixed_loss(card.build().eval(), card, subjects[0])
    torch.manual_seed(0)
    result = train_synthesis(subjects, card, steps=60, patch=(16, 16, 16), lr=2e-3,
                             ema_decay=0.0, run_dir=tmp_path / "run", checkpoint_every=30)  # fmt: skip
    after = _fixed_loss(result.model, card, subjects[0])
    assert after < 0.7 * before, (before, after)
    assert (tmp_path / "run" / "latest.pt").is_file()

    path = save_synthesis_model(result.model, card, tmp_path / "cwdm-flair")
    model, loaded = load_synthesis_model(path)
    assert loaded.sources == ("T1w", "T2w") and loaded.sha256 and loaded.name == "cwdm-flair"
    y = synthesize_normalised(model, loaded, list(subjects[0].sources), seed=3)
    assert y.shape == subjects[0].target.shape and 0 <= y.min() and y.max() <= 1

    affine = np.diag([1.2, 1.0, 0.9, 1.0])
    affine[:3, 3] = (-10, 5, 3)
    files = {}
    for i, c in enumerate(("T1w", "T2w")):
        files[c] = tmp_path / f"{c}.nii.gz"
        odd = subjects[0].sources[i][:23, :22, :21] * 400  # odd shape: padding is cropped
        nib.save(nib.Nifti1Image(odd, affine), files[c])
    out = tmp_path / "synthetic_FLAIR.nii.gz"
    synthesize_files(path, files, out, steps=2)
    img = nib.load(out)
    assert img.shape == (23, 22, 21)
    np.testing.assert_allclose(img.affine, affine)
    data = img.get_fdata()
    assert np.isfinite(data).all() and 0 <= data.min() and data.max() <= 500.0 + 1e-3

    st = path.read_bytes()
    path.write_bytes(st[:-1] + bytes([st[-1] ^ 1]))
    with pytest.raises(ValueError, match="sha256"):
        load_synthesis_model(path)


def test_short_run_ema_moves_off_the_random_initialisation():
    """With a long decay (0.999) and a few dozen steps, the exported EMA must follow the
    trained weights (the ramp), not stay at the random start: 0.999 ** 40 = 0.96."""
    torch.manual_seed(0)
    subjects = [_phantom(1)]
    card = SynthesisCard.new("FLAIR", ["T1w", "T2w"], channels=(8, 16), norm_num_groups=4,
                             target_range=IntensityRange(0.0, 500.0), steps=3,
                             crop=(16, 16, 16), overlap=8)  # fmt: skip
    torch.manual_seed(0)
    init = [p.detach().clone() for p in card.build().parameters()]
    torch.manual_seed(0)
    result = train_synthesis(subjects, card, steps=40, patch=(16, 16, 16), lr=2e-3,
                             ema_decay=0.999, checkpoint_every=0)  # fmt: skip
    moved = sum(float((p.detach() - q).abs().sum()) for p, q in zip(result.model.parameters(), init, strict=True))
    total = sum(float(q.abs().sum()) for q in init)
    assert moved > 0.05 * total, (moved, total)
