"""``bidsfill-simulate IN OUT``: add synthetic lesions to a healthy BIDS dataset.

Writes ``OUT`` as a raw BIDS dataset whose T1w images carry T1-hypointense lesions, with
``anat/<entities>_label-lesion_roi.nii.gz`` masks (fMRIPrep convention), and the
lesion-free images plus the true masks as a derivatives dataset (``OUT/derivatives/truth``
by default) laid out like the demo's truth: ``<entities>_desc-truth_T1w.nii.gz`` and
``<entities>_label-lesion_mask.nii.gz``. Only T1w images are copied. Masks come from the
synthetic generator (:mod:`bidsfill.lesions`) placed with a WM map from the
workflow's segmenter, or from a folder of real masks registered into each brain.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np

from bidsfill import __version__
from bidsfill.cli.usage import ToolParser, fail
from bidsfill.exit_codes import ExitCode

__all__ = ["main", "simulate_dataset"]

PROG = "bidsfill-simulate"


def _build_parser() -> ToolParser:
    parser = ToolParser(
        prog=PROG,
        description="Add synthetic lesions to the T1w images of a healthy BIDS dataset.",
    )
    parser.add_argument("bids_dir", type=Path, help="healthy BIDS dataset (or a demo truth)")
    parser.add_argument("output_dir", type=Path, help="new lesioned BIDS dataset")
    parser.add_argument("--participant-label", nargs="+", default=None, metavar="LABEL")
    parser.add_argument(
        "--truth-dir",
        type=Path,
        default=None,
        help="ground-truth derivatives (default OUT/derivatives/truth)",
    )
    masks = parser.add_argument_group("masks")
    masks.add_argument(
        "--kind", default="ms", choices=["ms", "tumour", "cavity", "random", "mixed"]
    )
    masks.add_argument("--n-lesions", type=int, default=None, help="lesions per image")
    masks.add_argument(
        "--volume-ml",
        type=float,
        nargs=2,
        default=None,
        metavar=("MIN", "MAX"),
        help="volume range of each lesion in ml",
    )
    masks.add_argument(
        "--real-masks",
        type=Path,
        default=None,
        help="folder of real lesion masks to register into each brain",
    )
    masks.add_argument(
        "--transform",
        default="SyN",
        help="ANTs transform for real masks (SyN, Affine, Rigid; default SyN)",
    )
    look = parser.add_argument_group("lesion appearance")
    look.add_argument(
        "--contrast",
        type=float,
        nargs=2,
        default=(0.25, 0.5),
        metavar=("LOW", "HIGH"),
        help="darkening relative to local WM, drawn per lesion (default 0.25 0.5)",
    )
    look.add_argument("--edge-sigma", type=float, default=1.0, help="edge width in mm (default 1)")
    look.add_argument(
        "--heterogeneity",
        type=float,
        default=0.05,
        help="relative texture inside lesions (default 0.05)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--force", action="store_true", help="write into an existing OUT")
    return parser


def _is_inside(path: Path, parent: Path) -> bool:
    try:
        path.resolve().relative_to(parent.resolve())
        return True
    except ValueError:
        return False


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def _save_like(data: np.ndarray, reference, path: Path, dtype=None) -> None:
    """Save raw (unscaled) values with the reference header, so scaling stays the input's."""
    import nibabel as nib

    header = reference.header.copy()
    dtype = np.dtype(dtype or header.get_data_dtype())
    if dtype != header.get_data_dtype():
        header.set_data_dtype(dtype)
        header.set_slope_inter(1.0, 0.0)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        data = np.clip(np.rint(data), info.min, info.max)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(np.asarray(data).astype(dtype), reference.affine, header)
    img.to_filename(str(path))


def simulate_dataset(
    bids_dir: Path,
    output_dir: Path,
    *,
    truth_dir: Path | None = None,
    participants: list[str] | None = None,
    kind: str = "ms",
    n_lesions: int | None = None,
    volume_ml: tuple[float, float] | None = None,
    real_masks: Path | None = None,
    transform: str = "SyN",
    contrast: tuple[float, float] = (0.25, 0.5),
    edge_sigma: float = 1.0,
    heterogeneity: float = 0.05,
    seed: int = 0,
) -> list[Path]:
    """Write the lesioned dataset and its truth; returns the lesioned T1w paths.

    Each image gets its own generator seeded from ``seed`` and its position in the
    sorted file list, so adding a participant does not change the others' lesions.
    """
    import nibabel as nib
    from bids import BIDSLayout

    from bidsfill.evaluate.simulate import apply_lesions
    from bidsfill.lesions import find_real_masks, sample_lesion_mask, warp_real_mask
    from bidsfill.segment import segment_tissues

    truth_dir = truth_dir or output_dir / "derivatives" / "truth"
    layout = BIDSLayout(str(bids_dir), validate=False)
    query = {"suffix": "T1w", "extension": [".nii", ".nii.gz"], "return_type": "filename"}
    if participants:
        query["subject"] = [p.removeprefix("sub-") for p in participants]
    files = sorted(Path(f) for f in layout.get(**query))
    if not files:
        raise FileNotFoundError(f"no T1w images were found in {bids_dir}")
    reals = find_real_masks(real_masks) if real_masks is not None else []
    if real_masks is not None and not reals:
        raise FileNotFoundError(f"no lesion masks were found in {real_masks}")

    written = []
    for index, src in enumerate(files):
        rng = np.random.default_rng([seed, index])
        img = nib.load(str(src))
        raw = np.asarray(img.dataobj.get_unscaled(), dtype=np.float32)
        if raw.ndim != 3:
            raise ValueError(f"{src.name} is not a 3D image")
        zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
        seg = segment_tissues(raw, img.affine, seed=seed)
        wm, brain = seg.probseg["WM"], seg.dseg > 0
        if reals:
            real = reals[int(rng.integers(len(reals)))]
            mask = warp_real_mask(
                real, raw, img.affine, seed=seed, transform=transform, target_brain_mask=brain
            )
        else:
            mask = sample_lesion_mask(
                wm,
                zooms,
                rng,
                kind=kind,
                n_lesions=n_lesions,  # type: ignore[arg-type]
                volume_ml=volume_ml,
                brain_mask=brain,
                csf_prob=seg.probseg["CSF"],
            )
        lesioned = apply_lesions(
            raw,
            mask,
            wm,
            rng,
            contrast=contrast,
            edge_sigma=edge_sigma,
            zooms=zooms,
            heterogeneity=heterogeneity,
        )
        # A demo truth is a derivative (desc-truth); raw file names carry no desc entity.
        stem = re.sub(r"_desc-[a-zA-Z0-9]+", "", src.name.split("_T1w.nii")[0])
        ext = ".nii.gz" if src.name.endswith(".gz") else ".nii"
        rel = src.relative_to(bids_dir).parent / f"{stem}_T1w{ext}"
        out_t1w = output_dir / rel
        _save_like(lesioned, img, out_t1w)
        sidecar = src.with_name(f"{stem}_T1w.json")
        if sidecar.exists():
            shutil.copyfile(sidecar, out_t1w.with_name(sidecar.name))
        _save_like(mask, img, out_t1w.with_name(f"{stem}_label-lesion_roi{ext}"), np.uint8)
        truth_anat = truth_dir / rel.parent
        _save_like(raw, img, truth_anat / f"{stem}_desc-truth_T1w{ext}")
        _save_like(mask, img, truth_anat / f"{stem}_label-lesion_mask{ext}", np.uint8)
        _write_json(
            truth_anat / f"{stem}_label-lesion_mask.json",
            {
                "Type": "Lesion",
                "Sources": [f"bids:raw:{rel.as_posix()}"],
                "LesionKind": "real" if reals else kind,
            },
        )
        written.append(out_t1w)

    _write_dataset_files(bids_dir, output_dir, truth_dir, seed=seed, kind="real" if reals else kind)
    return written


def _write_dataset_files(
    bids_dir: Path, output_dir: Path, truth_dir: Path, *, seed: int, kind: str
) -> None:
    source = {}
    desc_path = bids_dir / "dataset_description.json"
    if desc_path.exists():
        source = json.loads(desc_path.read_text())
    generated = [
        {
            "Name": PROG,
            "Version": __version__,
            "CodeURL": "https://github.com/bidsfill/bidsfill",
            "Description": f"synthetic {kind} lesions, seed {seed}",
        }
    ]
    _write_json(
        output_dir / "dataset_description.json",
        {
            "Name": f"{source.get('Name', bids_dir.name)} with synthetic lesions",
            "BIDSVersion": source.get("BIDSVersion", "1.9.0"),
            "DatasetType": "raw",
            "License": source.get("License", "n/a"),
            "GeneratedBy": generated,
            "SourceDatasets": [{"URL": bids_dir.resolve().as_uri()}],
        },
    )
    (output_dir / "README").write_text(
        f"T1w images of {bids_dir.name} with synthetic lesions written by {PROG}.\n"
        "Lesion masks: anat/*_label-lesion_roi.nii.gz; lesion-free images: "
        f"{truth_dir}.\n"
    )
    (output_dir / ".bidsignore").write_text("*_roi.nii.gz\n*_roi.nii\nderivatives/\n")
    for name in ("participants.tsv", "participants.json"):
        if (bids_dir / name).exists():
            shutil.copyfile(bids_dir / name, output_dir / name)
    if not (output_dir / "participants.tsv").exists():
        subjects = sorted(p.name for p in output_dir.glob("sub-*") if p.is_dir())
        (output_dir / "participants.tsv").write_text(
            "participant_id\n" + "\n".join(subjects) + "\n"
        )
    _write_json(
        truth_dir / "dataset_description.json",
        {
            "Name": "Ground truth of the synthetic lesions",
            "BIDSVersion": source.get("BIDSVersion", "1.9.0"),
            "DatasetType": "derivative",
            "GeneratedBy": generated,
            "SourceDatasets": [{"URL": bids_dir.resolve().as_uri()}],
        },
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``bidsfill-simulate``; returns the exit code."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    bids_dir, out = args.bids_dir, args.output_dir
    if not bids_dir.is_dir():
        return fail(PROG, f"The input dataset {bids_dir} does not exist.", ExitCode.MISSING_INPUT)
    if not (bids_dir / "dataset_description.json").exists():
        return fail(PROG, f"{bids_dir} has no dataset_description.json.", ExitCode.MISSING_INPUT)
    if _is_inside(out, bids_dir) or _is_inside(bids_dir, out):
        return fail(
            PROG, "The output and input datasets must not contain each other.", ExitCode.USAGE
        )
    if out.exists() and any(out.iterdir()) and not args.force:
        return fail(PROG, f"{out} is not empty; pass --force to write into it.", ExitCode.USAGE)
    if args.real_masks is not None and not args.real_masks.is_dir():
        return fail(
            PROG, f"The mask folder {args.real_masks} does not exist.", ExitCode.MISSING_INPUT
        )
    low, high = args.contrast
    if not 0 <= low <= high <= 1:
        return fail(PROG, "--contrast needs 0 <= LOW <= HIGH <= 1.", ExitCode.USAGE)
    if args.volume_ml is not None and not 0 < args.volume_ml[0] <= args.volume_ml[1]:
        return fail(PROG, "--volume-ml needs 0 < MIN <= MAX.", ExitCode.USAGE)
    if args.n_lesions is not None and args.n_lesions < 1:
        return fail(PROG, "--n-lesions must be at least 1.", ExitCode.USAGE)
    try:
        written = simulate_dataset(
            bids_dir,
            out,
            truth_dir=args.truth_dir,
            participants=args.participant_label,
            kind=args.kind,
            n_lesions=args.n_lesions,
            volume_ml=tuple(args.volume_ml) if args.volume_ml else None,
            real_masks=args.real_masks,
            transform=args.transform,
            contrast=(low, high),
            edge_sigma=args.edge_sigma,
            heterogeneity=args.heterogeneity,
            seed=args.seed,
        )
    except FileNotFoundError as err:
        return fail(PROG, f"{err}.", ExitCode.MISSING_INPUT)
    except (ValueError, OSError) as err:
        return fail(PROG, f"{err}.", ExitCode.FAILURE)
    print(f"Wrote {len(written)} lesioned T1w image(s) to {out}")
    return int(ExitCode.SUCCESS)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
