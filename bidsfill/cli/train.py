"""``bidsfill-train``: train a diffusion inpainting model on healthy scans.

    bidsfill-train --mni --bids-dir DATA --participant-label spm152 cit168 gd01 \\
        --val-participant-label head01 gd01:right --run-dir runs/pseudo3d --steps 6000
    torchrun --nproc_per_node=4 bidsfill-train ...      # DistributedDataParallel

Re-running the same command resumes from the run folder's latest checkpoint.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["build_parser", "main"]

LOGGER = logging.getLogger("bidsfill.train")


def _kinds(values: list[str]) -> dict[str, float]:
    out = {}
    for item in values:
        name, _, weight = item.partition("=")
        out[name] = float(weight or 1.0)
    return out


def build_parser() -> argparse.ArgumentParser:
    from bidsfill.diffusion.architectures import ARCHITECTURES

    p = argparse.ArgumentParser(
        prog="bidsfill-train", description=__doc__.split("\n")[0].replace("``", "")
    )
    p.add_argument("--task", default="inpaint", choices=["inpaint", "synthesize"],
                   help="inpaint: a lesion-filling model (default); synthesize: a cWDM model "
                        "that writes --target from --sources.")  # fmt: skip
    p.add_argument("--target", help="--task synthesize: the contrast to synthesise (e.g. FLAIR).")
    p.add_argument("--sources", nargs="+", default=[],
                   help="--task synthesize: the contrasts it is conditioned on (e.g. T1w T2w).")
    data = p.add_argument_group("data")
    data.add_argument("--bids-dir", type=Path, help="BIDS dataset of healthy T1w scans.")
    data.add_argument("--participant-label", nargs="+", help="Training participants (default all).")
    data.add_argument("--val-participant-label", nargs="+", default=[],
                      help="Held-out participants; LABEL:left / LABEL:right holds out one "
                           "hemisphere and trains on the other.")  # fmt: skip
    data.add_argument("--flair", action="store_true", help="Use a FLAIR as an extra channel.")
    data.add_argument("--t2w", action="store_true", help="Use a T2w as an extra channel.")
    data.add_argument("--mni", action="store_true",
                      help="Train on the MNI152 2009 template from the nilearn wheel.")  # fmt: skip
    data.add_argument("--mask-kinds", nargs="+",
                      default=["ms=0.55", "tumour=0.15", "cavity=0.15", "random=0.15"],
                      help="Mask kinds with weights (ms, tumour, cavity, random, real).")  # fmt: skip
    data.add_argument("--real-masks", type=Path, help="Folder of real lesion masks (kind 'real').")
    data.add_argument("--real-max-ml", type=float, default=None,
                      help="Leave out real masks larger than this (needs the folder's index.tsv).")  # fmt: skip
    data.add_argument("--voxel-size", type=float, nargs=3, default=[1.0, 1.0, 1.0],
                      help="The model's grid in mm: training scans are resampled to it, and "
                           "inference resamples each crop to it and back.")  # fmt: skip
    data.add_argument("--mask-bank", type=int, default=512,
                      help="Reuse this many drawn masks under fresh augmentation (0: always new).")  # fmt: skip
    data.add_argument("--no-augment", action="store_true", help="Disable augmentation.")
    data.add_argument("--p-lowres", type=float, default=0.0, metavar="P",
                      help="Probability that a region gets a coarser acquisition (voxels drawn "
                           "per axis from --lowres-mm) and is brought back to 1 mm, as the fill "
                           "brings a coarse scan's crop to the model's grid (default 0).")  # fmt: skip
    data.add_argument("--lowres-mm", type=float, nargs=2, default=(1.0, 2.2), metavar=("MIN", "MAX"),
                      help="Range of the simulated voxel size in mm (default 1.0 2.2).")  # fmt: skip
    data.add_argument("--region", type=int, nargs=3, default=[96, 96, 32])
    data.add_argument("--volume-weight", nargs="+", default=[], metavar="NAME=W",
                      help="Relative sampling weight of the training volumes whose name "
                           "contains NAME (default 1 each), e.g. gd01=2 to favour a real scan "
                           "over templates.")  # fmt: skip
    model = p.add_argument_group("model")
    model.add_argument("--arch", default="pseudo3d", choices=ARCHITECTURES)
    model.add_argument("--channels", type=int, nargs="+", default=[24, 48, 96])
    model.add_argument("--num-res-blocks", type=int, default=1)
    model.add_argument("--norm-groups", type=int, default=8)
    model.add_argument("--patch", type=int, nargs=3, default=[64, 64, 6],
                       help="Training patch (X Y Z); Z is the slice window of slice models.")  # fmt: skip
    model.add_argument("--window-overlap", type=int, default=None)
    model.add_argument("--mirror", action="store_true",
                       help="Add the image reflected about its mid-sagittal plane; with "
                            "--prefill it shows the prefill where the reflection would show "
                            "what the mask hides.")  # fmt: skip
    model.add_argument("--prefill", action="store_true",
                       help="Add a channel holding a classical (nonlocal) fill of the mask, "
                            "which the model learns to correct.")  # fmt: skip
    model.add_argument("--residual", action="store_true",
                       help="Diffuse the correction of the prefill (needs --prefill): a zero "
                            "correction returns the prefill exactly.")  # fmt: skip
    model.add_argument("--unconditional", action="store_true",
                       help="No conditioning channels: a model of healthy tissue alone, which "
                            "`bidsfill --method repaint` fills with by RePaint resampling.")  # fmt: skip
    model.add_argument("--prediction-type", default="sample",
                       choices=["epsilon", "sample", "v_prediction"])  # fmt: skip
    model.add_argument("--beta-schedule", default="cosine", choices=["linear", "cosine"])
    loop = p.add_argument_group("optimisation")
    loop.add_argument("--run-dir", type=Path, default=Path("runs/default"))
    loop.add_argument("--steps", type=int, default=1000)
    loop.add_argument("--stage-steps", nargs="+", default=[], metavar="STAGE=N",
                      help="Steps of the training stages an architecture has before its "
                           "diffusion stage (ldm3d: autoencoder=N); default --steps each.")  # fmt: skip
    loop.add_argument("--batch-size", type=int, default=2)
    loop.add_argument("--lr", type=float, default=2e-4)
    loop.add_argument("--weight-decay", type=float, default=1e-4)
    loop.add_argument("--warmup-steps", type=int, default=100)
    loop.add_argument("--ema-decay", type=float, default=0.999)
    loop.add_argument("--grad-clip", type=float, default=1.0)
    loop.add_argument("--high-t-fraction", type=float, default=0.0,
                      help="Share of timesteps drawn from the noisiest 10 %% (few-step fills).")  # fmt: skip
    loop.add_argument("--high-t-span", type=float, default=0.1,
                      help="The noisiest share of the schedule those timesteps come from "
                           "(0.01: only where x_t is pure noise, the step a one-step fill "
                           "uses).")  # fmt: skip
    loop.add_argument("--outside-weight", type=float, default=0.1)
    loop.add_argument("--log-mse-eps", type=float, default=0.0,
                      help="0: one MSE pooled over the batch; > 0: the mean of each crop's "
                           "log(MSE + eps), so small lesions count as much as large ones")  # fmt: skip
    loop.add_argument("--checkpoint-every", type=int, default=100)
    loop.add_argument("--val-every", type=int, default=0)
    loop.add_argument("--log-every", type=int, default=10)
    loop.add_argument("--val-steps", type=int, default=10, help="DDIM steps for validation.")
    loop.add_argument("--val-cases", type=int, default=2, help="Masks per held-out volume.")
    loop.add_argument("--seed", type=int, default=0)
    loop.add_argument("--device", default="auto")
    loop.add_argument("--threads", type=int, default=1, help="torch CPU threads per process.")
    loop.add_argument("--num-workers", type=int, default=0)
    loop.add_argument("--max-minutes", type=float, default=0.0,
                      help="Stop after a checkpoint once this session ran this long.")  # fmt: skip
    loop.add_argument("--no-resume", action="store_true", help="Ignore existing checkpoints.")
    loop.add_argument("--init-from", type=Path,
                      help="Start from these exported weights (.safetensors) instead of a random "
                           "initialisation (fine-tuning); ignored when resuming.")  # fmt: skip
    loop.add_argument("--export", type=Path, help="Write the EMA weights + card here at the end.")
    loop.add_argument("--export-only", action="store_true",
                      help="Export the latest checkpoint of --run-dir and exit.")  # fmt: skip
    loop.add_argument("--sampling-steps", type=int,
                      help="Default DDIM steps written into the exported card.")  # fmt: skip
    loop.add_argument("--sampling-n-samples", type=int,
                      help="Default number of averaged fills written into the exported card.")  # fmt: skip
    card = p.add_argument_group("scorecard")
    card.add_argument("--scorecard", type=Path, metavar="MODEL",
                      help="Score the exported model MODEL (.safetensors) beside every classical "
                           "filler on the held-out participants (--val-participant-label), with "
                           "one mask per --scorecard-kinds each, write the numbers into its card and "
                           "exit.")  # fmt: skip
    card.add_argument("--scorecard-kinds", nargs="+",
                      default=["real-ms", "real-stroke", "ms", "tumour"],
                      help="Mask kinds, one case per held-out volume each: real-ms and "
                           "real-stroke (from --real-masks, MNI space) and the synthetic "
                           "kinds ms, tumour, cavity.")  # fmt: skip
    card.add_argument("--scorecard-seed", type=int, default=2026,
                      help="Seed of the scorecard's masks (never a training seed).")  # fmt: skip
    card.add_argument("--scorecard-steps", type=int, default=None,
                      help="DDIM steps of the model's fills (default: the card's).")  # fmt: skip
    card.add_argument("--scorecard-adapt-steps", type=int, default=0,
                      help="Also score the model adapted to each scan for N steps.")  # fmt: skip
    card.add_argument("--scorecard-only", nargs="+", default=[],
                      help="Run only these fillers (labels), e.g. the classical ones while "
                           "the model trains; rows are cached in RUN_DIR/cache.")  # fmt: skip
    card.add_argument("--scorecard-tsv", type=Path, help="Also write one row per fill here.")
    card.add_argument("--scorecard-masks", type=Path, metavar="NPZ",
                      help="Keep the case masks here: cases it holds are scored on those masks "
                           "(registration differs between machines), new ones are added.")  # fmt: skip
    return p


def _split_labels(labels: list[str]) -> dict[str, str | None]:
    out = {}
    for item in labels:
        label, _, side = item.removeprefix("sub-").partition(":")
        if side and side not in ("left", "right"):
            raise ValueError(f"Held-out side must be left or right, not {side!r} ({item}).")
        out[label] = side or None
    return out


def _load_data(args: argparse.Namespace, cache: Path) -> tuple[list[Any], list[Any]]:
    from bidsfill.bids.training import training_scans
    from bidsfill.train.dataset import (
        load_volumes,
        mni_volume,
        rescaled,
        split_hemisphere,
        with_mirror,
    )

    def _mirrored(vol):  # noqa: ANN001, ANN202 - about its own estimated midline, once
        return with_mirror(vol, seed=args.seed) if args.mirror else vol

    held = _split_labels(args.val_participant_label)
    train_vols, val_vols = [], []
    if args.mni:
        if args.flair:
            raise ValueError("The MNI template has no FLAIR; drop --mni or --flair.")
        if args.t2w:
            raise ValueError("The MNI template has no T2w; drop --mni or --t2w.")
        train_vols.append(_mirrored(mni_volume(1)))
    if args.bids_dir is not None:
        labels = [lab.removeprefix("sub-") for lab in args.participant_label or []]
        wanted = sorted(set(labels) | set(held)) if labels else None
        scans = training_scans(args.bids_dir, wanted, flair=args.flair, t2w=args.t2w)
        for vol in load_volumes(scans, cache_dir=cache, voxel_size=args.voxel_size):
            vol = _mirrored(vol)  # before any hemisphere is split off  # noqa: PLW2901
            sub = vol.name.split("_")[0].removeprefix("sub-")
            in_train = not labels or sub in labels
            if sub in held:
                side = held[sub]
                if side is None:
                    val_vols.append(vol)
                    continue
                other = "left" if side == "right" else "right"
                val_vols.append(split_hemisphere(vol, side))
                if in_train:
                    train_vols.append(split_hemisphere(vol, other))
            elif in_train:
                train_vols.append(vol)
    if not train_vols:
        raise ValueError("No training data: give --mni and/or --bids-dir with participants.")
    # Validation also sees other intensity scales: the fill must not depend on the
    # scanner's scaling (the crops are normalised on their known tissue).
    val_vols += [rescaled(v, 3.7, 0.0) for v in val_vols[:2]]
    return train_vols, val_vols


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--microscopy"]:  # 2D histology DDPM on sections (issue 18)
        from bidsfill.microscopy.train import main as train_microscopy

        return train_microscopy(argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.task == "synthesize":
        from bidsfill.cli.train_synthesis import main_synthesize

        return main_synthesize(args)
    import torch

    torch.set_num_threads(max(1, args.threads))
    from bidsfill.diffusion.architectures import get_architecture
    from bidsfill.diffusion.card import PREFILL_METHOD, default_preprocessing
    from bidsfill.train.augment import AugmentConfig, Augmenter
    from bidsfill.train.dataset import InpaintingDataset
    from bidsfill.train.distributed import cleanup, setup_distributed
    from bidsfill.train.export import export_checkpoint
    from bidsfill.train.loop import TrainConfig, train
    from bidsfill.train.masks import TRAINING_VOLUME_ML, MaskGenerator

    if args.scorecard is not None:
        return _scorecard(args)
    if args.export_only:
        if args.export is None:
            print("bidsfill-train: --export-only needs --export PATH.", file=sys.stderr)
            return 64
        print(export_checkpoint(args.run_dir, args.export, sampling=_sampling(args)))
        return 0
    try:
        _split_labels(args.val_participant_label)  # fail early on a bad side
    except ValueError as err:
        print(f"bidsfill-train: {err}", file=sys.stderr)
        return 64
    info = setup_distributed(args.device)
    cache = args.run_dir / "cache"
    try:
        train_vols, val_vols = _load_data(args, cache)
    except ValueError as err:
        print(f"bidsfill-train: {err}", file=sys.stderr)
        return 66
    extras = (["mirror"] if args.mirror else []) + (["flair"] if args.flair else [])
    extras += ["t2w"] if args.t2w else []
    extras += ["prefill"] if args.prefill else []
    if args.residual and not args.prefill:
        print("bidsfill-train: --residual needs --prefill (the fill it corrects).", file=sys.stderr)
        return 64
    if args.unconditional and extras:
        print("bidsfill-train: --unconditional takes no conditioning channels "
              "(--mirror, --flair, --t2w, --prefill).", file=sys.stderr)  # fmt: skip
        return 64
    pre = default_preprocessing(args.arch, tuple(extras), residual=args.residual)
    pre["voxel_size"] = list(args.voxel_size)
    if args.prefill:
        pre["prefill_method"] = PREFILL_METHOD
        if args.mirror:  # the mirror shows the prefill where it would show the hidden truth
            pre["mirror_hides_mask"] = True
    pre["patch_size"] = list(args.patch)
    spec = get_architecture(args.arch)
    if spec.slices:
        pre["window"] = int(args.patch[2])
        pre["window_overlap"] = (
            args.window_overlap if args.window_overlap is not None else args.patch[2] // 2
        )
    stage_steps = {name: args.steps for name in spec.stages[:-1]}
    for item in args.stage_steps:
        name, _, n = item.partition("=")
        if name not in stage_steps or not n.isdigit():
            print(f"bidsfill-train: --stage-steps {item}: {args.arch} trains in stages "
                  f"{list(spec.stages)}; give STAGE=N for one before diffusion.",
                  file=sys.stderr)  # fmt: skip
            return 64
        stage_steps[name] = int(n)
    network = {
        # b, m and the extras after x_t; an unconditional (RePaint) model has none
        **spec.channels_for(0 if args.unconditional else 2 + len(extras)),
        "channels": list(args.channels),
        "num_res_blocks": args.num_res_blocks,
        "norm_num_groups": args.norm_groups,
    }
    kinds = _kinds(args.mask_kinds)
    masks = MaskGenerator(
        kinds,
        real_masks=args.real_masks,
        volume_ml=TRAINING_VOLUME_ML,
        real_max_ml=args.real_max_ml,
    )
    aug_cfg = None if args.no_augment else AugmentConfig(
        p_lowres=args.p_lowres, lowres_mm=tuple(args.lowres_mm)
    )
    weights = [1.0] * len(train_vols)
    for item in args.volume_weight:
        name, _, w = item.partition("=")
        hits = [i for i, v in enumerate(train_vols) if name in v.name]
        if not hits or not w:
            print(f"bidsfill-train: --volume-weight {item}: no such training volume "
                  "or no weight.", file=sys.stderr)  # fmt: skip
            return 64
        for i in hits:
            weights[i] = float(w)
    dataset = InpaintingDataset(
        train_vols,
        arch=args.arch,
        config=network,
        preprocessing=pre,
        masks=masks,
        augment=Augmenter(aug_cfg),
        region=tuple(args.region),
        seed=args.seed,
        weights=weights,
        mask_bank=args.mask_bank,
        cache_dir=cache / "masks",
    )
    config = TrainConfig(
        run_dir=str(args.run_dir),
        arch=args.arch,
        network=network,
        schedule={
            "num_train_timesteps": 1000,
            "beta_schedule": args.beta_schedule,
            "prediction_type": args.prediction_type,
        },
        preprocessing=pre,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup_steps=args.warmup_steps,
        ema_decay=args.ema_decay,
        grad_clip=args.grad_clip,
        outside_weight=args.outside_weight,
        log_mse_eps=args.log_mse_eps,
        checkpoint_every=args.checkpoint_every,
        val_every=args.val_every,
        val_steps=args.val_steps,
        log_every=args.log_every,
        seed=args.seed,
        num_workers=args.num_workers,
        max_minutes=args.max_minutes,
        device=args.device,
        init_from=str(args.init_from or ""),
        high_t_fraction=args.high_t_fraction,
        high_t_span=args.high_t_span,
        stage_steps=stage_steps,
    )
    data_card = {
        "training_data": [
            {
                "name": v.name,
                "source": v.source,
                "shape": list(v.image.shape),
                "zooms": list(v.zooms),
                "weight": w,
            }
            for v, w in zip(train_vols, weights, strict=True)
        ],  # fmt: skip
        "validation_data": [v.name for v in val_vols],
        "masks": {
            "kinds": kinds,
            "bank": args.mask_bank,
            "region": list(args.region),
            "volume_ml_overrides": {k: list(v) for k, v in TRAINING_VOLUME_ML.items()},
        },  # fmt: skip
        "augmentation": aug_cfg.to_dict() if aug_cfg else None,
    }
    validate_fn = None
    if args.val_every and val_vols and info.is_main:
        validate_fn = _make_validator(args, val_vols, masks, network, pre, info.device)
    result = train(
        config, dataset, resume=not args.no_resume, validate_fn=validate_fn, info=info,
        extra_state=data_card,
    )  # fmt: skip
    if info.is_main:
        LOGGER.info("Stopped at step %d after %.0f s of training.", result.step, result.elapsed)
        if args.export is not None:
            print(export_checkpoint(args.run_dir, args.export, sampling=_sampling(args)))
    cleanup(info)
    return 0


def _make_validator(args, val_vols, masks, network, pre, device):  # noqa: ANN001, ANN202
    """Fixed held-out cases; the nawm filler's scores are computed once and cached."""
    from bidsfill.train.dataset import InpaintingDataset
    from bidsfill.train.validation import classical_scores, make_cases, validate

    def factory(vols, seed):  # noqa: ANN001, ANN202
        return InpaintingDataset(
            vols, arch=args.arch, config=network, preprocessing=pre, masks=masks,
            region=tuple(args.region), seed=seed,
        )  # fmt: skip

    cases = make_cases(val_vols, factory, per_volume=args.val_cases)
    cache = args.run_dir / "nawm_scores.json"
    names = [c.name for c in cases]
    nawm: list[dict[str, float]] = []

    def classical() -> list[dict[str, float]]:
        if nawm:
            return nawm
        if cache.exists() and json.loads(cache.read_text()).get("cases") == names:
            nawm.extend(json.loads(cache.read_text())["scores"])
            return nawm
        try:
            nawm.extend(classical_scores(cases, "nawm"))
        except Exception as err:  # the bar to beat is optional; training goes on
            LOGGER.warning("nawm scores unavailable: %s", err)
            return [{"psnr": float("nan"), "ssim": float("nan")} for _ in cases]
        cache.write_text(json.dumps({"cases": names, "scores": nawm}, indent=1))
        return nawm

    def run(ema, card):  # noqa: ANN001, ANN202
        scores = validate(ema, card, cases, steps=args.val_steps, device=device)
        nawm = classical()
        out: dict[str, float] = {
            "psnr": float(np.mean([s["psnr"] for s in scores])),
            "ssim": float(np.mean([s["ssim"] for s in scores])),
            "nawm_psnr": float(np.mean([s["psnr"] for s in nawm])),
            "nawm_ssim": float(np.mean([s["ssim"] for s in nawm])),
        }
        for case, s, c in zip(cases, scores, nawm, strict=True):
            out[f"psnr[{case.name}]"] = round(s["psnr"], 3)
            out[f"nawm_psnr[{case.name}]"] = round(c["psnr"], 3)
        return out

    return run


def _sampling(args: argparse.Namespace) -> dict[str, int] | None:
    out = {"steps": args.sampling_steps, "n_samples": args.sampling_n_samples}
    return {k: v for k, v in out.items() if v} or None


def _scorecard(args: argparse.Namespace) -> int:
    """``--scorecard``: the model beside every classical filler, into the model card."""
    from bidsfill.diffusion.weights import load_weights
    from bidsfill.train.scorecard import run_scorecard

    if args.bids_dir is None or not args.val_participant_label:
        print(
            "bidsfill-train: --scorecard needs --bids-dir and --val-participant-label.",
            file=sys.stderr,
        )
        return 64
    try:
        _, card = load_weights(args.scorecard)
        held = _split_labels(args.val_participant_label)
    except (OSError, ValueError) as err:
        print(f"bidsfill-train: {err}", file=sys.stderr)
        return 66
    from bidsfill.bids.training import training_scans

    try:
        scans = training_scans(args.bids_dir, sorted(held))
    except ValueError as err:
        print(f"bidsfill-train: {err}", file=sys.stderr)
        return 66
    result = run_scorecard(
        args.scorecard,
        card,
        scans=scans,
        held_out=held,
        kinds=args.scorecard_kinds,
        real_masks=args.real_masks,
        seed=args.scorecard_seed,
        steps=args.scorecard_steps,
        adapt_steps=args.scorecard_adapt_steps,
        cache_dir=args.run_dir / "cache",
        n_threads=args.threads,
        tsv=args.scorecard_tsv,
        only=args.scorecard_only,
        masks_file=args.scorecard_masks,
    )
    print(result["table"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
