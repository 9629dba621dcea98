"""``bidsfill-demo DIR``: write the demo BIDS dataset and its ground truth."""

from __future__ import annotations

import sys
from pathlib import Path

from bidsfill.cli.usage import ToolParser, fail
from bidsfill.exit_codes import ExitCode

__all__ = ["main"]


def _build_parser() -> ToolParser:
    parser = ToolParser(
        prog="bidsfill-demo",
        description=(
            "Write a small BIDS dataset with synthetic MS-like lesions, built from the "
            "MNI152 2009 template shipped with nilearn (no download): DIR/bids (raw data "
            "and derivatives/lesions) and DIR/truth (lesion-free images, true masks)."
        ),
    )
    parser.add_argument("out_dir", type=Path, metavar="DIR", help="folder to write into")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--microscopy", action="store_true",
                        help="write a BIDS-microscopy dataset (two real histology fields with "
                        "artefact masks) instead of the MRI demo")  # fmt: skip
    parser.add_argument(
        "--small", action="store_true", help="~4 mm voxels instead of 2 mm, for fast tests"
    )
    parser.add_argument(
        "--force", action="store_true", help="overwrite DIR/bids and DIR/truth if they exist"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``bidsfill-demo``; returns the exit code."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    out: Path = args.out_dir
    if out.exists() and not out.is_dir():
        return fail(parser.prog, f"{out} exists and is not a folder.", ExitCode.USAGE)
    existing = [p for p in (out / "bids", out / "truth") if p.exists()]
    if existing and not args.force:
        return fail(
            parser.prog, f"{existing[0]} already exists; remove it or pass --force.", ExitCode.USAGE
        )
    if existing:
        import shutil

        for path in existing:
            shutil.rmtree(path)

    if args.microscopy:
        from bidsfill.microscopy.demo import make_microscopy_demo

        try:
            bids = make_microscopy_demo(out, seed=args.seed)
        except FileNotFoundError as err:
            return fail(parser.prog, str(err), ExitCode.MISSING_INPUT)
        print(f"Demo BIDS-microscopy dataset: {bids}")
        print(f"Artefact masks (derivatives): {bids / 'derivatives' / 'artefacts'}")
        return int(ExitCode.SUCCESS)
    from bidsfill.demo import make_demo_dataset

    paths = make_demo_dataset(out, seed=args.seed, downsample=2 if args.small else 1)
    print(f"Demo BIDS dataset: {paths.bids}")
    print(f"Lesion masks (derivatives): {paths.lesions}")
    print(f"Ground truth: {paths.truth}")
    return int(ExitCode.SUCCESS)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
