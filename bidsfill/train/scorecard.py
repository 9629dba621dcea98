"""The model card's scorecard: a trained model beside every classical filler, on held-out data.

Issue 4's bar for the shipped model is measured here: on healthy scans it never saw, with
lesion masks drawn by the training generator under a seed of their own, every filler
fills the same masks through :func:`bidsfill.fill.fill_image` (the code behind the CLI),
and each fill is scored against the healthy truth with masked PSNR and SSIM (the
definitions validation uses during training) and with the in-mask Dice of GM, WM and
CSF, segmenting the truth and the filled image alike (same segmenter, brain mask and
seed). The means go into the model card under ``"scorecard"``.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bidsfill.evaluate.metrics import TISSUES, dice
from bidsfill.train.validation import ValidationCase, masked_psnr, masked_ssim

__all__ = [
    "METRICS",
    "FillerSpec",
    "bar_checks",
    "default_fillers",
    "held_out_volumes",
    "markdown_table",
    "run_scorecard",
    "score_cases",
    "summarise",
]

LOGGER = logging.getLogger("bidsfill.train")

#: Scorecard columns, in table order; higher is better for all of them.
METRICS = ("psnr", "ssim", *(f"dice_{t}" for t in TISSUES))


@dataclass(frozen=True)
class FillerSpec:
    """A row of the scorecard: a ``fill_image`` method and its parameters, under a label."""

    label: str
    method: str
    params: dict[str, Any] = field(default_factory=dict)


def _segment(image: np.ndarray, case: ValidationCase, seed: int, n_threads: int) -> Any:
    from bidsfill.segment import segment_tissues

    return segment_tissues(
        image.astype(np.float32),
        case.volume.affine,
        brain_mask=case.volume.brain,
        seed=seed,
        n_threads=n_threads,
    )


def score_cases(
    cases: Sequence[ValidationCase],
    fillers: Sequence[FillerSpec],
    *,
    tissues: bool = True,
    seed: int = 0,
    n_threads: int = 1,
    log: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Fill every case with every filler and score it; one row per (filler, case).

    A filler that cannot run here (FSL not installed) gives one row with a ``note`` and
    no numbers, so the card says why it is missing rather than leaving it out silently.
    """
    from bidsfill.fill import FillError, fill_image

    rows: list[dict[str, Any]] = []
    for case in cases:
        truth = case.volume.image
        truth_seg = _segment(truth, case, seed, n_threads) if tissues else None
        for spec in fillers:
            row: dict[str, Any] = {"filler": spec.label, "case": case.name}
            row["mask_ml"] = float(case.mask.sum()) * float(np.prod(case.volume.zooms)) / 1000
            start = time.perf_counter()
            try:
                result = fill_image(
                    truth,
                    case.mask,
                    method=spec.method,
                    zooms=case.volume.zooms,
                    seed=seed,
                    affine=case.volume.affine,
                    **spec.params,
                )
            except FillError as err:
                rows.append({**row, "note": str(err)})
                continue
            row["seconds"] = time.perf_counter() - start
            filled = result.filled
            row["psnr"] = masked_psnr(truth, filled, case.mask)
            row["ssim"] = masked_ssim(truth, filled, case.mask)
            if truth_seg is not None:
                filled_seg = _segment(filled, case, seed, n_threads)
                row["segmenter"] = filled_seg.segmenter
                for name, label in TISSUES.items():
                    row[f"dice_{name}"] = dice(
                        (truth_seg.dseg == label) & case.mask,
                        (filled_seg.dseg == label) & case.mask,
                    )
            rows.append(row)
            if log is not None:
                log(
                    f"{case.name} {spec.label}: PSNR {row['psnr']:.2f} SSIM {row['ssim']:.3f}"
                    + "".join(f" {k} {row[k]:.3f}" for k in row if k.startswith("dice_"))
                )
    return rows


def summarise(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per filler: the mean of each metric over cases (NaN Dice, a tissue absent from
    both segmentations of a case, is left out of that tissue's mean) and the case count."""
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry = out.setdefault(row["filler"], {"cases": 0, "_values": {}})
        if "note" in row:
            entry["note"] = row["note"]
            continue
        entry["cases"] += 1
        for metric in METRICS:
            value = row.get(metric, math.nan)
            if value is not None and not math.isnan(value):
                entry["_values"].setdefault(metric, []).append(float(value))
    for entry in out.values():
        values = entry.pop("_values")
        for metric in METRICS:
            vals = values.get(metric, [])
            entry[metric] = round(float(np.mean(vals)), 4) if vals else None
            if metric.startswith("dice_"):
                entry[f"{metric}_cases"] = len(vals)
    return out


def bar_checks(
    summary: dict[str, dict[str, Any]], model: str, baseline: str = "nawm", margin_db: float = 2.0
) -> dict[str, bool | None]:
    """Issue 4's bar: PSNR at least ``margin_db`` above the baseline, higher SSIM, higher
    Dice of every tissue. None where a number is missing."""

    def better(metric: str, margin: float = 0.0) -> bool | None:
        a, b = summary[model].get(metric), summary[baseline].get(metric)
        return None if a is None or b is None else bool(a >= b + margin if margin else a > b)

    checks: dict[str, bool | None] = {f"psnr_plus_{margin_db:g}dB": better("psnr", margin_db)}
    for metric in METRICS[1:]:
        checks[f"{metric}_higher"] = better(metric)
    checks["all"] = all(v is True for v in checks.values())
    return checks


def markdown_table(summary: dict[str, dict[str, Any]]) -> str:
    """The scorecard as a Markdown table, one row per filler."""
    head = ["filler", "cases", "masked PSNR (dB)", "masked SSIM"]
    head += [f"Dice {t} in mask" for t in TISSUES]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, entry in summary.items():
        if entry.get("note") and not entry["cases"]:
            lines.append(f"| {label} | — | {entry['note']} |" + " |" * (len(head) - 3))
            continue
        cells = [label, str(entry["cases"])]
        for metric in METRICS:
            value = entry.get(metric)
            fmt = "{:.2f}" if metric == "psnr" else "{:.3f}"
            cells.append("—" if value is None else fmt.format(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def held_out_volumes(
    bids_dir: str | Path, held_out: dict[str, str | None], cache_dir: Path | None = None
) -> list[Any]:
    """The held-out volumes of ``bids-dir``: whole scans, or the held-out hemisphere
    (``{"gd01": "right"}``), exactly as ``bidsfill-train`` holds them out."""
    from bidsfill.train.dataset import bids_volumes, split_hemisphere

    out = []
    for vol in bids_volumes(bids_dir, sorted(held_out), cache_dir=cache_dir):
        side = held_out[vol.name.split("_")[0].removeprefix("sub-")]
        out.append(split_hemisphere(vol, side) if side else vol)
    return out


def default_fillers(model: str | Path, arch: str, steps: int | None = None) -> list[FillerSpec]:
    """Every classical filler, then the model with the CLI's default sampler settings."""
    from bidsfill.fill.base import CLASSICAL_METHODS

    params: dict[str, Any] = {"model": str(model), "device": "cpu"}
    if steps:
        params["steps"] = int(steps)
    return [FillerSpec(m, m) for m in CLASSICAL_METHODS] + [FillerSpec(arch, arch, params)]


def run_scorecard(
    model: str | Path,
    card: dict[str, Any],
    *,
    bids_dir: str | Path,
    held_out: dict[str, str | None],
    kinds: dict[str, float],
    region: tuple[int, int, int] = (96, 96, 32),
    per_volume: int = 4,
    seed: int = 2026,
    steps: int | None = None,
    cache_dir: Path | None = None,
    n_threads: int = 1,
    tsv: Path | None = None,
    log: Callable[[str], None] | None = LOGGER.info,
) -> dict[str, Any]:
    """Score ``model`` beside every classical filler and write the result into its card.

    Masks come from the training mask generator (``kinds``) drawn in ``region``-sized
    boxes of the held-out volumes with ``seed``, as validation during training draws
    them, so they are of the kinds the model is meant for but were never seen by it.
    The card beside ``model`` gets a ``"scorecard"`` entry (the sha256 covers only the
    weights, which are not touched).
    """
    from bidsfill.train.dataset import InpaintingDataset
    from bidsfill.train.masks import TRAINING_VOLUME_ML, MaskGenerator
    from bidsfill.train.validation import make_cases

    masks = MaskGenerator(kinds, volume_ml=TRAINING_VOLUME_ML)
    volumes = held_out_volumes(bids_dir, held_out, cache_dir)

    def factory(vols: list[Any], case_seed: int) -> InpaintingDataset:
        return InpaintingDataset(
            vols, arch=card["architecture"], config=card["config"],
            preprocessing=card["preprocessing"], masks=masks, region=region, seed=case_seed,
        )  # fmt: skip

    cases = make_cases(volumes, factory, per_volume=per_volume, seed=seed)
    fillers = default_fillers(model, card["architecture"], steps)
    start = time.perf_counter()
    rows = score_cases(cases, fillers, n_threads=n_threads, log=log)
    summary = summarise(rows)
    checks = bar_checks(summary, card["architecture"])
    table = markdown_table(summary)
    entry = {
        "held_out": [v.name for v in volumes],
        "cases": [
            {
                "name": c.name,
                "mask_ml": round(float(c.mask.sum()) * float(np.prod(c.volume.zooms)) / 1000, 3),
            }
            for c in cases
        ],  # fmt: skip
        "masks": {"kinds": kinds, "region": list(region), "seed": seed},
        "metrics": "masked PSNR (peak: truth's 99.5th brain percentile) and 3D SSIM; Dice of "
        "GM/WM/CSF inside the mask, truth and fill segmented alike",
        "segmenter": ", ".join(sorted({r["segmenter"] for r in rows if "segmenter" in r})),
        "fillers": summary,
        "bar_vs_nawm": checks,
        "seconds": round(time.perf_counter() - start, 1),
    }
    card_path = Path(model).with_suffix(".json")
    full = json.loads(card_path.read_text())
    full["scorecard"] = entry
    card_path.write_text(json.dumps(full, indent=2) + "\n")
    if tsv is not None:
        keys = ["filler", "case", "mask_ml", "seconds", *METRICS, "segmenter", "note"]
        with open(tsv, "w", newline="") as fh:
            writer = csv.DictWriter(fh, keys, delimiter="\t", extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
    return {"rows": rows, "summary": summary, "checks": checks, "table": table, "entry": entry}
