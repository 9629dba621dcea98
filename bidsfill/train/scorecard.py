"""The model card's scorecard: a trained model beside every classical filler, on held-out data.

Issue 12's bar is measured here: on real healthy scans the model never saw, at their own
resolution, with real lesion masks (MS and stroke, moved from MNI152 space into each
brain with its registration) and synthetic ones (MS-like, tumour, cavity), every filler
fills the same masks through :func:`bidsfill.fill.fill_image` (the code behind the CLI).
Each fill is scored against the healthy truth with the BraTS 2023 inpainting metrics
(SSIM, PSNR, PSNR01 and MSE inside the mask), a 3D SSIM, the in-mask Dice of GM, WM and
CSF and the whole-brain tissue-volume error (truth and fill segmented alike: same
segmenter, brain mask and seed), and its fill seconds. Rows are cached in a JSON-lines
file, so an interrupted scorecard resumes and a new model reuses the classical rows.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bidsfill.diffusion.card import CONTRAST_CHANNELS, ModelCard
from bidsfill.evaluate.metrics import TISSUES, dice, image_metrics
from bidsfill.train.validation import ValidationCase

__all__ = [
    "CASE_KINDS",
    "METRICS",
    "FillerSpec",
    "bar_checks",
    "default_fillers",
    "held_out_volumes",
    "load_case_masks",
    "make_scorecard_cases",
    "model_params",
    "save_case_masks",
    "kept_scorecard_cases",
    "markdown_table",
    "per_volume",
    "run_scorecard",
    "score_cases",
    "summarise",
]

LOGGER = logging.getLogger("bidsfill.train")

#: Scorecard columns, in table order, and whether higher is better.
METRICS: dict[str, bool] = {
    "brats_psnr_01": True,
    "brats_psnr": True,
    "brats_ssim": True,
    "brats_mse": False,
    "ssim3d": True,
    **{f"dice_{t}": True for t in TISSUES},
    "vol_err_pct": False,
    "seconds": False,
}

#: Mask kinds of the scorecard's cases: real masks from the lesion-mask folder (by the
#: ``kind`` column of its index.tsv) and the synthetic kinds of the training generator.
CASE_KINDS = ("real-ms", "real-stroke", "ms", "tumour", "cavity")


@dataclass(frozen=True)
class FillerSpec:
    """A row of the scorecard: a ``fill_image`` method and its parameters, under a label."""

    label: str
    method: str
    params: dict[str, Any] = field(default_factory=dict)
    #: hand the case's other contrasts (FLAIR, T2w on the T1w grid) to the fill, as the
    #: workflow does for a model whose card lists them
    contrasts: bool = False


def _segment(image: np.ndarray, case: ValidationCase, seed: int, n_threads: int) -> Any:
    from bidsfill.segment import segment_tissues

    return segment_tissues(
        image.astype(np.float32),
        case.volume.affine,
        brain_mask=case.volume.brain,
        seed=seed,
        n_threads=n_threads,
    )


def _truth_dseg(
    case: ValidationCase, seed: int, n_threads: int, memo: dict[str, np.ndarray], cache: Path | None
) -> np.ndarray:
    """The tissue labels of the case's healthy scan. They depend on the scan, not on the
    mask, so each scan is segmented once (Atropos dominates the scorecard's time) and,
    with a row cache, kept beside it keyed by the scan's voxels and the seed."""
    vol = case.volume
    digest = hashlib.sha256(np.ascontiguousarray(vol.image).tobytes())
    digest.update(np.packbits(np.asarray(vol.brain, dtype=bool)).tobytes())
    key = f"{vol.name}-{seed}-{digest.hexdigest()[:16]}"
    if key in memo:
        return memo[key]
    path = None if cache is None else cache.with_name(f"{cache.stem}_truth-{key}.npz")
    if path is not None and path.exists():
        memo[key] = np.load(path)["dseg"]
        return memo[key]
    memo[key] = np.asarray(_segment(vol.image, case, seed, n_threads).dseg, dtype=np.uint8)
    if path is not None:
        np.savez_compressed(path, dseg=memo[key])
    return memo[key]


def _case_key(case: ValidationCase, spec: FillerSpec) -> str:
    digest = hashlib.sha256(np.packbits(case.mask).tobytes())
    params = {**spec.params, "contrasts": True} if spec.contrasts else spec.params
    digest.update(json.dumps(params, sort_keys=True, default=str).encode())
    return f"{case.name}|{spec.label}|{digest.hexdigest()[:16]}"


def score_cases(
    cases: Sequence[ValidationCase],
    fillers: Sequence[FillerSpec],
    *,
    tissues: bool = True,
    seed: int = 0,
    n_threads: int = 1,
    log: Callable[[str], None] | None = None,
    cache: Path | None = None,
) -> list[dict[str, Any]]:
    """Fill every case with every filler and score it; one row per (filler, case).

    A filler that cannot run here (FSL not installed) gives one row with a ``note`` and
    no numbers, so the card says why it is missing rather than leaving it out silently.
    ``cache`` (JSON lines) keeps finished rows keyed by case, filler, parameters (a
    model's sha256 among them) and mask, so a rerun only computes what is new.
    """
    from bidsfill.fill import FillError, fill_image

    done: dict[str, dict[str, Any]] = {}
    if cache is not None and cache.exists():
        for line in cache.read_text().splitlines():
            row = json.loads(line)
            done[row.pop("key")] = row
    rows: list[dict[str, Any]] = []
    truth_segs: dict[str, np.ndarray] = {}
    for case in cases:
        truth = case.volume.image
        voxel_ml = float(np.prod(case.volume.zooms)) / 1000
        for spec in fillers:
            key = _case_key(case, spec)
            if key in done:
                rows.append(done[key])
                continue
            row: dict[str, Any] = {"filler": spec.label, "case": case.name}
            row["volume"] = case.name.split("#")[0]
            row["mask_ml"] = float(case.mask.sum()) * voxel_ml
            params = dict(spec.params)
            if spec.contrasts:
                params["extra_images"] = {
                    k: v for k, v in case.volume.extras.items() if k in CONTRAST_CHANNELS
                }
            start = time.perf_counter()
            try:
                result = fill_image(
                    truth,
                    case.mask,
                    method=spec.method,
                    zooms=case.volume.zooms,
                    seed=seed,
                    affine=case.volume.affine,
                    **params,
                )
            except FillError as err:
                rows.append({**row, "note": str(err)})
                continue
            row["seconds"] = time.perf_counter() - start
            filled = result.filled
            row.update(
                {
                    k: v
                    for k, v in image_metrics(truth, filled, case.mask).items()
                    if k in METRICS or k.startswith("band_")
                }
            )
            if tissues:
                truth_dseg = _truth_dseg(case, seed, n_threads, truth_segs, cache)
                filled_seg = _segment(filled, case, seed, n_threads)
                row["segmenter"] = filled_seg.segmenter
                errors = []
                for name, label in TISSUES.items():
                    in_truth, in_fill = truth_dseg == label, filled_seg.dseg == label
                    row[f"dice_{name}"] = dice(in_truth & case.mask, in_fill & case.mask)
                    v_truth, v_fill = float(in_truth.sum()), float(in_fill.sum())
                    row[f"vol_diff_ml_{name}"] = (v_fill - v_truth) * voxel_ml
                    if v_truth:
                        errors.append(100 * abs(v_fill - v_truth) / v_truth)
                row["vol_err_pct"] = float(np.mean(errors)) if errors else math.nan
            rows.append(row)
            if cache is not None:
                with open(cache, "a") as fh:
                    fh.write(json.dumps({"key": key, **row}) + "\n")
            if log is not None:
                log(
                    f"{case.name} {spec.label}: PSNR01 {row['brats_psnr_01']:.2f} "
                    f"SSIM {row['brats_ssim']:.3f} {row['seconds']:.1f} s"
                    + "".join(f" {k} {row[k]:.3f}" for k in row if k.startswith("dice_"))
                )
    return rows


def _mean_metrics(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    entry: dict[str, Any] = {"cases": len(rows)}
    for metric in METRICS:
        vals = [
            float(r[metric])
            for r in rows
            if r.get(metric) is not None and not math.isnan(float(r[metric]))
        ]
        entry[metric] = round(float(np.mean(vals)), 4) if vals else None
        if metric.startswith("dice_"):
            entry[f"{metric}_cases"] = len(vals)
    return entry


def summarise(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per filler: the mean of each metric over cases (NaN Dice, a tissue absent from
    both segmentations of a case, is left out of that tissue's mean) and the case count."""
    by_filler: dict[str, list[dict[str, Any]]] = {}
    notes: dict[str, str] = {}
    for row in rows:
        by_filler.setdefault(row["filler"], [])
        if "note" in row:
            notes[row["filler"]] = row["note"]
        else:
            by_filler[row["filler"]].append(row)
    out = {}
    for label, scored in by_filler.items():
        out[label] = _mean_metrics(scored)
        if label in notes:
            out[label]["note"] = notes[label]
    return out


def per_volume(
    rows: Sequence[dict[str, Any]], metric: str = "brats_psnr_01"
) -> dict[str, dict[str, float]]:
    """Mean of ``metric`` per held-out volume and filler: ``{volume: {filler: mean}}``."""
    out: dict[str, dict[str, list[float]]] = {}
    for row in rows:
        if row.get(metric) is None or "note" in row:
            continue
        out.setdefault(row["volume"], {}).setdefault(row["filler"], []).append(row[metric])
    return {v: {f: round(float(np.mean(x)), 3) for f, x in d.items()} for v, d in out.items()}


def bar_checks(
    summary: dict[str, dict[str, Any]],
    model: str,
    rows: Sequence[dict[str, Any]] | None = None,
) -> dict[str, bool | None]:
    """Issue 12's bar: against ``nonlocal`` +1 dB mean PSNR01, higher BraTS and 3D SSIM,
    in-mask Dice of GM and WM at least as high; against ``nawm`` +2 dB PSNR01 on every
    held-out volume (from ``rows``). None where a number is missing."""

    def cmp(baseline: str, metric: str, margin: float = 0.0, strict: bool = False) -> bool | None:
        if baseline not in summary or model not in summary:
            return None
        a, b = summary[model].get(metric), summary[baseline].get(metric)
        if a is None or b is None:
            return None
        return bool(a > b + margin) if strict else bool(a >= b + margin)

    checks: dict[str, bool | None] = {
        "nonlocal_psnr01_plus_1dB": cmp("nonlocal", "brats_psnr_01", 1.0),
        "nonlocal_ssim_higher": cmp("nonlocal", "brats_ssim", strict=True),
        "nonlocal_ssim3d_higher": cmp("nonlocal", "ssim3d", strict=True),
        "nonlocal_dice_GM_not_lower": cmp("nonlocal", "dice_GM"),
        "nonlocal_dice_WM_not_lower": cmp("nonlocal", "dice_WM"),
    }
    if rows is not None:
        volumes = per_volume(rows)
        ok = [d[model] >= d["nawm"] + 2.0 for d in volumes.values() if model in d and "nawm" in d]
        checks["nawm_psnr01_plus_2dB_every_volume"] = bool(ok) and all(ok) if ok else None
    checks["all"] = all(v is True for v in checks.values())
    return checks


_HEAD = {
    "brats_psnr_01": "PSNR01",
    "brats_psnr": "PSNR",
    "brats_ssim": "SSIM",
    "brats_mse": "MSE",
    "ssim3d": "3D SSIM",
    **{f"dice_{t}": f"Dice {t}" for t in TISSUES},
    "vol_err_pct": "tissue vol. err. %",
    "seconds": "fill s",
}


def markdown_table(summary: dict[str, dict[str, Any]]) -> str:
    """The scorecard as a Markdown table, one row per filler."""
    head = ["filler", "cases", *(_HEAD[m] for m in METRICS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, entry in summary.items():
        if entry.get("note") and not entry["cases"]:
            lines.append(f"| {label} | — | {entry['note']} |" + " |" * (len(head) - 3))
            continue
        cells = [label, str(entry["cases"])]
        for metric in METRICS:
            value = entry.get(metric)
            if value is None:
                cells.append("—")
            elif metric == "brats_mse":
                cells.append(f"{value:.4f}")
            elif metric.startswith(("dice_", "brats_ssim", "ssim3d")):
                cells.append(f"{value:.3f}")
            else:
                cells.append(f"{value:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def held_out_volumes(
    scans: Sequence[Any], held_out: dict[str, str | None], cache_dir: Path | None = None
) -> list[Any]:
    """The held-out scans (:class:`~bidsfill.train.dataset.TrainingScan`) loaded at their
    own resolution: whole scans, or the held-out hemisphere (``{"gd01": "right"}``),
    exactly as ``bidsfill-train`` holds them out."""
    from bidsfill.train.dataset import load_volumes, split_hemisphere

    out = []
    for vol in load_volumes(scans, cache_dir=cache_dir):
        side = held_out[vol.name.split("_")[0].removeprefix("sub-")]
        out.append(split_hemisphere(vol, side) if side else vol)
    return out


def model_params(model: str | Path) -> dict[str, Any]:
    """A model filler's parameters: the weights, the CPU, and what keys its cached rows
    (the weights' sha256 and the card's default sampling: a taper changes the fill, not
    the weights)."""
    sha = hashlib.sha256(Path(model).read_bytes()).hexdigest()[:16]
    params: dict[str, Any] = {"model": str(model), "device": "cpu", "model_sha": sha}
    card = Path(model).with_suffix(".json")
    if card.exists():
        params["card_sampling"] = json.loads(card.read_text()).get("sampling") or {}
    return params


def default_fillers(
    model: str | Path, arch: str, steps: int | None = None, adapt_steps: int = 0
) -> list[FillerSpec]:
    """Every classical filler, then the model with the CLI's default sampler settings
    (and, with ``adapt_steps``, the model adapted to each scan first)."""
    from bidsfill.fill.methods import classical_methods

    params = model_params(model)
    if steps:
        params["steps"] = int(steps)
    fillers = [FillerSpec(m, m) for m in classical_methods()] + [FillerSpec(arch, arch, params)]
    if adapt_steps:
        fillers.append(
            FillerSpec(f"{arch}+adapt{adapt_steps}", arch, {**params, "adapt_steps": adapt_steps})
        )
    return fillers


def load_case_masks(path: str | Path | None) -> dict[str, np.ndarray]:
    """Case masks kept by an earlier scorecard (case name -> boolean mask); {} if none."""
    if path is None or not Path(path).exists():
        return {}
    with np.load(path) as data:
        shapes = json.loads(str(data["shapes"]))
        return {
            name: np.unpackbits(data[f"m{i}"], count=int(np.prod(shape))).reshape(shape) > 0
            for i, (name, shape) in enumerate(shapes.items())
        }


def save_case_masks(cases: Sequence[ValidationCase], path: str | Path) -> None:
    """Keep the cases' masks (bit-packed) beside those already in ``path``."""
    masks = {**load_case_masks(path), **{c.name: np.asarray(c.mask, bool) for c in cases}}
    packed = {f"m{i}": np.packbits(m) for i, m in enumerate(masks.values())}
    shapes = json.dumps({name: list(m.shape) for name, m in masks.items()})
    np.savez_compressed(path, shapes=np.array(shapes), **packed)


def _frozen_mask(
    frozen: Mapping[str, np.ndarray], prefix: str, shape: tuple[int, ...]
) -> tuple[str, np.ndarray] | None:
    for name, mask in frozen.items():
        if name.split(":")[0] == prefix and mask.shape == tuple(shape):
            return name, mask.copy()
    return None


def make_scorecard_cases(
    volumes: Sequence[Any],
    kinds: Sequence[str],
    *,
    real_masks: str | Path | None,
    seed: int = 2026,
    max_real_ml: float = 100.0,
    frozen: Mapping[str, np.ndarray] | None = None,
) -> list[ValidationCase]:
    """One case per (volume, kind): real masks chosen by seed from the folder's index.tsv
    (MS, or stroke of 1-``max_real_ml`` ml) and placed with the volume's MNI registration;
    synthetic kinds drawn in the whole brain by the training mask generator.

    ``frozen`` (from :func:`load_case_masks`): a case found there by scan and kind keeps
    that mask. Registration is not reproducible across machines, and the synthetic
    kinds pick lesion centres by index among white-matter voxels, so without frozen
    masks a fresh machine scores other masks."""
    from bidsfill.lesions import RealMask, place_mni_mask
    from bidsfill.train.masks import TRAINING_VOLUME_ML, MaskGenerator

    index: list[dict[str, str]] = []
    if real_masks is not None:
        with open(Path(real_masks) / "index.tsv", newline="") as fh:
            index = list(csv.DictReader(fh, delimiter="\t"))
    cases = []
    for v, vol in enumerate(volumes):
        own = getattr(vol, "lesion", None)  # a patient's own lesions: never scored
        for k, kind in enumerate(kinds):
            rng = np.random.default_rng([seed, v, k])
            kept = _frozen_mask(frozen or {}, f"{vol.name}#{kind}", vol.image.shape)
            if kept is not None:
                name, mask = kept
            elif kind.startswith("real-"):
                want = kind.removeprefix("real-")
                pool = [
                    r
                    for r in index
                    if r["kind"] == want
                    and (want == "ms" or 1.0 <= float(r["volume_ml"]) <= max_real_ml)
                ]
                if not pool:
                    raise ValueError(f"No real {want} masks for the scorecard in {real_masks}.")
                for _attempt in range(10):  # a patient: not a mask that is its own lesions
                    pick = pool[int(rng.integers(len(pool)))]
                    real = RealMask(Path(real_masks) / pick["file"])
                    mask = place_mni_mask(real, vol.image.shape, vol.affine, vol.to_mni, vol.brain)
                    if own is None or (mask & ~own).sum() >= 0.5 * mask.sum():
                        break
                name = f"{vol.name}#{kind}:{Path(pick['file']).name.split('_mask')[0]}"
            else:
                gen = MaskGenerator({kind: 1.0}, volume_ml=TRAINING_VOLUME_ML)
                mask = gen(vol.wm, vol.zooms, rng, key=vol.name, brain_mask=vol.brain)
                name = f"{vol.name}#{kind}"
            mask &= vol.image > 0
            if own is not None:
                mask &= ~own
            if mask.sum() >= 2:
                cases.append(ValidationCase(name, vol, mask))
    return cases


def kept_scorecard_cases(
    volumes: Sequence[Any],
    kinds: Sequence[str],
    *,
    real_masks: str | Path | None,
    masks_file: str | Path | None,
    seed: int = 2026,
) -> list[ValidationCase]:
    """:func:`make_scorecard_cases` with the masks kept in ``masks_file``: cases it holds
    keep their masks, and a new case's mask is added to it, so every later run on any
    machine scores the same masks."""
    kept = load_case_masks(masks_file)
    cases = make_scorecard_cases(volumes, kinds, real_masks=real_masks, seed=seed, frozen=kept)
    if masks_file is not None and any(c.name not in kept for c in cases):
        save_case_masks(cases, masks_file)
    return cases


def run_scorecard(
    model: str | Path,
    card: ModelCard | dict[str, Any],
    *,
    scans: Sequence[Any],
    held_out: dict[str, str | None],
    kinds: Sequence[str] = CASE_KINDS[:4],
    real_masks: str | Path | None = None,
    seed: int = 2026,
    steps: int | None = None,
    adapt_steps: int = 0,
    cache_dir: Path | None = None,
    n_threads: int = 1,
    tsv: Path | None = None,
    log: Callable[[str], None] | None = LOGGER.info,
    only: Sequence[str] = (),
    masks_file: str | Path | None = None,
) -> dict[str, Any]:
    """Score ``model`` beside every classical filler and write the result into its card.

    ``masks_file`` keeps the case masks: cases it holds are scored on those masks, new
    ones are added to it (see :func:`make_scorecard_cases`).

    ``only`` restricts the fillers (labels) that run, e.g. the classical ones while the
    model still trains: their rows land in the cache and are reused. The card beside ``model`` gets a ``"scorecard"`` entry (the sha256 covers only the
    weights, which are not touched).
    """
    card = ModelCard.coerce(card)
    volumes = held_out_volumes(scans, held_out, cache_dir)
    cases = kept_scorecard_cases(volumes, kinds, real_masks=real_masks, seed=seed,
                                 masks_file=masks_file)  # fmt: skip
    fillers = default_fillers(model, card.architecture, steps, adapt_steps)
    if only:
        fillers = [f for f in fillers if f.label in only]
    start = time.perf_counter()
    rows = score_cases(
        cases,
        fillers,
        n_threads=n_threads,
        log=log,
        cache=None if cache_dir is None else Path(cache_dir) / "scorecard_rows.jsonl",
    )
    summary = summarise(rows)
    label = card.architecture
    by_kind = {
        kind: summarise([r for r in rows if r["case"].split("#")[1].split(":")[0] == kind])
        for kind in kinds
    }
    # Sources relative to the dataset's parent: the card holds on any machine.
    root = Path(scans[0].dataset or Path(scans[0].path).parent) if scans else Path.cwd()
    entry = {
        "held_out": [
            {
                "name": v.name,
                "zooms": [round(z, 3) for z in v.zooms],
                "source": os.path.relpath(v.source, root.parent),
            }
            for v in volumes
        ],
        "cases": [
            {
                "name": c.name,
                "mask_ml": round(float(c.mask.sum()) * float(np.prod(c.volume.zooms)) / 1000, 3),
            }
            for c in cases
        ],  # fmt: skip
        "masks": {
            "kinds": list(kinds),
            "seed": seed,
            "real_masks": Path(real_masks).name if real_masks else "",
        },
        "metrics": "BraTS 2023 inpainting SSIM/PSNR/PSNR01/MSE inside the mask; 3D SSIM; "
        "Dice of GM/WM/CSF inside the mask and whole-brain tissue-volume error (mean |%| "
        "over GM/WM/CSF), truth and fill segmented alike; fill seconds",
        "segmenter": ", ".join(sorted({r["segmenter"] for r in rows if "segmenter" in r})),
        "fillers": summary,
        "by_kind": by_kind,
        "psnr01_per_volume": per_volume(rows),
        "bar": bar_checks(summary, label, rows),
        "seconds": round(time.perf_counter() - start, 1),
    }
    card_path = Path(model).with_suffix(".json")
    ModelCard.load(card_path).replace(scorecard=entry).save(card_path)
    if tsv is not None:
        keys = ["filler", "case", "volume", "mask_ml", *METRICS, "segmenter", "note"]
        with open(tsv, "w", newline="") as fh:
            writer = csv.DictWriter(fh, keys, delimiter="\t", extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
    return {
        "rows": rows,
        "summary": summary,
        "checks": entry["bar"],
        "table": markdown_table(summary),
        "entry": entry,
    }
