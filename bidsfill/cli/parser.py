"""The ``bidsfill`` command line, in fMRIPrep's spelling.

Validators are small functions bound to the parser and passed as ``type=``, so a bad
value ends in one ``parser.error`` sentence with exit code 64.
"""

from __future__ import annotations

import argparse
import json
from functools import partial
from pathlib import Path

from bidsfill import __version__
from bidsfill.cli.usage import ToolParser

__all__ = ["build_parser", "ANALYSIS_LEVELS"]

ANALYSIS_LEVELS = ("participant", "group")
MAX_DILATE = 10
"""Largest ``--dilate``: 10 voxels already adds 1 cm on every side of a lesion at 1 mm."""
LARGE_MASK_FRACTION = 0.2
"""A fill larger than this share of the T1w's foreground needs ``--allow-large-masks``."""


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show a default only where it says something.

    Not for flags (``store_true``, ``-v``), not for a ``None`` or empty default (the help
    says what happens then), and not where the help already names its default.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            action.nargs == 0
            or action.default in (None, [], argparse.SUPPRESS)
            or "default" in text
        ):
            return text
        return super()._get_help_string(action)


def _path_exists(value: str, parser: argparse.ArgumentParser) -> Path:
    path = Path(value).expanduser()
    if not path.exists():
        raise parser.error(f"Path does not exist: {value}.")
    return path.resolve()


def _positive_int(value: str, parser: argparse.ArgumentParser) -> int:
    try:
        number = int(value)
    except ValueError:
        raise parser.error(f"{value!r} is not an integer.") from None
    if number < 1:
        raise parser.error(f"{value!r} must be at least 1.")
    return number


def _nonneg_int(value: str, parser: argparse.ArgumentParser) -> int:
    try:
        number = int(value)
    except ValueError:
        raise parser.error(f"{value!r} is not an integer.") from None
    if number < 0:
        raise parser.error(f"{value!r} must not be negative.")
    return number


def _nonneg_float(value: str, parser: argparse.ArgumentParser) -> float:
    try:
        number = float(value)
    except ValueError:
        raise parser.error(f"{value!r} is not a number.") from None
    if not 0 <= number < float("inf"):
        raise parser.error(f"{value!r} must be a finite number, at least 0.")
    return number


def _dilation(value: str, parser: argparse.ArgumentParser) -> int:
    number = _nonneg_int(value, parser)
    if number > MAX_DILATE:
        raise parser.error(
            f"--dilate {value} is too large: at most {MAX_DILATE} voxels (a larger dilation "
            "fills healthy tissue, not lesions)."
        )
    return number


def _threshold(value: str, parser: argparse.ArgumentParser) -> float:
    try:
        number = float(value)
    except ValueError:
        raise parser.error(f"--mask-threshold {value!r} is not a number.") from None
    if not number > 0 or number == float("inf"):
        raise parser.error(f"--mask-threshold {value!r} must be a positive number.")
    return number


def _weights(value: str, parser: argparse.ArgumentParser) -> Path:
    """Only safetensors: refuse a pickled checkpoint by its own name, before anything else."""
    if not value.endswith(".safetensors"):
        raise parser.error(
            f"--model {value} is not a .safetensors file; bidsfill loads weights only from "
            ".safetensors files with their .json model card, never from pickled checkpoints "
            "(.pt, .pth, .ckpt)."
        )
    return _path_exists(value, parser)


def _memory_gb(value: str, parser: argparse.ArgumentParser) -> float:
    """Accept ``8``, ``8G``, ``8GB``, ``8000M``, as fMRIPrep does."""
    text = value.strip().upper().rstrip("B")
    scale = 1.0
    if text.endswith("G"):
        text = text[:-1]
    elif text.endswith("M"):
        text, scale = text[:-1], 1 / 1024
    elif text.endswith("T"):
        text, scale = text[:-1], 1024.0
    try:
        return float(text) * scale
    except ValueError:
        raise parser.error(f"Cannot read {value!r} as an amount of memory.") from None


def _bids_filter(value: str, parser: argparse.ArgumentParser) -> Path:
    path = _path_exists(value, parser)
    try:
        json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise parser.error(f"The BIDS filter file {value} is not valid JSON ({err}).") from None
    return path


class _ListModels(argparse.Action):
    """``--list-models``: print and exit before the positional arguments are needed."""

    def __init__(self, option_strings, dest, **kwargs) -> None:  # noqa: ANN001
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:  # noqa: ANN001
        from bidsfill.cli.models import list_models

        print(list_models())  # on stdout, as --version and --help are
        parser.exit(0)


def _label(value: str) -> str:
    return value.removeprefix("sub-").removeprefix("ses-")


def build_parser() -> argparse.ArgumentParser:
    from bidsfill.fill.base import method_names  # no torch: --help and --version stay fast

    parser = ToolParser(
        prog="bidsfill",
        description="bidsfill: fill brain lesions in T1w images of a BIDS dataset with "
        "healthy-looking tissue and write a BIDS-Derivatives dataset.",
        formatter_class=_HelpFormatter,
    )
    exists = partial(_path_exists, parser=parser)
    positive = partial(_positive_int, parser=parser)
    nonneg = partial(_nonneg_int, parser=parser)
    nonneg_float = partial(_nonneg_float, parser=parser)

    parser.add_argument("bids_dir", type=exists, help="the input BIDS dataset (read only)")
    parser.add_argument("output_dir", type=Path, help="where the derivatives dataset is written")
    parser.add_argument(
        "analysis_level",
        help="'participant' fills each subject; 'group' summarises the output dataset",
    )
    parser.add_argument("--version", action="version", version=f"bidsfill {__version__}")
    parser.add_argument("--list-models", action=_ListModels,
                        help="describe each installed diffusion model (method, architecture, "
                             "training data, held-out subjects, scorecard, size, sha256) and "
                             "exit")  # fmt: skip

    g_bids = parser.add_argument_group("Options for filtering the BIDS dataset")
    g_bids.add_argument(
        "--participant-label", "--participant_label", nargs="+", type=_label, default=[],
        metavar="LABEL", help="subjects to process (the 'sub-' prefix is optional)",
    )  # fmt: skip
    g_bids.add_argument(
        "--session-label", "--session_label", nargs="+", type=_label, default=[],
        metavar="LABEL", help="sessions to process (the 'ses-' prefix is optional)",
    )  # fmt: skip
    g_bids.add_argument(
        "--bids-filter-file", type=partial(_bids_filter, parser=parser), metavar="FILE",
        help="JSON with pybids filters for the 't1w', 'roi', 'flair' and 't2w' queries",
    )  # fmt: skip
    g_bids.add_argument(
        "--derivatives", nargs="+", type=exists, default=[], metavar="PATH",
        help="derivatives datasets holding <entities>_label-lesion_mask or _desc-lesion_mask",
    )  # fmt: skip
    g_bids.add_argument(
        "--skip-bids-validation", "--skip_bids_validation", action="store_true",
        help="do not validate the input dataset",
    )  # fmt: skip

    g_fill = parser.add_argument_group("Options for filling")
    g_fill.add_argument(
        "--method", default="pseudo3d", choices=method_names(),
        help="fill method: classical (nawm, ring, nonlocal, fsl) or diffusion",
    )  # fmt: skip
    g_fill.add_argument("--seed", type=nonneg, default=0, help="seed of every random draw")
    g_fill.add_argument(
        "--dilate", type=partial(_dilation, parser=parser), default=0, metavar="N",
        help=f"grow the lesion mask by N voxels before filling (at most {MAX_DILATE})",
    )  # fmt: skip
    g_fill.add_argument(
        "--mask-threshold", type=partial(_threshold, parser=parser), default=None, metavar="T",
        help="binarise a non-binary lesion mask (a probability or 0..255 map): voxels >= T "
             "are lesion; without it such a mask is refused",
    )  # fmt: skip
    g_fill.add_argument(
        "--allow-large-masks", action="store_true",
        help=f"fill a mask (after --dilate) that covers more than {LARGE_MASK_FRACTION * 100:.0f}%% "
             "of the T1w's foreground (the head, or the brain of a skull-stripped scan), "
             "which is refused otherwise",
    )  # fmt: skip
    g_fill.add_argument("--sampler", choices=("ddim", "ddpm"), default="ddim",
                        help="diffusion sampler")  # fmt: skip
    g_fill.add_argument("--steps", type=positive, default=None,
                        help="diffusion sampling steps (default: the model's)")  # fmt: skip
    g_fill.add_argument("--eta", type=float, default=0.0, help="DDIM eta")
    g_fill.add_argument("--n-samples", type=positive, default=None, metavar="N",
                        help="average N diffusion fills and write their standard deviation "
                             "(default: the model's)")  # fmt: skip
    g_fill.add_argument("--adapt-steps", type=nonneg, default=0, metavar="N",
                        help="fine-tune a copy of the model for N steps on this scan's own "
                             "healthy tissue (lesion shapes moved elsewhere in the brain) "
                             "before filling; deterministic for a given --seed (default 0)")  # fmt: skip
    g_fill.add_argument("--model", type=partial(_weights, parser=parser), default=None,
                        metavar="FILE", help="diffusion weights (.safetensors with its .json "
                        "card); only with a diffusion --method")  # fmt: skip
    g_fill.add_argument("--device", default="auto", metavar="DEVICE",
                        help="auto, cpu, cuda or cuda:N")  # fmt: skip
    g_fill.add_argument("--feather", action="store_true",
                        help="blend the first voxel layer inside the mask toward its neighbours")  # fmt: skip
    g_fill.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                        help="fill every other sample of the mean from the left-right mirrored "
                             "crop and mirror it back (default: the model card's)")  # fmt: skip
    g_fill.add_argument("--edge-taper", dest="edge_taper_mm", type=nonneg_float, default=None,
                        metavar="MM",
                        help="a residual model's correction rises linearly from the mask edge "
                             "to full strength at this depth; 0 turns it off (default: the "
                             "model card's)")  # fmt: skip
    g_fill.add_argument("--shift", dest="shift_voxels", type=nonneg, default=None,
                        metavar="VOXELS",
                        help="fill every sample after the first from the crop moved in-plane "
                             "by this many model voxels (test-time augmentation); 0 turns it "
                             "off (default: the model card's)")  # fmt: skip
    g_fill.add_argument("--antithetic", action=argparse.BooleanOptionalAction, default=None,
                        help="start every second sample of the mean from the negated noise of "
                             "the one before, so noise-driven errors cancel in the mean "
                             "(default: the model card's)")  # fmt: skip
    g_fill.add_argument("--jump-length", type=positive, default=5, metavar="J",
                        help="RePaint: steps jumped back before resampling")  # fmt: skip
    g_fill.add_argument("--jump-n-sample", type=positive, default=2, metavar="R",
                        help="RePaint: times each jump is resampled")  # fmt: skip

    g_perf = parser.add_argument_group("Options to handle performance")
    g_perf.add_argument("--nprocs", "--n-cpus", "--nthreads", type=positive, default=None,
                        help="processes Nipype may run at once (default: the CPUs this process may "
                             "use)")  # fmt: skip
    g_perf.add_argument("--omp-nthreads", type=positive, default=None,
                        help="threads per process (default: min(8, nprocs))")  # fmt: skip
    g_perf.add_argument("--mem", "--mem-gb", dest="mem_gb", type=partial(_memory_gb, parser=parser),
                        default=None, help="memory limit, e.g. 8GB")  # fmt: skip
    g_perf.add_argument("--gpus", type=nonneg, default=None, metavar="N",
                        help="GPU fills that may run at once (Nipype n_gpu_procs; default: "
                             "the CUDA devices this process may use, 0 without a GPU)")  # fmt: skip
    g_perf.add_argument("--resource-monitor", action="store_true",
                        help="measure each node's peak memory and CPU (Nipype's resource "
                             "monitor) into sub-<label>/log/<run>/resource_monitor.jsonl")  # fmt: skip
    g_perf.add_argument("--use-plugin", type=exists, default=None, metavar="FILE",
                        help="Nipype plugin configuration (YAML: plugin, plugin_args)")  # fmt: skip

    g_synth = parser.add_argument_group("Options for missing-contrast synthesis (cWDM)")
    g_synth.add_argument("--synthesize", choices=["FLAIR", "T2w", "T1w"], default=None,
                         metavar="CONTRAST",
                         help="write <entities>_desc-synthetic_<CONTRAST> for each session "
                              "that lacks it and has the model's source contrasts (FLAIR, "
                              "T2w or T1w; needs an installed model for it)")  # fmt: skip
    g_synth.add_argument("--synthesis-model", type=partial(_weights, parser=parser), default=None,
                         metavar="FILE",
                         help="synthesis weights (.safetensors with its .json card; default: "
                              "the installed cwdm-<contrast> model)")  # fmt: skip

    g_stages = parser.add_argument_group("Options to skip stages")
    g_stages.add_argument(
        "--skip-segmentation", "--fill-only", action="store_true",
        help="write only the filled T1w and the lesion mask (with the report): no brain mask "
             "and no GM/WM/CSF segmentation of the original and filled images, for a user "
             "who runs FreeSurfer, FastSurfer or FAST next",
    )  # fmt: skip

    g_other = parser.add_argument_group("Other options")
    g_other.add_argument("-w", "--work-dir", type=Path, default=Path("work"),
                         help="working directory; rerunning with the same one resumes")  # fmt: skip
    g_other.add_argument("--clean-workdir", action="store_true",
                         help="empty the work directory before the run (nothing cached is "
                              "reused); not while another run uses it")  # fmt: skip
    g_other.add_argument("--config-file", type=exists, default=None, metavar="FILE",
                         help="settings from a bidsfill TOML config, such as the bidsfill.toml "
                              "a run leaves in sub-<label>/log/<run>/; options given on the "
                              "command line win")  # fmt: skip
    g_other.add_argument("--boilerplate-only", action="store_true",
                         help="write the citation boilerplate of the planned run "
                              "(logs/CITATION.md) and stop")  # fmt: skip
    g_other.add_argument("--stop-on-first-crash", action="store_true",
                         help="stop at the first crashed node")  # fmt: skip
    g_other.add_argument("--reports-only", action="store_true",
                         help="only rebuild the reports from existing outputs")  # fmt: skip
    g_other.add_argument("-v", "--verbose", dest="verbose_count", action="count", default=0,
                         help="more messages (-vv for debug)")  # fmt: skip
    return parser
