"""One settings object per run, serialisable to TOML (the shape of fMRIPrep's config).

Each section is a class that is never instantiated; its attributes are the settings.
``to_filename`` writes the whole config so a run can be reproduced, ``load`` reads it
back (used for the work dir's copy and for ``sub-X/log/<run_uuid>/bidsfill.toml``).
Nothing here touches the network.
"""

from __future__ import annotations

import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import tomli_w

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "OPTIONS",
    "dumps",
    "execution",
    "from_options",
    "load",
    "nipype",
    "option_defaults",
    "reset",
    "seeds",
    "to_filename",
    "workflow",
]


class _Section:
    """Settings of one kind; never instantiated."""

    _paths: tuple[str, ...] = ()

    def __init__(self) -> None:  # pragma: no cover - guard
        raise RuntimeError("Configuration sections are not instantiated.")

    @classmethod
    def keys(cls) -> list[str]:
        return [k for k in vars(cls) if not k.startswith("_") and not callable(getattr(cls, k))]

    @classmethod
    def get(cls) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in cls.keys():
            value = getattr(cls, key)
            if value is None:
                continue
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, list | tuple):
                value = [str(v) if isinstance(v, Path) else v for v in value]
            out[key] = value
        return out

    @classmethod
    def load(cls, settings: dict[str, Any]) -> None:
        for key, value in settings.items():
            if key in cls._paths and value is not None:
                value = [Path(v) for v in value] if isinstance(value, list) else Path(value)
            setattr(cls, key, value)


class execution(_Section):
    """Where the data are and how this run was asked for."""

    _paths = ("bids_dir", "output_dir", "work_dir", "log_dir", "derivatives", "bids_filter_file")
    bids_dir: Path | None = None
    """The input BIDS dataset (never written to)."""
    output_dir: Path | None = None
    """The BIDS-Derivatives dataset bidsfill writes."""
    analysis_level: str = "participant"
    """``participant`` or ``group``."""
    work_dir: Path | None = None
    """Nipype's working directory; rerunning with the same one resumes."""
    derivatives: list[Path] = []
    """Derivatives datasets searched for lesion masks."""
    participant_label: list[str] = []
    """Subjects to process (without ``sub-``); empty means all."""
    session_label: list[str] = []
    """Sessions to process (without ``ses-``); empty means all."""
    bids_filter_file: Path | None = None
    """JSON file with pybids filters for the ``t1w``, ``roi``, ``flair`` and ``t2w`` queries."""
    bids_filters: dict[str, Any] = {}
    """The parsed filters."""
    skip_bids_validation: bool = False
    """Do not validate the input dataset."""
    reports_only: bool = False
    """Rebuild reports from existing outputs only."""
    boilerplate_only: bool = False
    """Write the citation boilerplate of the planned run and stop."""
    clean_workdir: bool = False
    """Empty the work directory before the run starts (no reuse of cached results)."""
    run_uuid: str = ""
    """Identifier of this run (date and a random part), naming ``log/<run_uuid>``."""
    cmdline: list[str] = []
    """The command line as typed."""
    version: str = ""
    """bidsfill version."""
    verbosity: int = 0
    """Number of ``-v`` flags."""


class workflow(_Section):
    """What the workflow computes."""

    method: str = "pseudo3d"
    """Fill method (a registered filler)."""
    dilate: int = 0
    """Grow the lesion mask by this many voxels before filling."""
    mask_threshold: float | None = None
    """Binarise a non-binary lesion mask at this value (None: refuse such a mask)."""
    allow_large_masks: bool = False
    """Fill masks larger than ``LARGE_MASK_FRACTION`` of the T1w's foreground."""
    sampler: str = "ddim"
    """Diffusion sampler."""
    steps: int | None = None
    """Diffusion sampling steps (None: the model's default)."""
    eta: float = 0.0
    """DDIM eta (0: deterministic given the start noise)."""
    n_samples: int | None = None
    """Independent diffusion fills averaged; >1 writes a standard-deviation map (None:
    the model card's default)."""
    adapt_steps: int = 0
    """Fine-tune a copy of the model for this many steps on the scan before filling."""
    model: str | None = None
    """Path to diffusion weights (safetensors); None: the shipped default."""
    device: str = "auto"
    """``auto``, ``cpu`` or ``cuda[:N]``."""
    feather: bool = False
    """Blend the first voxel layer inside the mask toward its known neighbours."""
    flip: bool | None = None
    """Fill every other sample from the left-right mirrored crop (None: the card's default)."""
    edge_taper_mm: float | None = None
    """Depth (mm) over which a residual model's correction rises from the mask edge to
    full strength (0: off; None: the card's default)."""
    shift_voxels: int | None = None
    """In-plane crop shift (model voxels) of the samples after the first (0: off; None:
    the card's default)."""
    antithetic: bool | None = None
    """Start every second sample from the negated noise of the one before (None: the
    card's default)."""
    jump_length: int = 5
    """RePaint: steps jumped back before resampling."""
    jump_n_sample: int = 2
    """RePaint: times each jump is resampled."""
    skip_segmentation: bool = False
    """Write the filled T1w and the mask only: no brain mask, no GM/WM/CSF segmentations."""
    synthesize: str | None = None
    """Contrast to synthesise (cWDM) for each session lacking it (None: none)."""
    synthesis_model: str | None = None
    """Path to the synthesis weights; None: the installed ``cwdm-<contrast>`` model."""


class nipype(_Section):
    """How Nipype runs the workflow."""

    plugin: str = "MultiProc"
    """Nipype execution plugin."""
    plugin_args: dict[str, Any] = {}
    """Arguments of the plugin."""
    nprocs: int = 1
    """Processes Nipype may run at once."""
    omp_nthreads: int = 1
    """Threads per process (ANTs, torch)."""
    mem_gb: float | None = None
    """Memory Nipype may schedule."""
    n_gpu_procs: int = 1
    """GPU fill nodes that may run at once."""
    stop_on_first_crash: bool = False
    """Stop the whole run at the first crashed node."""
    resource_monitor: bool = False
    """Measure each node's peak memory and CPU (Nipype's resource monitor) and log them."""


class seeds(_Section):
    """Random seeds, copied into sidecars."""

    master: int = 0
    """Seed of every random draw of the fill and segmentation."""


_SECTIONS = {"execution": execution, "workflow": workflow, "nipype": nipype, "seeds": seeds}

#: Command-line option (argparse ``dest``) -> the (section, setting) it sets one to one.
#: ``from_options`` fills the config from it, and ``--config-file`` reads it backwards;
#: settings derived from several options (threads, GPUs, plugin) are set in the CLI.
OPTIONS: dict[str, tuple[str, str]] = {
    **{dest: ("execution", dest) for dest in (
        "analysis_level", "participant_label", "session_label", "derivatives",
        "bids_filter_file", "skip_bids_validation", "reports_only", "boilerplate_only",
        "clean_workdir")},
    "verbose_count": ("execution", "verbosity"),
    **{dest: ("workflow", dest) for dest in (
        "method", "dilate", "mask_threshold", "allow_large_masks", "sampler", "steps", "eta",
        "n_samples", "adapt_steps", "model", "device", "feather", "flip", "edge_taper_mm", "shift_voxels", "antithetic",
        "jump_length",
        "jump_n_sample", "skip_segmentation", "synthesize", "synthesis_model")},
    "omp_nthreads": ("nipype", "omp_nthreads"),
    "nprocs": ("nipype", "nprocs"),
    "mem_gb": ("nipype", "mem_gb"),
    "gpus": ("nipype", "n_gpu_procs"),
    "stop_on_first_crash": ("nipype", "stop_on_first_crash"),
    "resource_monitor": ("nipype", "resource_monitor"),
    "seed": ("seeds", "master"),
}  # fmt: skip

#: Settings a config file records about the run that wrote it, not choices for a new run.
RUN_RECORD = {
    "execution": {"bids_dir", "output_dir", "work_dir", "log_dir", "analysis_level",
                  "bids_filters", "reports_only", "boilerplate_only", "run_uuid", "cmdline",
                  "version", "verbosity"},
    "nipype": {"plugin", "plugin_args"},
}  # fmt: skip


def from_options(options: dict[str, Any]) -> None:
    """Set every one-to-one setting from parsed options (``vars(opts)``) in one call."""
    for dest, (section, key) in OPTIONS.items():
        if dest in options:
            value = options[dest]
            setattr(_SECTIONS[section], key, list(value) if isinstance(value, list) else value)


def option_defaults(path: str | Path) -> dict[str, Any]:
    """Option values (by argparse ``dest``) from a config file, for ``--config-file``.

    Raises ``ValueError`` naming the first unknown section or setting; the settings that
    only record the earlier run (its paths, uuid, command line) are skipped.
    """
    settings = tomllib.loads(Path(path).read_text())
    by_setting = {where: dest for dest, where in OPTIONS.items()}
    out: dict[str, Any] = {}
    for name, values in settings.items():
        if name not in _SECTIONS or not isinstance(values, dict):
            raise ValueError(f"it has an unknown section [{name}]")
        for key, value in values.items():
            if key in RUN_RECORD.get(name, ()):
                continue
            if (name, key) not in by_setting:
                raise ValueError(f"[{name}] has an unknown setting {key!r}")
            out[by_setting[name, key]] = value
    return out


def reset() -> None:
    """Give every list/dict attribute a fresh object (tests build several configs)."""
    execution.derivatives = []
    execution.participant_label = []
    execution.session_label = []
    execution.bids_filters = {}
    execution.cmdline = []
    nipype.plugin_args = {}


def new_run_uuid() -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}_{uuid.uuid4()}"


def as_dict() -> dict[str, dict[str, Any]]:
    return {name: section.get() for name, section in _SECTIONS.items()}


def dumps() -> str:
    return tomli_w.dumps(as_dict())


def to_filename(path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps())
    return path


def load(path: str | Path) -> None:
    settings = tomllib.loads(Path(path).read_text())
    for name, values in settings.items():
        _SECTIONS[name].load(values)
