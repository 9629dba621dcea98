"""``bidsfill-evaluate``: score filled images against their lesion-free truth.

Single files::

    bidsfill-evaluate --truth T.nii.gz --filled F.nii.gz --mask M.nii.gz --json OUT.json

Whole datasets (a truth dataset as written by ``bidsfill-demo``/``bidsfill-simulate`` and
a bidsfill output folder)::

    bidsfill-evaluate --truth DIR/truth --filled OUT --tsv scores.tsv --json summary.json

In dataset mode each ``<entities>_desc-truth_T1w`` is matched with
``<entities>_desc-filled_T1w`` at the same relative path; the mask is the true one
(``<entities>_label-lesion_mask`` in the truth) unless ``--mask-source filled`` picks the
mask bidsfill used.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from bidsfill.cli.usage import ToolParser, fail
from bidsfill.exit_codes import ExitCode

__all__ = ["evaluate_dataset", "evaluate_files", "main"]

PROG = "bidsfill-evaluate"


def _build_parser() -> ToolParser:
    parser = ToolParser(prog=PROG, description=__doc__.split("\n\n")[0].replace("``", ""))
    parser.add_argument(
        "--truth", type=Path, required=True, help="lesion-free image, or a truth dataset (folder)"
    )
    parser.add_argument(
        "--filled", type=Path, required=True, help="filled image, or a bidsfill output folder"
    )
    parser.add_argument("--mask", type=Path, default=None, help="lesion mask (file mode)")
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        help="metrics (file mode) or summary (dataset mode) as JSON",
    )
    parser.add_argument("--tsv", type=Path, default=None, help="one row per image (dataset mode)")
    parser.add_argument(
        "--mask-source",
        choices=["truth", "filled"],
        default="truth",
        help="dataset mode: the true mask or the one bidsfill used",
    )
    parser.add_argument(
        "--no-tissues",
        action="store_true",
        help="skip the segmentation-based metrics (Dice, volumes)",
    )
    parser.add_argument("--band-width", type=int, default=2, help="edge band half-width (voxels)")
    parser.add_argument("--seed", type=int, default=0, help="segmentation seed (default 0)")
    return parser


def _load(path: Path, what: str):
    import nibabel as nib

    try:
        img = nib.load(str(path))
        data = np.asarray(img.get_fdata(dtype=np.float32))
    except Exception as err:  # nibabel raises many types for unreadable files
        raise ValueError(f"the {what} {path} could not be read ({type(err).__name__})") from None
    if data.ndim != 3:
        raise ValueError(f"the {what} {path} is not a 3D image")
    return img, data


def evaluate_files(
    truth: Path,
    filled: Path,
    mask: Path,
    *,
    tissues: bool = True,
    seed: int = 0,
    band_width: int = 2,
) -> dict[str, Any]:
    """Metrics of one filled image (see :func:`bidsfill.evaluate.metrics.evaluate_fill`)."""
    from bidsfill.evaluate.metrics import evaluate_fill

    truth_img, truth_data = _load(truth, "truth image")
    _, filled_data = _load(filled, "filled image")
    _, mask_data = _load(mask, "mask")
    if not (truth_data.shape == filled_data.shape == mask_data.shape):
        raise ValueError("the truth, filled image and mask have different shapes")
    return evaluate_fill(
        truth_data,
        filled_data,
        mask_data > 0.5,
        truth_img.affine,
        tissues=tissues,
        seed=seed,
        band_width=band_width,
    )


def _pairs(truth_dir: Path, filled_dir: Path, mask_source: str):
    for truth in sorted(truth_dir.rglob("*_desc-truth_T1w.nii*")):
        ext = ".nii.gz" if truth.name.endswith(".gz") else ".nii"
        stem = truth.name.split("_desc-truth_T1w")[0]
        rel = truth.parent.relative_to(truth_dir)
        filled = filled_dir / rel / f"{stem}_desc-filled_T1w{ext}"
        source = truth_dir if mask_source == "truth" else filled_dir
        mask = source / rel / f"{stem}_label-lesion_mask{ext}"
        yield stem, truth, filled, mask


def _entities(stem: str) -> dict[str, str]:
    return dict(part.split("-", 1) for part in stem.split("_") if "-" in part)


def evaluate_dataset(
    truth_dir: Path,
    filled_dir: Path,
    *,
    mask_source: str = "truth",
    tissues: bool = True,
    seed: int = 0,
    band_width: int = 2,
) -> tuple[list[dict[str, Any]], list[str]]:
    """One row of metrics per matched image, and warnings for images left out."""
    rows, warnings = [], []
    for stem, truth, filled, mask in _pairs(truth_dir, filled_dir, mask_source):
        if not filled.exists():
            warnings.append(f"{stem}: no filled image ({filled.name}) in {filled_dir}")
            continue
        if not mask.exists():
            warnings.append(f"{stem}: no mask {mask.name}")
            continue
        ents = _entities(stem)
        row: dict[str, Any] = {
            "subject": ents.get("sub", "n/a"),
            "session": ents.get("ses", "n/a"),
            "image": stem,
        }
        row.update(
            evaluate_files(truth, filled, mask, tissues=tissues, seed=seed, band_width=band_width)
        )
        rows.append(row)
    return rows, warnings


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean, standard deviation and count of every numeric metric (NaN and inf skipped)."""
    summary: dict[str, Any] = {"n_images": len(rows)}
    keys = [k for k in rows[0] if isinstance(rows[0][k], (int, float))] if rows else []
    for key in keys:
        values = np.array([r[key] for r in rows], dtype=np.float64)
        finite = values[np.isfinite(values)]
        summary[key] = {
            "mean": float(finite.mean()) if finite.size else None,
            "sd": float(finite.std(ddof=1)) if finite.size > 1 else None,
            "n": int(finite.size),
        }
    return summary


def _jsonable(value: Any) -> Any:
    # JSON has no inf/NaN: inf becomes the string "inf" (a perfect PSNR), NaN null.
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def _tsv_value(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else repr(value)
    return str(value)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_jsonable(data), indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``bidsfill-evaluate``; returns the exit code."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    for path, what in ((args.truth, "truth"), (args.filled, "filled input")):
        if not path.exists():
            return fail(PROG, f"The {what} {path} does not exist.", ExitCode.MISSING_INPUT)
    dataset_mode = args.truth.is_dir()
    if dataset_mode != args.filled.is_dir():
        return fail(
            PROG, "--truth and --filled must both be files or both be folders.", ExitCode.USAGE
        )
    tissues = not args.no_tissues
    try:
        if not dataset_mode:
            if args.mask is None:
                return fail(
                    PROG, "--mask is required when evaluating single files.", ExitCode.USAGE
                )
            if not args.mask.exists():
                return fail(PROG, f"The mask {args.mask} does not exist.", ExitCode.MISSING_INPUT)
            result = evaluate_files(
                args.truth,
                args.filled,
                args.mask,
                tissues=tissues,
                seed=args.seed,
                band_width=args.band_width,
            )
            if args.json is not None:
                _write_json(args.json, result)
            print(json.dumps(_jsonable(result), indent=2))
            return int(ExitCode.SUCCESS)
        if args.tsv is None and args.json is None:
            return fail(PROG, "Dataset mode needs --tsv and/or --json to write to.", ExitCode.USAGE)
        rows, warnings = evaluate_dataset(
            args.truth,
            args.filled,
            mask_source=args.mask_source,
            tissues=tissues,
            seed=args.seed,
            band_width=args.band_width,
        )
    except ValueError as err:
        return fail(PROG, f"{str(err)[0].upper()}{str(err)[1:]}.", ExitCode.FAILURE)
    for warning in warnings:
        print(f"{PROG}: warning: {warning}.", file=sys.stderr)
    if not rows:
        return fail(
            PROG,
            f"No filled image in {args.filled} matched a truth image in {args.truth}.",
            ExitCode.MISSING_INPUT,
        )
    if args.tsv is not None:
        args.tsv.parent.mkdir(parents=True, exist_ok=True)
        columns = list(dict.fromkeys(k for row in rows for k in row))
        with args.tsv.open("w", newline="") as handle:
            writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
            writer.writerow(columns)
            for row in rows:
                writer.writerow([_tsv_value(row.get(c, math.nan)) for c in columns])
    summary = summarise(rows)
    if args.json is not None:
        _write_json(args.json, summary)
    print(f"Evaluated {len(rows)} image(s).")
    return int(ExitCode.SUCCESS)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
