"""Training loop: loss goes down, resume is exact, export fills a volume, DDP replicas agree."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from bidsfill.diffusion.card import default_preprocessing
from bidsfill.diffusion.objective import sample_timesteps, weighted_loss
from bidsfill.diffusion.schedules import NoiseSchedule
from bidsfill.train.augment import Augmenter
from bidsfill.train.dataset import InpaintingDataset, TrainVolume
from bidsfill.train.export import export_checkpoint
from bidsfill.train.loop import TrainConfig, lr_factor, train
from bidsfill.train.masks import MaskGenerator

torch.set_num_threads(1)

NETWORK = {
    "in_channels": 3,
    "out_channels": 1,
    "channels": [8, 16],
    "num_res_blocks": 1,
    "norm_num_groups": 4,
}


def _volume(seed: int = 0) -> TrainVolume:
    """A 32^3 'brain': WM core, GM shell, smooth texture, background 0."""
    rng = np.random.default_rng(seed)
    g = np.indices((32, 32, 32)).astype(np.float32) - 15.5
    r = np.sqrt((g**2).sum(0))
    wm = np.clip((10.0 - r) / 2 + 0.5, 0, 1).astype(np.float32)
    brain = r < 14
    from scipy.ndimage import gaussian_filter

    texture = gaussian_filter(rng.standard_normal((32, 32, 32)), 2) * 20
    image = np.where(brain, 60 + 40 * wm + texture, 0).astype(np.float32)
    return TrainVolume("synthetic", image, np.eye(4), (1.0, 1.0, 1.0), wm, brain)


def _preprocessing() -> dict:
    pre = default_preprocessing("pseudo3d")
    pre.update(patch_size=[16, 16, 4], window=4, window_overlap=2, margin=2)
    return pre


def _dataset(seed: int = 0, augment: bool = True) -> InpaintingDataset:
    return InpaintingDataset(
        [_volume()],
        arch="pseudo3d",
        config=NETWORK,
        preprocessing=_preprocessing(),
        masks=MaskGenerator({"random": 1.0}, volume_ml={"random": (0.03, 0.2)}),
        augment=Augmenter() if augment else None,
        region=(24, 24, 8),
        seed=seed,
        mask_bank=6,
    )


def _config(run_dir: Path, **kw) -> TrainConfig:
    base = dict(
        run_dir=str(run_dir),
        arch="pseudo3d",
        network=NETWORK,
        schedule={
            "num_train_timesteps": 100,
            "beta_schedule": "cosine",
            "prediction_type": "sample",
        },
        preprocessing=_preprocessing(),
        steps=6,
        batch_size=2,
        lr=1e-3,
        warmup_steps=2,
        checkpoint_every=3,
        log_every=2,
        device="cpu",
    )
    base.update(kw)
    return TrainConfig(**base)


def _fixed_loss(model: torch.nn.Module, ds: InpaintingDataset, schedule: NoiseSchedule) -> float:
    gen = torch.Generator().manual_seed(123)
    batch = [ds[10_000 + i] for i in range(6)]
    x0 = torch.stack([b["x0"] for b in batch])
    cond = torch.stack([b["condition"] for b in batch])
    mask = torch.stack([b["mask"] for b in batch])
    t = torch.randint(0, schedule.num_train_timesteps, (len(batch),), generator=gen)
    noise = torch.randn(x0.shape, generator=gen)
    with torch.no_grad():
        out = model(torch.cat([schedule.add_noise(x0, noise, t), cond], 1), t)
    return float(weighted_loss(out, schedule.training_target(x0, noise, t), mask, 0.1))


def test_examples_are_deterministic_and_shaped():
    ds = _dataset()
    a, b = ds[5], ds[5]
    assert a["x0"].shape == (1, 4, 16, 16)
    assert a["condition"].shape == (2, 4, 16, 16)
    assert a["mask"].sum() > 0
    for key in a:
        assert torch.equal(a[key], b[key])
    assert not torch.equal(ds[5]["x0"], ds[6]["x0"])


def test_lr_schedule_warms_up_then_decays():
    f = [lr_factor(s, 10, 100, 0.1) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[10:], f[11:], strict=False))
    assert f[-1] == pytest.approx(0.1, abs=1e-3)


def test_log_mse_counts_each_crop_alike_whatever_its_lesion_volume():
    """Pooled MSE weighs a crop by its lesion voxels; the log-MSE loss averages each crop's
    log(MSE + eps), so halving the error of a 1-voxel lesion counts as much as halving
    the error of a 500-voxel lesion."""
    target = torch.zeros(2, 1, 8, 8, 8)
    mask = torch.zeros(2, 1, 8, 8, 8)
    mask[0, 0, 4, 4, 4] = 1  # a tiny lesion
    mask[1].view(-1)[:500] = 1  # a large one
    out = mask * 0.2

    def halved(i: int) -> torch.Tensor:
        o = out.clone()
        o[i] *= 0.5**0.5
        return o

    pooled = [float(weighted_loss(halved(i), target, mask, 0.0)) for i in (0, 1)]
    log = [float(weighted_loss(halved(i), target, mask, 0.0, 1e-6)) for i in (0, 1)]
    assert abs(pooled[0] - pooled[1]) > 0.01  # pooled: the large crop decides
    assert log[0] == pytest.approx(log[1], abs=1e-4)
    per_crop = torch.tensor([0.04, 0.04])  # each crop's own MSE, outside weighing 0
    assert float(weighted_loss(out, target, mask, 0.0, 1e-6)) == pytest.approx(
        float(torch.log(per_crop + 1e-6).mean()), abs=1e-5
    )


@pytest.mark.slow
def test_high_t_span_keeps_timesteps_where_a_one_step_fill_evaluates():
    # The default span draws exactly as before the option existed (resumed runs repeat).
    gen_a, gen_b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    before = torch.randint(0, 1000, (64,), generator=gen_a)
    high = torch.randint(900, 1000, (64,), generator=gen_a)
    pick = torch.rand(64, generator=gen_a) < 0.5
    assert torch.equal(sample_timesteps(64, 1000, 0.5, gen_b), torch.where(pick, high, before))
    # Span 0.01 with every timestep high: only the noisiest ten, where x_t is pure noise.
    t = sample_timesteps(4000, 1000, 1.0, torch.Generator().manual_seed(0), high_span=0.01)
    assert int(t.min()) == 990 and int(t.max()) == 999
    one = sample_timesteps(50, 1000, 1.0, torch.Generator().manual_seed(0), high_span=0.001)
    assert set(one.tolist()) == {999}
    with pytest.raises(ValueError, match="high_span"):
        sample_timesteps(4, 1000, 1.0, torch.Generator(), high_span=0.0)


def test_a_few_steps_lower_the_loss(tmp_path):
    ds = _dataset(augment=False)
    config = _config(tmp_path / "run", steps=40, checkpoint_every=40, lr=2e-3, warmup_steps=5)
    schedule = NoiseSchedule(**config.schedule)
    torch.manual_seed(config.seed)
    from bidsfill.diffusion.architectures import build_network

    before = _fixed_loss(build_network("pseudo3d", **NETWORK), ds, schedule)
    result = train(config, ds, resume=False)
    after = _fixed_loss(result.model, ds, schedule)
    assert result.step == 40
    assert after < 0.7 * before
    log = (tmp_path / "run" / "train_log.csv").read_text().splitlines()
    assert log[0].startswith("step,loss") and len(log) == 21


@pytest.mark.slow
def test_resume_equals_uninterrupted(tmp_path):
    ds = _dataset()
    whole = train(_config(tmp_path / "a"), ds, resume=False)
    # Run b to the end, then rewind it to its step-3 checkpoint and resume from there.
    train(_config(tmp_path / "b"), _dataset(), resume=False)
    latest = tmp_path / "b" / "latest.json"
    latest.write_text(json.dumps({"step": 3, "checkpoint": "checkpoints/ckpt-00000003.pt"}))
    resumed = train(_config(tmp_path / "b"), _dataset(), resume=True)
    assert resumed.step == 6
    for (name, p), q in zip(
        whole.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(p, q), name
    for p, q in zip(whole.ema.parameters(), resumed.ema.parameters(), strict=True):
        assert torch.equal(p, q)
    assert whole.losses == resumed.losses


@pytest.mark.slow
def test_exported_weights_fill_a_volume(tmp_path):
    train(_config(tmp_path / "run", steps=3), _dataset(), resume=False)
    path = export_checkpoint(tmp_path / "run", tmp_path / "model.safetensors")
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["architecture"] == "pseudo3d" and card["training"]["steps"] == 3
    from bidsfill.fill import fill_image

    vol = _volume(1)
    mask = np.zeros(vol.image.shape, bool)
    mask[14:18, 13:17, 15:17] = True
    res = fill_image(
        vol.image, mask, method="pseudo3d", zooms=(1.0, 1.0, 1.0), seed=0, model=str(path), steps=3
    )
    assert np.array_equal(res.filled[~mask], vol.image[~mask])
    assert np.isfinite(res.filled[mask]).all()
    assert not np.array_equal(res.filled[mask], vol.image[mask])
    assert res.params["ModelSHA256"] == card["sha256"]


def test_fine_tuning_starts_from_exported_weights(tmp_path):
    config = _config(tmp_path / "a", steps=3, high_t_fraction=1.0, high_t_span=0.01)
    train(config, _dataset(), resume=False)
    path = export_checkpoint(tmp_path / "a", tmp_path / "model.safetensors")
    from bidsfill.diffusion.weights import load_weights

    exported, card = load_weights(path)
    # The card says which timesteps trained it (--adapt-steps draws the same ones).
    hyper = card.training["hyperparameters"]
    assert (hyper["high_t_fraction"], hyper["high_t_span"]) == (1.0, 0.01)
    # Zero steps of fine-tuning leave the networks exactly at the exported weights...
    res = train(_config(tmp_path / "b", steps=0, init_from=str(path)), _dataset(), resume=False)
    for a, b in zip(res.ema.state_dict().values(), exported.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    # ... and a random start does not.
    fresh = train(_config(tmp_path / "c", steps=0), _dataset(), resume=False)
    assert not all(
        torch.equal(a, b)
        for a, b in zip(
            fresh.ema.state_dict().values(), exported.state_dict().values(), strict=True
        )
    )
    wider = {**NETWORK, "channels": [8, 24]}
    with pytest.raises(ValueError, match="not pseudo3d"):
        train(_config(tmp_path / "d", steps=1, network=wider, init_from=str(path)), _dataset())


def test_scorecard_scores_every_filler_and_writes_the_card(tmp_path):
    from bidsfill.train.scorecard import (
        FillerSpec,
        bar_checks,
        markdown_table,
        score_cases,
        summarise,
    )
    from bidsfill.train.validation import ValidationCase

    train(_config(tmp_path / "run", steps=2), _dataset(), resume=False)
    model = export_checkpoint(tmp_path / "run", tmp_path / "model.safetensors")
    vol = _volume(2)
    masks = []
    for lo in ((8, 14, 13), (18, 8, 12)):
        m = np.zeros(vol.image.shape, bool)
        m[lo[0] : lo[0] + 5, lo[1] : lo[1] + 5, lo[2] : lo[2] + 4] = True
        masks.append(m)
    cases = [ValidationCase(f"synthetic#{i}", vol, m) for i, m in enumerate(masks)]
    fillers = [
        FillerSpec("nawm", "nawm"),
        FillerSpec("fsl", "fsl"),
        FillerSpec("pseudo3d", "pseudo3d", {"model": str(model), "steps": 2, "device": "cpu"}),
    ]
    cache = tmp_path / "rows.jsonl"
    rows = score_cases(cases, fillers, cache=cache)
    import shutil

    fsl_rows = [r for r in rows if r["filler"] == "fsl"]
    if shutil.which("lesion_filling") is None:  # not installed: a note, no numbers
        assert all("note" in r and "brats_psnr_01" not in r for r in fsl_rows)
    scored = [r for r in rows if "brats_psnr_01" in r]
    assert {r["filler"] for r in scored} >= {"nawm", "pseudo3d"}
    for r in scored:
        assert np.isfinite(r["brats_psnr_01"]) and -1 <= r["brats_ssim"] <= 1
        assert -1 <= r["ssim3d"] <= 1 and r["brats_mse"] >= 0 and r["seconds"] > 0
        assert r["vol_err_pct"] >= 0
        assert r["segmenter"] in ("fsl-fast", "ants-atropos")
        assert all(
            0 <= r[f"dice_{t}"] <= 1 or np.isnan(r[f"dice_{t}"]) for t in ("GM", "WM", "CSF")
        )
    # The cache holds every scored row; a rerun reads them instead of filling again.
    assert len(cache.read_text().splitlines()) == len(scored)
    again = score_cases(cases, fillers, cache=cache)
    assert [r["brats_psnr_01"] for r in again if "brats_psnr_01" in r] == [
        r["brats_psnr_01"] for r in scored
    ]
    summary = summarise(rows)
    nawm_psnr = [r["brats_psnr_01"] for r in scored if r["filler"] == "nawm"]
    assert summary["nawm"]["cases"] == 2
    assert summary["nawm"]["brats_psnr_01"] == pytest.approx(np.mean(nawm_psnr), abs=1e-3)
    summary["nonlocal"] = dict(summary["nawm"])  # a stand-in row to compare against
    checks = bar_checks(summary, "pseudo3d", rows)
    assert set(checks) == {
        "nonlocal_psnr01_plus_1dB", "nonlocal_ssim_higher", "nonlocal_ssim3d_higher",
        "nonlocal_dice_GM_not_lower", "nonlocal_dice_WM_not_lower",
        "nawm_psnr01_plus_2dB_every_volume", "all",
    }  # fmt: skip
    expected = summary["pseudo3d"]["brats_psnr_01"] >= summary["nawm"]["brats_psnr_01"] + 1
    assert checks["nonlocal_psnr01_plus_1dB"] is expected
    table = markdown_table(summary)
    assert table.count("\n") == 1 + len(summary) and "| nawm | 2 |" in table


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, run_dir: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
        WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
    )  # fmt: skip
    torch.set_num_threads(1)
    from bidsfill.train.distributed import cleanup, setup_distributed

    info = setup_distributed("cpu")
    result = train(_config(Path(run_dir), steps=3, checkpoint_every=3), _dataset(), info=info)
    state = {k: v.clone() for k, v in result.model.state_dict().items()}
    torch.save(state, Path(run_dir) / f"rank{rank}.pt")
    cleanup(info)


@pytest.mark.slow
def test_two_gloo_processes_keep_replicas_identical(tmp_path):
    import torch.multiprocessing as mp

    port = _free_port()
    mp.spawn(_ddp_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    a = torch.load(tmp_path / "rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "rank1.pt", weights_only=True)
    init = _config(tmp_path).network
    assert init
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # Both ranks trained: the weights moved away from the (zero) output initialisation.
    assert a["out.2.weight"].abs().sum() > 0
    assert (tmp_path / "checkpoints" / "ckpt-00000003.pt").exists()


def test_scorecard_cli_refuses_without_held_out_data(tmp_path, capsys):
    from bidsfill.cli.train import main

    assert main(["--scorecard", str(tmp_path / "m.safetensors")]) == 64
    assert "--scorecard needs --bids-dir and --val-participant-label" in capsys.readouterr().err
    args = ["--scorecard", str(tmp_path / "m.safetensors"), "--bids-dir", str(tmp_path)]
    assert main([*args, "--val-participant-label", "01"]) == 66  # no such weights
    assert "do not exist" in capsys.readouterr().err


def test_card_sampling_defaults_apply_unless_the_user_sets_them(tmp_path):
    train(_config(tmp_path / "run", steps=2), _dataset(), resume=False)
    path = export_checkpoint(
        tmp_path / "run", tmp_path / "m.safetensors", sampling={"steps": 3, "n_samples": 2}
    )
    assert json.loads(path.with_suffix(".json").read_text())["sampling"] == {
        "steps": 3,
        "n_samples": 2,
    }
    from bidsfill.fill import fill_image

    vol = _volume(1)
    mask = np.zeros(vol.image.shape, bool)
    mask[14:18, 13:17, 15:17] = True
    kw = {"method": "pseudo3d", "zooms": (1.0, 1.0, 1.0), "seed": 0, "model": str(path)}
    default = fill_image(vol.image, mask, **kw)
    assert default.params["Steps"] == 3 and default.params["NSamples"] == 2
    assert default.std is not None
    chosen = fill_image(vol.image, mask, steps=4, n_samples=1, **kw)
    assert chosen.params["Steps"] == 4 and chosen.params["NSamples"] == 1
    assert chosen.std is None


def test_prefill_channel_fine_tunes_from_a_model_without_it(tmp_path):
    from bidsfill.diffusion.weights import load_weights
    from bidsfill.fill import fill_image
    from bidsfill.fill.prefill import classical_prefill

    train(_config(tmp_path / "a", steps=2), _dataset(), resume=False)
    start = export_checkpoint(tmp_path / "a", tmp_path / "start.safetensors")
    pre = {**_preprocessing(), "extras": ["prefill"], "prefill_method": "nonlocal"}
    net4 = {**NETWORK, "in_channels": 4}
    ds = InpaintingDataset(
        [_volume()], arch="pseudo3d", config=net4, preprocessing=pre,
        masks=MaskGenerator({"random": 1.0}, volume_ml={"random": (0.03, 0.2)}),
        region=(24, 24, 8), seed=0, mask_bank=4,
    )  # fmt: skip
    # The channel is the nonlocal fill of the region's mask, in the T1w's intensity map.
    image, mask, extras = ds.region_example(0)
    expected = fill_image(image, mask, method="nonlocal", zooms=(1.0, 1.0, 1.0), seed=0).filled
    assert np.array_equal(extras["prefill"], expected)
    assert np.array_equal(classical_prefill(image, np.zeros_like(mask)), image)
    item = ds[0]
    assert item["condition"].shape[0] == 3  # b, m, prefill
    # Zero steps: the grown network is exactly the start, whatever the new channel holds.
    cfg = _config(tmp_path / "b", steps=0, network=net4, preprocessing=pre, init_from=str(start))
    grown = train(cfg, ds, resume=False).ema.eval()
    old, _ = load_weights(start)
    x = torch.randn(1, 3, 4, 16, 16)
    t = torch.tensor([5])
    with torch.no_grad():
        a = grown(torch.cat([x, torch.randn(1, 1, 4, 16, 16)], 1), t)
        b = grown(torch.cat([x, torch.randn(1, 1, 4, 16, 16)], 1), t)
        assert torch.allclose(a, old.eval()(x, t), atol=1e-6) and torch.allclose(a, b, atol=1e-6)
    # A few steps later the model fills a volume, computing its own prefill at inference.
    cfg = _config(tmp_path / "c", steps=2, network=net4, preprocessing=pre, init_from=str(start))
    train(cfg, ds, resume=False)
    path = export_checkpoint(tmp_path / "c", tmp_path / "prefill.safetensors")
    vol = _volume(1)
    m = np.zeros(vol.image.shape, bool)
    m[14:18, 13:17, 15:17] = True
    res = fill_image(
        vol.image, m, method="pseudo3d", zooms=(1.0,) * 3, seed=0, model=str(path), steps=2
    )
    assert np.array_equal(res.filled[~m], vol.image[~m]) and np.isfinite(res.filled[m]).all()


def test_unconditional_training_from_the_cli_makes_a_repaint_model(tmp_path, capsys):
    """``bidsfill-train --unconditional`` trains a model with no conditioning channels,
    which ``--method repaint`` fills with (and ``--method pseudo3d`` refuses)."""
    from conftest import phantom, save, write_description

    from bidsfill.cli.train import main
    from bidsfill.fill import FillError, fill_image

    root = tmp_path / "bids"
    write_description(root)
    save(phantom(1, (32, 32, 24)), root / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    common = ["--bids-dir", str(root), "--arch", "pseudo3d", "--channels", "8", "16",
              "--norm-groups", "4", "--patch", "16", "16", "4", "--region", "24", "24", "8",
              "--mask-kinds", "random=1", "--steps", "2", "--batch-size", "1",
              "--num-workers", "0", "--checkpoint-every", "2", "--val-every", "0"]  # fmt: skip
    assert main([*common, "--run-dir", str(tmp_path / "bad"), "--unconditional",
                 "--prefill"]) == 64  # fmt: skip
    assert "--unconditional takes no conditioning channels" in capsys.readouterr().err
    out = tmp_path / "repaint.safetensors"
    assert main([*common, "--run-dir", str(tmp_path / "run"), "--unconditional",
                 "--export", str(out)]) == 0  # fmt: skip
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["config"]["in_channels"] == 1
    vol = phantom(2, (32, 32, 24))
    mask = np.zeros(vol.shape, bool)
    mask[12:16, 12:16, 10:12] = True
    kw = {"zooms": (1.0, 1.0, 1.0), "seed": 0, "model": str(out), "steps": 2}
    filled = fill_image(vol, mask, method="repaint", **kw).filled
    assert np.array_equal(filled[~mask], vol[~mask]) and np.isfinite(filled).all()
    with pytest.raises(FillError, match="use --method repaint"):
        fill_image(vol, mask, method="pseudo3d", **kw)


def test_scorecard_segments_each_healthy_scan_once_and_keeps_it(tmp_path, monkeypatch):
    """The truth's tissue labels depend on the scan, not the mask: one Atropos run per
    scan, and a rerun with the row cache reads them back instead of segmenting again."""
    import bidsfill.train.scorecard as sc
    from bidsfill.train.validation import ValidationCase

    calls = []
    real_segment = sc._segment

    def counted(image, case, seed, n_threads):
        calls.append(float(np.asarray(image, np.float64).sum()))
        return real_segment(image, case, seed, n_threads)

    monkeypatch.setattr(sc, "_segment", counted)
    vol = _volume(2)
    cases = []
    for i, lo in enumerate(((8, 14, 13), (18, 8, 12))):
        m = np.zeros(vol.image.shape, bool)
        m[lo[0] : lo[0] + 5, lo[1] : lo[1] + 5, lo[2] : lo[2] + 4] = True
        cases.append(ValidationCase(f"synthetic#{i}", vol, m))
    cache = tmp_path / "rows.jsonl"
    first = sc.score_cases(cases, [sc.FillerSpec("nawm", "nawm")], cache=cache)
    truth_sum = float(np.asarray(vol.image, np.float64).sum())
    assert calls.count(truth_sum) == 1 and len(calls) == 3  # truth once, each fill once
    calls.clear()
    second = sc.score_cases(cases, [sc.FillerSpec("ring", "ring")], cache=cache)
    assert truth_sum not in calls and len(calls) == 2  # the truth's labels came from disk
    for row in (*first, *second):
        assert 0 <= row["dice_WM"] <= 1 or np.isnan(row["dice_WM"])


def test_scorecard_keeps_its_masks_so_another_registration_scores_the_same(tmp_path):
    """Kept masks win over a fresh draw: a volume whose white matter (its registered
    priors) changed would otherwise get its synthetic lesions elsewhere."""
    from bidsfill.train.scorecard import load_case_masks, make_scorecard_cases, save_case_masks

    vol = _volume(1)
    kinds = ["tumour", "ms"]
    first = make_scorecard_cases([vol], kinds, real_masks=None)
    path = tmp_path / "masks.npz"
    save_case_masks(first, path)
    kept = load_case_masks(path)
    assert list(kept) == [c.name for c in first]
    assert all(np.array_equal(kept[c.name], c.mask) for c in first)
    moved = TrainVolume(vol.name, vol.image, vol.affine, vol.zooms, np.roll(vol.wm, 3, axis=0),
                        vol.brain)  # fmt: skip
    redrawn = make_scorecard_cases([moved], kinds, real_masks=None)
    assert any(not np.array_equal(a.mask, b.mask) for a, b in zip(first, redrawn, strict=True))
    again = make_scorecard_cases([moved], kinds, real_masks=None, frozen=kept)
    assert [c.name for c in again] == [c.name for c in first]
    assert all(np.array_equal(a.mask, b.mask) for a, b in zip(first, again, strict=True))
    save_case_masks(again[:1], path)  # adding keeps what was there
    assert list(load_case_masks(path)) == [c.name for c in first]


def test_kept_scorecard_cases_write_new_masks_once_and_reuse_them(tmp_path):
    """The patient benchmarks keep their masks through this helper: the first run writes
    them, a run on another registration scores the same ones and leaves the file alone."""
    from bidsfill.train.scorecard import kept_scorecard_cases, load_case_masks

    vol = _volume(1)
    path = tmp_path / "masks.npz"
    first = kept_scorecard_cases([vol], ["tumour"], real_masks=None, masks_file=path)
    assert list(load_case_masks(path)) == [first[0].name]
    written = path.stat().st_mtime_ns, path.read_bytes()
    moved = TrainVolume(vol.name, vol.image, vol.affine, vol.zooms, np.roll(vol.wm, 3, axis=0),
                        vol.brain)  # fmt: skip
    again = kept_scorecard_cases([moved], ["tumour"], real_masks=None, masks_file=path)
    assert np.array_equal(again[0].mask, first[0].mask)
    assert (path.stat().st_mtime_ns, path.read_bytes()) == written
    more = kept_scorecard_cases([moved], ["tumour", "ms"], real_masks=None, masks_file=path)
    assert [c.name for c in more] == [first[0].name, f"{vol.name}#ms"]
    assert list(load_case_masks(path)) == [c.name for c in more]
