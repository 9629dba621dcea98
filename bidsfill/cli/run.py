"""The ``bidsfill`` entry point: parse, check, discover, build and run the workflow.

Every error a user can cause ends here as one sentence on stderr and a BIDS exit code;
only a bug shows a traceback.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

from bidsfill import __version__
from bidsfill.exit_codes import BidsfillExit, ExitCode

__all__ = ["cuda_device_count", "main", "run"]

LOGGER = logging.getLogger("bidsfill")


def _inside(path: Path, parent: Path) -> bool:
    try:
        path.resolve().relative_to(parent.resolve())
    except ValueError:
        return False
    return True


def _check_writable(path: Path, what: str) -> None:
    """Refuse a directory that cannot be created or written, before any work starts."""
    path = path.expanduser()
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        where = "is a file" if probe == path else f"cannot be created: {probe} is a file"
        raise BidsfillExit(f"The {what} {path} {where}, not a directory.", ExitCode.USAGE)
    if not os.access(probe, os.W_OK | os.X_OK):
        raise BidsfillExit(
            f"The {what} {path} is not writable (no write permission on {probe}).",
            ExitCode.USAGE,
        )


def _check_paths(
    bids_dir: Path, output_dir: Path, work_dir: Path, *, participant: bool = True
) -> None:
    if output_dir.resolve() == bids_dir.resolve():
        raise BidsfillExit(
            "The output directory must not be the input BIDS directory.", ExitCode.USAGE
        )
    if _inside(output_dir, bids_dir):
        raise BidsfillExit(
            "The output directory must not be inside the input BIDS directory, which bidsfill "
            "never writes to.",
            ExitCode.USAGE,
        )
    if _inside(work_dir, bids_dir):
        raise BidsfillExit(
            "The work directory must not be inside the input BIDS directory.", ExitCode.USAGE
        )
    _check_writable(output_dir, "output directory")
    if participant:
        _check_writable(work_dir, "work directory")


def cuda_device_count(
    procfs: Path = Path("/proc/driver/nvidia/gpus"), dev: Path = Path("/dev")
) -> int:
    """The CUDA devices this process may use, read without importing torch.

    The NVIDIA driver lists one folder per GPU under ``/proc/driver/nvidia/gpus`` (the
    ``/dev/nvidiaN`` nodes where /proc lacks it, as in some containers);
    ``CUDA_VISIBLE_DEVICES`` narrows that as CUDA does: the list ends at its first
    negative index, and an empty list hides every GPU. 0 on a machine without NVIDIA driver.
    """
    try:
        if procfs.is_dir():
            found = sum(1 for _ in procfs.iterdir())
        else:
            found = sum(1 for p in dev.glob("nvidia[0-9]*") if p.name[6:].isdigit())
    except OSError:
        found = 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return found
    allowed = 0
    for item in (v.strip() for v in visible.split(",")):
        if not item or (item.lstrip("-").isdigit() and int(item) < 0):
            break
        allowed += 1
    return min(found, allowed)


def _set_config(opts, argv: list[str]) -> None:
    from bidsfill import config

    config.reset()
    config.from_options(vars(opts))
    ex, wf, ny = config.execution, config.workflow, config.nipype
    ex.bids_dir = opts.bids_dir
    ex.output_dir = opts.output_dir.expanduser().resolve()
    ex.work_dir = opts.work_dir.expanduser().resolve()
    ex.run_uuid = config.new_run_uuid()
    ex.cmdline = list(argv)
    ex.version = __version__
    wf.model = str(opts.model) if opts.model else None
    wf.synthesis_model = str(opts.synthesis_model) if opts.synthesis_model else None
    # The cores this process may use (a cgroup/taskset/SLURM allocation), not the machine's.
    nprocs = opts.nprocs or len(os.sched_getaffinity(0)) or 1
    ny.nprocs = nprocs
    ny.omp_nthreads = opts.omp_nthreads or min(8, nprocs)
    # Only the GPUs there are: a default of 1 made Nipype warn on every CPU machine. An
    # explicit --device cuda keeps one slot, so GPU fills are never left uncounted.
    ny.n_gpu_procs = opts.gpus
    if opts.gpus is None:
        ny.n_gpu_procs = cuda_device_count()
        if opts.device.startswith("cuda"):
            ny.n_gpu_procs = max(1, ny.n_gpu_procs)
    ny.plugin = "Linear" if nprocs == 1 else "MultiProc"
    ny.plugin_args = {}
    if opts.use_plugin:
        import yaml

        try:
            plugin = yaml.safe_load(Path(opts.use_plugin).read_text()) or {}
        except yaml.YAMLError as err:
            raise BidsfillExit(f"The plugin file {opts.use_plugin} is not valid YAML ({err}).",
                               ExitCode.USAGE) from None  # fmt: skip
        if not isinstance(plugin, dict) or "plugin" not in plugin:
            raise BidsfillExit(
                f"The plugin file {opts.use_plugin} must name a 'plugin' (and may give "
                "'plugin_args').",
                ExitCode.USAGE,
            )
        ny.plugin = plugin["plugin"]
        ny.plugin_args = dict(plugin.get("plugin_args") or {})
    if opts.device not in ("auto", "cpu", "cuda") and not opts.device.startswith("cuda:"):
        raise BidsfillExit(f"--device must be auto, cpu, cuda or cuda:N, not {opts.device!r}.",
                           ExitCode.USAGE)  # fmt: skip
    from bidsfill.fill.methods import fill_method

    if opts.model and not fill_method(opts.method).uses_model:
        raise BidsfillExit(
            f"--model is for the diffusion methods; --method {opts.method} is classical and "
            "would ignore it.",
            ExitCode.USAGE,
        )


def _check_fill_setup():  # noqa: ANN202 - a ModelCard or None; torch stays unimported here
    """Load the model, resolve the device and the sampling now: the fill node would
    refuse them later, after registration and segmentation.

    Returns the model's card (None for a method without a model).
    """
    from bidsfill import config
    from bidsfill.fill.base import FillError
    from bidsfill.fill.methods import fill_method

    wf = config.workflow
    if not fill_method(wf.method).uses_model:
        return None
    import torch

    from bidsfill.diffusion.inference import resolve_device
    from bidsfill.diffusion.weights import default_model_path
    from bidsfill.fill.diffusion import _load

    try:
        resolve_device(wf.device)
    except ValueError as err:
        raise BidsfillExit(f"{err} Use --device auto or cpu.", ExitCode.USAGE) from None
    if wf.model is None and default_model_path(wf.method) is None:
        code = ExitCode.MISSING_INPUT  # nothing shipped for this method
    else:
        code = ExitCode.USAGE if wf.model else ExitCode.FAILURE  # a bad file, or a broken install
    try:  # the same checks as the fill node: file, sha256, card, architecture vs method
        _, card = _load(wf.method, wf.model, torch.device("cpu"))
    except FillError as err:
        raise BidsfillExit(str(err), code) from None
    from bidsfill.diffusion.sampling import SamplingPlan

    try:  # sampling options the model cannot take (steps, taper, antithetic noise)
        SamplingPlan.from_params(wf.get()).resolve(card)
    except ValueError as err:
        raise BidsfillExit(str(err), ExitCode.USAGE) from None
    return card


def _check_synthesis():  # noqa: ANN202 - a SynthesisCard or None
    """``--synthesize``: find and check its model now (one sentence and 64 otherwise)."""
    from bidsfill import config

    wf = config.workflow
    if not wf.synthesize:
        if wf.synthesis_model:
            raise BidsfillExit("--synthesis-model needs --synthesize CONTRAST.", ExitCode.USAGE)
        return None
    from bidsfill.synthesis.model import installed_synthesis_model, load_synthesis_model

    path = (
        Path(wf.synthesis_model) if wf.synthesis_model else installed_synthesis_model(wf.synthesize)
    )
    if path is None:
        raise BidsfillExit(
            f"No synthesis model for {wf.synthesize} is installed; train one with "
            f"bidsfill-train --task synthesize --target {wf.synthesize} and pass it with "
            "--synthesis-model.",
            ExitCode.USAGE,
        )
    try:
        _, card = load_synthesis_model(path)
    except ValueError as err:
        raise BidsfillExit(str(err), ExitCode.USAGE) from None
    if card.target != wf.synthesize:
        raise BidsfillExit(f"The synthesis model {path.name} writes {card.target}, not "
                           f"{wf.synthesize}.", ExitCode.USAGE)  # fmt: skip
    wf.synthesis_model = str(path)
    return card


def _write_boilerplate(out_dir: Path, card) -> Path:  # noqa: ANN001
    """``--boilerplate-only``: ``<out>/logs/CITATION.md`` for the run as planned.

    The planned fill is described as a finished one's sidecar would be (method, model,
    resolved sampling), so the text is the one the run's report would cite.
    """
    import shutil

    from bidsfill import config
    from bidsfill.diffusion.sampling import SamplingPlan
    from bidsfill.io.atomic import part_file
    from bidsfill.report.provenance import citation_markdown

    wf = config.workflow
    planned: dict[str, object] = {"Method": wf.method}
    if card is not None:  # _check_fill_setup has already refused a plan that fails here
        plan = SamplingPlan.from_params(wf.get()).resolve(card)
        planned.update(ModelName=card.name, ModelSHA256=card.sha256, Sampler=plan.sampler,
                       Steps=plan.steps)  # fmt: skip
    segmenters = set()
    if not wf.skip_segmentation:  # the same choice as segment_tissues makes
        segmenters.add("fsl-fast" if shutil.which("fast") else "ants-atropos")
    out = out_dir / "logs" / "CITATION.md"
    with _writing(out_dir):
        out.parent.mkdir(parents=True, exist_ok=True)
        with part_file(out) as tmp:
            tmp.write_text(citation_markdown([planned], segmenters))
    return out


def _voxel_ml(img) -> float:
    import numpy as np

    return abs(float(np.linalg.det(np.asarray(img.affine)[:3, :3]))) / 1000.0


def _check_fill_size(run, t1w, mask, dilate: int) -> None:
    """Refuse a fill over a large share of the head: an inverted mask or a runaway --dilate."""
    import numpy as np
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    from bidsfill.cli.parser import LARGE_MASK_FRACTION
    from bidsfill.io.align import dilate_mask

    lesion = mask.data > 0
    # The foreground (head, or brain when skull-stripped): above half the Otsu threshold,
    # holes filled, so dark lesions and CSF inside it count.
    head = ndimage.binary_fill_holes(t1w.data > 0.5 * float(threshold_otsu(t1w.data)))
    head_ml = float(head.sum()) * _voxel_ml(t1w.img) or lesion.size * _voxel_ml(mask.img)
    before_ml = after_ml = float(lesion.sum()) * _voxel_ml(mask.img)
    if dilate:
        lo = np.maximum(np.argwhere(lesion).min(0) - dilate - 1, 0)
        hi = np.argwhere(lesion).max(0) + dilate + 2
        box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        after_ml = float(dilate_mask(lesion[box], dilate).sum()) * _voxel_ml(mask.img)
    if after_ml <= LARGE_MASK_FRACTION * head_ml:
        return
    size = (
        f"{after_ml:.1f} ml, {after_ml / head_ml:.0%} of the {head_ml:.0f} ml foreground of "
        f"{run.t1w.name} (the limit is {LARGE_MASK_FRACTION:.0%})"
    )
    if before_ml > LARGE_MASK_FRACTION * head_ml:
        raise BidsfillExit(
            f"The lesion mask {run.mask.name} covers {size}; check that it is not inverted, "
            "or pass --allow-large-masks to fill it anyway.",
            ExitCode.INVALID_DATASET,
        )
    raise BidsfillExit(
        f"With --dilate {dilate} the lesion mask {run.mask.name} ({before_ml:.1f} ml) would "
        f"cover {size}; use a smaller --dilate, or pass --allow-large-masks to fill it anyway.",
        ExitCode.USAGE,
    )


def _check_contrasts(runs, card, synthesized=None) -> None:  # noqa: ANN001
    """Refuse a user's --model conditioned on a contrast a session lacks (the shipped
    default falls back to a T1w-only model instead, and the sidecar says so); a run in
    ``synthesized`` (run key -> session) gets the ``--synthesize`` target instead."""
    from bidsfill import config

    model = config.workflow.model
    if not model or card is None or not card.contrasts:
        return
    from bidsfill.diffusion.card import CONTRAST_CHANNELS

    target = config.workflow.synthesize
    for run in runs:
        missing = [c for c in card.contrasts if getattr(run, c, None) is None
                   and not (run.key in (synthesized or {}) and CONTRAST_CHANNELS[c] == target)]  # fmt: skip
        if run.mask is None or not missing:
            continue
        what = " or ".join(f"a {CONTRAST_CHANNELS[c]}" for c in missing)
        raise BidsfillExit(
            f"The model {Path(model).name} is conditioned on {what}, which {run.t1w.name} has "
            "no same-session image of; give a T1w-only --model, or leave --model out to use "
            "the shipped one.",
            ExitCode.USAGE,
        )


def _preflight(runs, card=None, synthesized=None) -> list[str]:  # noqa: ANN001
    """Read every input once so bad files stop the run before any node starts."""
    from bidsfill import config
    from bidsfill.bids.outputs import source_entities
    from bidsfill.io.align import check_placeable
    from bidsfill.io.nifti import InputError, load_image, load_mask

    wf = config.workflow
    notes = []
    _check_contrasts(runs, card, synthesized)
    for run in runs:
        if run.mask is None:
            continue
        try:  # a name the derivatives cannot be named after fails now, not after the fill
            source_entities(run.t1w, config.execution.bids_dir)
        except ValueError as err:
            raise BidsfillExit(f"{err}.", ExitCode.INVALID_DATASET) from None
        try:
            t1w = load_image(run.t1w)
            mask, warnings = load_mask(run.mask, threshold=wf.mask_threshold)
            refs = [
                load_image(ref, what=what).img
                for ref, what in ((run.flair, "FLAIR image"), (run.t2w, "T2w image"))
                if ref is not None
            ]
            check_placeable(t1w.img, mask.img, refs)
        except InputError as err:
            raise BidsfillExit(str(err), ExitCode.INVALID_DATASET) from None
        notes += warnings
        if not mask.data.any():
            notes.append(f"The lesion mask {run.mask.name} is empty; {run.t1w.name} is copied "
                         "through unchanged.")  # fmt: skip
            continue
        if mask.data.all():
            raise BidsfillExit(
                f"The lesion mask {run.mask.name} covers its whole volume, so {run.t1w.name} "
                "has no healthy tissue to fill from.",
                ExitCode.INVALID_DATASET,
            )
        if not wf.allow_large_masks:
            _check_fill_size(run, t1w, mask, wf.dilate)
    return notes


_USER_WRITE_ERRORS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.EEXIST, errno.ENOTDIR,
                      errno.EISDIR}  # fmt: skip


@contextlib.contextmanager
def _writing(out_dir: Path) -> Iterator[None]:
    """Turn a failed write (permissions, a full disk, a file in the way) into one sentence."""
    try:
        yield
    except OSError as err:
        what = err.filename or out_dir
        reason = err.strerror or str(err)
        # Permissions or a file in the way are the user's to fix (64); a full disk is not.
        code = ExitCode.USAGE if err.errno in _USER_WRITE_ERRORS else ExitCode.FAILURE
        raise BidsfillExit(f"Cannot write {what} ({reason}).", code) from None


# The last "SomeError: message" line of a traceback (module prefix dropped).
_ERROR_LINE = re.compile(
    r"^\s*(?:[A-Za-z_][\w.]*\.)?([A-Za-z_]\w*(?:Error|Exception|Exit))(?::\s?(.*))?$"
)
# Errors whose message already says all; others keep their type (a KeyError's key alone).
_PLAIN_ERRORS = {"InputError", "FillError", "ValueError", "RuntimeError", "BidsfillExit"}


def _error_message(text: str) -> str | None:
    """The error's own message from a traceback text (the innermost exception)."""
    lines = text.strip().splitlines()
    for i in range(len(lines) - 1, -1, -1):
        match = _ERROR_LINE.match(lines[i])
        if match:
            kind, first = match.groups()
            message = " ".join([first or ""] + [line.strip() for line in lines[i + 1 :]]).strip()
            if len(message) > 400:
                message = message[:400] + " ..."
            if not message:
                return kind
            return message if kind in _PLAIN_ERRORS else f"{kind}: {message}"
    return None


def _describe_crash(crash: Path) -> str:
    """The sentence "sub-X: node N failed: message" from one Nipype crash file."""
    subject = crash.parents[2].name
    text = crash.read_text(errors="replace")
    node = next(
        (line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Node:")),
        crash.stem,
    )
    # bidsfill_wf.sub_01_wf.fill_sub01_ses1_wf.align_mask -> fill_sub01_ses1_wf.align_mask
    node = ".".join(node.split(".")[2:]) or node
    message = _error_message(text) or "see the crash file"
    return f"{subject}: node {node} failed: {message.rstrip('.')}"


# crash-<date>-<time>-<login>-<node id>-<uuid4>.txt, as Nipype names its crash files.
_CRASH_NAME = re.compile(
    r"^crash-\d{8}-\d{6}-(?P<rest>.+)-[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}(?:\.\w+)?$"
)


def _is_empty(path: Path) -> bool:
    try:
        return path.stat().st_size == 0
    except OSError:
        return False


def _crash_node(name: str) -> str:
    """The node named in a crash file's name (its content may be missing)."""
    import getpass

    match = _CRASH_NAME.match(name)
    if not match:
        return name
    rest = match["rest"]
    with contextlib.suppress(KeyError, OSError):
        rest = rest.removeprefix(f"{getpass.getuser()}-")
    return rest


def _describe_unwritten_crash(crash: Path, err: BaseException) -> str:
    """The sentence for a node whose crash file stayed empty (a full disk)."""
    # Nipype raised the crash file's write error while handling the node's own error.
    cause = err.__context__ if isinstance(err, OSError) and err.__context__ else err
    message = _error_message(str(cause)) or str(cause) or type(cause).__name__
    why = err.strerror if isinstance(err, OSError) and err.strerror else "it is empty"
    return (f"{crash.parents[2].name}: node {_crash_node(crash.name)} failed: "
            f"{message.rstrip('.')} (its crash file could not be written: {why})")  # fmt: skip


def _clean_failed_run(out_dir: Path, subjects: list[str], unwritten: list[Path]) -> None:
    """Remove what a failed run left half-written: empty crash files and ``.part`` files."""
    from bidsfill.io.atomic import PART_SUFFIX

    leftovers = list(unwritten)
    for folder in (out_dir, out_dir / "logs"):
        leftovers += folder.glob(f"*{PART_SUFFIX}")
    for subject in subjects:
        leftovers += (out_dir / f"sub-{subject}").rglob(f"*{PART_SUFFIX}")
    for path in leftovers:
        with contextlib.suppress(OSError):
            path.unlink()


def _clean_workdir(work_dir: Path, out_dir: Path, bids_dir: Path) -> None:
    """``--clean-workdir``: empty the work directory, never what it holds of the user's."""
    import shutil

    for path, what in ((out_dir, "output directory"), (bids_dir, "input BIDS directory")):
        if _inside(path, work_dir):
            raise BidsfillExit(
                f"--clean-workdir would delete the {what} {path}, which is inside the work "
                f"directory {work_dir}; choose another -w.",
                ExitCode.USAGE,
            )
    if not work_dir.is_dir():
        return
    LOGGER.warning("Emptying the work directory %s (--clean-workdir).", work_dir)
    with _writing(work_dir):
        for child in work_dir.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()


def _run_group() -> int:
    from bidsfill import config
    from bidsfill.report.group import write_group_table

    out = Path(config.execution.output_dir)
    if not (out / "dataset_description.json").exists():
        raise BidsfillExit(
            f"{out} holds no bidsfill output; run the participant level first.",
            ExitCode.MISSING_INPUT,
        )
    with _writing(out):
        table, rows = write_group_table(out)
    if not rows:
        raise BidsfillExit(
            f"{out} holds no filled T1w images to summarise.", ExitCode.MISSING_INPUT
        )
    from bidsfill.report.group_html import write_group_report

    with _writing(out):
        write_group_report(out, rows)
    LOGGER.warning("Group table with %d row(s): %s", len(rows), table)
    return int(ExitCode.SUCCESS)


def _run_participant() -> int:
    from bidsfill import config
    from bidsfill.bids.derivatives import write_dataset_description
    from bidsfill.bids.discovery import (
        check_filter_entities,
        discover,
        load_bids_filters,
        load_layout,
    )

    ex = config.execution
    if not ex.reports_only:  # BIDS microscopy: histology repair, its own branch (issue 18)
        from bidsfill.bids.microscopy import is_microscopy_dataset

        if is_microscopy_dataset(Path(ex.bids_dir)):
            from bidsfill.cli.microscopy import run_microscopy

            return run_microscopy(config)
    filters = load_bids_filters(ex.bids_filter_file) if ex.bids_filter_file else {}
    ex.bids_filters = filters
    card = None if ex.reports_only else _check_fill_setup()
    synthesis_card = None if ex.reports_only else _check_synthesis()
    layout = load_layout(Path(ex.bids_dir), validate=not ex.skip_bids_validation)
    check_filter_entities(layout, filters, ex.bids_filter_file)
    runs, warnings = discover(
        layout,
        participant_label=ex.participant_label,
        session_label=ex.session_label,
        derivatives=ex.derivatives,
        bids_filters=filters,
    )
    synthesis, synthesized = [], {}
    if synthesis_card is not None:
        from bidsfill.bids.discovery import synthesis_sessions, synthetic_conditioning
        from bidsfill.diffusion.card import CONTRAST_CHANNELS

        synthesis, more = synthesis_sessions(
            layout, config.workflow.synthesize, list(synthesis_card.sources),
            participant_label=ex.participant_label, session_label=ex.session_label,
        )  # fmt: skip
        warnings += more
        # A fill conditioned on the synthesised contrast takes it where a session lacks it.
        conditioning = tuple(CONTRAST_CHANNELS[c] for c in (card.contrasts if card else ()))
        synthesized = synthetic_conditioning(runs, synthesis, config.workflow.synthesize,
                                             conditioning)  # fmt: skip
    warnings += _preflight(runs, card, synthesized)
    for message in warnings:
        LOGGER.warning(message)

    out_dir, work_dir = Path(ex.output_dir), Path(ex.work_dir)
    if ex.boilerplate_only:
        LOGGER.warning("Wrote the citation boilerplate to %s.",
                       _write_boilerplate(out_dir, card))  # fmt: skip
        return int(ExitCode.SUCCESS)
    subjects = sorted({r.subject for r in runs if r.mask is not None})
    if ex.clean_workdir:
        _clean_workdir(work_dir, out_dir, Path(ex.bids_dir))
    with _writing(out_dir):
        out_dir.mkdir(parents=True, exist_ok=True)
        work_dir.mkdir(parents=True, exist_ok=True)
        write_dataset_description(out_dir, Path(ex.bids_dir), ex.derivatives)
        (out_dir / "desc-tissue_dseg.tsv").write_text("index\tname\tabbreviation\n1\tGray matter\tGM\n"
                                                      "2\tWhite matter\tWM\n3\tCerebrospinal fluid\tCSF\n")  # fmt: skip
        config.to_filename(work_dir / "config.toml")
        for subject in subjects:
            config.to_filename(out_dir / f"sub-{subject}" / "log" / ex.run_uuid / "bidsfill.toml")
    if ex.reports_only:
        return _reports_only(out_dir, subjects, warnings)

    from nipype import config as ncfg
    from nipype import logging as nlogging

    from bidsfill.cli.progress import RESOURCE_LOG, NodeProgress
    from bidsfill.workflows.base import init_bidsfill_wf

    ny = config.nipype
    ncfg.update_config({
        "execution": {
            "crashfile_format": "txt",
            "stop_on_first_crash": ny.stop_on_first_crash,
            "hash_method": "content",
            "remove_unnecessary_outputs": False,
        },
        "monitoring": {"enabled": ny.resource_monitor, "sample_frequency": "0.5"},
    })  # fmt: skip
    # Explicitly on or off: Nipype caches the setting for the life of the process.
    ncfg.resource_monitor = bool(ny.resource_monitor)  # needs psutil, a bidsfill dependency
    level = logging.INFO if ex.verbosity else logging.CRITICAL
    for name in ("nipype.workflow", "nipype.interface", "nipype.utils"):
        nlogging.getLogger(name).setLevel(level)
    os.environ.setdefault("OMP_NUM_THREADS", str(ny.omp_nthreads))
    workflow = init_bidsfill_wf(runs, warnings, synthesis=synthesis)
    plugin_args = dict(ny.plugin_args)
    logs = {f"sub-{s}": out_dir / f"sub-{s}" / "log" / ex.run_uuid / RESOURCE_LOG for s in subjects}
    plugin_args.setdefault(
        "status_callback", NodeProgress(resource_logs=logs if ny.resource_monitor else None)
    )
    if ny.plugin == "MultiProc":
        plugin_args.setdefault("n_procs", ny.nprocs)
        plugin_args.setdefault("n_gpu_procs", ny.n_gpu_procs)
        plugin_args.setdefault("raise_insufficient", False)
        # Workers start from a fresh interpreter (as fMRIPrep does), not a fork of this
        # process: torch may already hold thread-pool locks here (the model is checked
        # before the workflow starts), and a forked worker then hung in its first torch
        # call (seen: a futex wait in zero_module while building the network).
        plugin_args.setdefault("mp_context", "forkserver")
        if ny.mem_gb:
            plugin_args.setdefault("memory_gb", ny.mem_gb)
    if ny.plugin.startswith("SLURM"):
        import getpass

        # Nipype's SLURM plugin names each job after $LOGNAME, which containers and CI lack.
        os.environ.setdefault("LOGNAME", getpass.getuser())
    LOGGER.warning("Filling %d T1w image(s) of %d subject(s) with method %r (run %s).",
                   sum(r.mask is not None for r in runs), len(subjects),
                   config.workflow.method, ex.run_uuid)  # fmt: skip
    from nipype.utils.filemanip import indirectory

    try:
        # From the work dir: Nipype writes files relative to the current directory (the
        # resource monitor's .proc-* samples), which must not land where the user stands.
        with indirectory(str(work_dir)):
            workflow.run(plugin=ny.plugin, plugin_args=plugin_args)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: run() stops the workers
        _clean_failed_run(out_dir, subjects, [])
        raise
    except Exception as err:  # Nipype raises RuntimeError listing crashed nodes
        crashes = sorted(out_dir.glob(f"sub-*/log/{ex.run_uuid}/crash-*"))
        # A full disk leaves crash files that Nipype opened but could not write.
        unwritten = [p for p in crashes if _is_empty(p)]
        crashes = [p for p in crashes if p not in unwritten]
        _clean_failed_run(out_dir, subjects, unwritten)
        crash_dirs = sorted({str(p.parent) for p in crashes})
        where = f"; crash files are in {', '.join(crash_dirs)}" if crash_dirs else ""
        failed = [_describe_crash(p) for p in crashes]
        failed += [_describe_unwritten_crash(p, err) for p in unwritten]
        if not failed:
            failed = [f"bidsfill failed: {_error_message(str(err)) or type(err).__name__}"]
        raise BidsfillExit("; ".join(failed) + where + ".", ExitCode.FAILURE) from None
    LOGGER.warning("bidsfill finished; outputs are in %s.", out_dir)
    return int(ExitCode.SUCCESS)


def _reports_only(out_dir: Path, subjects: list[str], warnings: list[str]) -> int:
    from bidsfill.report.rebuild import summary_from_outputs
    from bidsfill.report.subject import write_subject_report

    for subject in subjects:
        summaries = []
        for sidecar in sorted(out_dir.glob(f"sub-{subject}/**/anat/*_desc-filled_T1w.json")):
            summaries.append(summary_from_outputs(out_dir, sidecar))
        if summaries:
            write_subject_report(subject=subject, output_dir=out_dir, summaries=summaries,
                                 warnings=warnings)  # fmt: skip
    return int(ExitCode.SUCCESS)


# Packages whose warnings (an empty slice's mean, a division by zero in a background
# voxel, a dtype cast) are notes for a developer, not for the user of the BIDS App.
_LIBRARY_PACKAGES = ("numpy", "scipy", "skimage", "nibabel", "nilearn", "nipype", "bids",
                     "ants", "torch", "matplotlib", "pandas", "sklearn")  # fmt: skip


def _from_library(filename: str) -> bool:
    parts = Path(filename).parts
    return any(part in parts for part in _LIBRARY_PACKAGES) and (
        "site-packages" in parts or "dist-packages" in parts
    )


def _quiet_library_warnings(shown: Callable[..., None]) -> Callable[..., None]:
    """A ``warnings.showwarning`` that sends library warnings to the debug log.

    A ``RuntimeWarning`` (numpy's "invalid value encountered", "Mean of empty slice") and
    any warning raised inside a library are logged at debug level (seen with ``-vv``)
    instead of printed raw on stderr; other warnings go on to ``shown``. Nipype's MultiProc
    workers are forked, so they inherit this.
    """

    def _show(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
        if issubclass(category, RuntimeWarning) or _from_library(str(filename)):
            LOGGER.debug("%s (%s:%s): %s", category.__name__, Path(filename).name, lineno,
                         message)  # fmt: skip
        else:
            shown(message, category, filename, lineno, file, line)

    return _show


class _Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's or ``docker stop``'s), handled like Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_terminated(signum: int, frame) -> None:  # noqa: ANN001
    raise _Terminated(signum)


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """Turn SIGTERM into an exception in the main thread while bidsfill runs."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stop_workers(before: set[int]) -> int:
    """Stop the processes this run started (MultiProc workers, their forkserver).

    A Ctrl-C reaches the workers too, SIGTERM only this process; either way the pool's
    workers must not outlive the run (they would go on filling for minutes). Processes
    that were children before the run (``before``) are left alone.
    """
    import psutil

    # The pool's management thread logs the workers' deaths with a traceback each.
    logging.getLogger("concurrent.futures").disabled = True
    try:
        mine = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
        # multiprocessing's resource tracker ends with this process and frees the pool's
        # semaphores then; killed now, it would relaunch and print KeyErrors.
        mine = [p for p in mine if "resource_tracker" not in " ".join(p.cmdline())]
    except psutil.Error:
        return 0
    for proc in mine:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(mine, timeout=5)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=5)
    return len(mine)


def _children() -> set[int]:
    import psutil

    try:
        return {p.pid for p in psutil.Process().children(recursive=True)}
    except psutil.Error:
        return set()


def _with_config_file(parser, path: Path, argv: list[str]):  # noqa: ANN001, ANN202
    """Parse again with a config file's settings as defaults: the command line wins.

    Each value goes through its option's own validator (a ``dilate = 60`` is refused as
    ``--dilate 60`` is).
    """
    from bidsfill import config

    try:
        values = config.option_defaults(path)
    except (ValueError, OSError) as err:  # tomllib.TOMLDecodeError is a ValueError
        parser.error(f"--config-file {path} cannot be used: {err}.")
    actions = {action.dest: action for action in parser._actions}
    defaults = {}
    for dest, value in values.items():
        action = actions[dest]
        if value is not None and action.type is not None:
            convert = action.type
            value = (
                [convert(str(v)) for v in value] if isinstance(value, list) else convert(str(value))
            )
        if action.choices is not None and value not in action.choices:
            parser.error(f"--config-file {path}: {value!r} is not a choice of "
                         f"{'/'.join(action.option_strings)}.")  # fmt: skip
        defaults[dest] = value
    parser.set_defaults(**defaults)
    return parser.parse_args(argv)


def run(argv: list[str] | None = None) -> int:
    """Run bidsfill with ``argv`` (without the program name); return the exit code."""
    # warnings restored on return (tests call run() many times)
    with warnings.catch_warnings(), _sigterm_interrupts():
        warnings.showwarning = _quiet_library_warnings(warnings.showwarning)
        before = _children()
        try:
            return _run(argv)
        except KeyboardInterrupt as exc:
            import signal

            signum = getattr(exc, "signum", signal.SIGINT)
            stopped = _stop_workers(before)
            what = f" and stopped {stopped} worker process(es)" if stopped else ""
            print(f"bidsfill: interrupted by {signal.Signals(signum).name}{what}; "
                  "rerun with the same work directory to resume.", file=sys.stderr)  # fmt: skip
            return 128 + int(signum)


def _run(argv: list[str] | None) -> int:
    from bidsfill.cli.parser import ANALYSIS_LEVELS, build_parser

    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(format="%(asctime)s bidsfill %(levelname)s: %(message)s",
                        datefmt="%H:%M:%S", level=logging.WARNING)  # fmt: skip
    parser = build_parser()
    try:
        opts = parser.parse_args(argv)
        if opts.config_file:
            opts = _with_config_file(parser, opts.config_file, argv)
    except SystemExit as exc:  # argparse already printed its message
        return int(exc.code or 0)
    if opts.verbose_count:
        LOGGER.setLevel(logging.INFO if opts.verbose_count == 1 else logging.DEBUG)
    try:
        if opts.analysis_level not in ANALYSIS_LEVELS:
            raise BidsfillExit(
                f"Unknown analysis level {opts.analysis_level!r}; use 'participant' or 'group'.",
                ExitCode.UNKNOWN_LEVEL,
            )
        _check_paths(opts.bids_dir, opts.output_dir, opts.work_dir,
                     participant=opts.analysis_level == "participant")  # fmt: skip
        _set_config(opts, argv)
        if opts.analysis_level == "group":
            return _run_group()
        return _run_participant()
    except BidsfillExit as exc:
        print(f"bidsfill: error: {exc.message}", file=sys.stderr)
        return int(exc.code)


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
