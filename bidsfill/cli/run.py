"""The ``bidsfill`` entry point: parse, check, discover, build and run the workflow.

Every error a user can cause ends here as one sentence on stderr and a BIDS exit code;
only a bug shows a traceback.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from bidsfill import __version__
from bidsfill.cli.exit_codes import BidsfillExit, ExitCode

__all__ = ["main", "run"]

LOGGER = logging.getLogger("bidsfill")


def _inside(path: Path, parent: Path) -> bool:
    try:
        path.resolve().relative_to(parent.resolve())
    except ValueError:
        return False
    return True


def _check_paths(bids_dir: Path, output_dir: Path, work_dir: Path) -> None:
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


def _set_config(opts, argv: list[str]) -> None:
    from bidsfill.cli import config

    config.reset()
    ex, wf, ny = config.execution, config.workflow, config.nipype
    ex.bids_dir = opts.bids_dir
    ex.output_dir = opts.output_dir.expanduser().resolve()
    ex.work_dir = opts.work_dir.expanduser().resolve()
    ex.analysis_level = opts.analysis_level
    ex.participant_label = list(opts.participant_label)
    ex.session_label = list(opts.session_label)
    ex.derivatives = list(opts.derivatives)
    ex.bids_filter_file = opts.bids_filter_file
    ex.skip_bids_validation = opts.skip_bids_validation
    ex.reports_only = opts.reports_only
    ex.run_uuid = config.new_run_uuid()
    ex.cmdline = list(argv)
    ex.version = __version__
    ex.verbosity = opts.verbose_count
    wf.method = opts.method
    wf.dilate = opts.dilate
    wf.sampler = opts.sampler
    wf.steps = opts.steps
    wf.eta = opts.eta
    wf.n_samples = opts.n_samples
    wf.adapt_steps = opts.adapt_steps
    wf.model = str(opts.model) if opts.model else None
    wf.device = opts.device
    wf.feather = opts.feather
    wf.jump_length = opts.jump_length
    wf.jump_n_sample = opts.jump_n_sample
    # The cores this process may use (a cgroup/taskset/SLURM allocation), not the machine's.
    nprocs = opts.nprocs or len(os.sched_getaffinity(0)) or 1
    ny.nprocs = nprocs
    ny.omp_nthreads = opts.omp_nthreads or min(8, nprocs)
    ny.mem_gb = opts.mem_gb
    ny.n_gpu_procs = opts.gpus
    ny.stop_on_first_crash = opts.stop_on_first_crash
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
    config.seeds.master = opts.seed
    if opts.device not in ("auto", "cpu", "cuda") and not opts.device.startswith("cuda:"):
        raise BidsfillExit(f"--device must be auto, cpu, cuda or cuda:N, not {opts.device!r}.",
                           ExitCode.USAGE)  # fmt: skip


def _preflight(runs) -> list[str]:
    """Read every input once so bad files stop the run before any node starts."""
    from bidsfill.io.align import check_placeable
    from bidsfill.io.nifti import InputError, load_image, load_mask

    notes = []
    for run in runs:
        if run.mask is None:
            continue
        try:
            t1w = load_image(run.t1w)
            mask, warnings = load_mask(run.mask)
            refs = [
                load_image(ref, what=what).img
                for ref, what in ((run.flair, "FLAIR image"), (run.t2w, "T2w image"))
                if ref is not None
            ]
            check_placeable(t1w.img, mask.img, refs)
        except InputError as err:
            raise BidsfillExit(str(err), ExitCode.INVALID_DATASET) from None
        notes += warnings
        if not (mask.data > 0.5).any():
            notes.append(f"The lesion mask {run.mask.name} is empty; {run.t1w.name} is copied "
                         "through unchanged.")  # fmt: skip
    return notes


def _run_group() -> int:
    from bidsfill.cli import config
    from bidsfill.report.group import write_group_table

    out = Path(config.execution.output_dir)
    if not (out / "dataset_description.json").exists():
        raise BidsfillExit(
            f"{out} holds no bidsfill output; run the participant level first.",
            ExitCode.MISSING_INPUT,
        )
    table, rows = write_group_table(out)
    if not rows:
        raise BidsfillExit(
            f"{out} holds no filled T1w images to summarise.", ExitCode.MISSING_INPUT
        )
    from bidsfill.report.group_html import write_group_report

    write_group_report(out, rows)
    LOGGER.warning("Group table with %d row(s): %s", len(rows), table)
    return int(ExitCode.SUCCESS)


def _run_participant() -> int:
    from bidsfill.bids.derivatives import write_dataset_description
    from bidsfill.bids.discovery import discover, load_bids_filters, load_layout
    from bidsfill.cli import config

    ex = config.execution
    filters = load_bids_filters(ex.bids_filter_file) if ex.bids_filter_file else {}
    ex.bids_filters = filters
    layout = load_layout(Path(ex.bids_dir), validate=not ex.skip_bids_validation)
    runs, warnings = discover(
        layout,
        participant_label=ex.participant_label,
        session_label=ex.session_label,
        derivatives=ex.derivatives,
        bids_filters=filters,
    )
    warnings += _preflight(runs)
    for message in warnings:
        LOGGER.warning(message)

    out_dir, work_dir = Path(ex.output_dir), Path(ex.work_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    work_dir.mkdir(parents=True, exist_ok=True)
    write_dataset_description(out_dir, Path(ex.bids_dir), ex.derivatives)
    (out_dir / "desc-tissue_dseg.tsv").write_text("index\tname\tabbreviation\n1\tGray matter\tGM\n"
                                                  "2\tWhite matter\tWM\n3\tCerebrospinal fluid\tCSF\n")  # fmt: skip
    config.to_filename(work_dir / "config.toml")
    subjects = sorted({r.subject for r in runs if r.mask is not None})
    for subject in subjects:
        config.to_filename(out_dir / f"sub-{subject}" / "log" / ex.run_uuid / "bidsfill.toml")
    if ex.reports_only:
        return _reports_only(out_dir, subjects, warnings)

    from nipype import config as ncfg
    from nipype import logging as nlogging

    from bidsfill.workflows.base import init_bidsfill_wf

    ny = config.nipype
    ncfg.update_config({
        "execution": {
            "crashfile_format": "txt",
            "stop_on_first_crash": ny.stop_on_first_crash,
            "hash_method": "content",
            "remove_unnecessary_outputs": False,
        },
        "monitoring": {"enabled": False},
    })  # fmt: skip
    level = logging.INFO if ex.verbosity else logging.CRITICAL
    for name in ("nipype.workflow", "nipype.interface", "nipype.utils"):
        nlogging.getLogger(name).setLevel(level)
    os.environ.setdefault("OMP_NUM_THREADS", str(ny.omp_nthreads))
    workflow = init_bidsfill_wf(runs, warnings)
    plugin_args = dict(ny.plugin_args)
    if ny.plugin == "MultiProc":
        plugin_args.setdefault("n_procs", ny.nprocs)
        plugin_args.setdefault("n_gpu_procs", ny.n_gpu_procs)
        plugin_args.setdefault("raise_insufficient", False)
        if ny.mem_gb:
            plugin_args.setdefault("memory_gb", ny.mem_gb)
    if ny.plugin.startswith("SLURM"):
        import getpass

        # Nipype's SLURM plugin names each job after $LOGNAME, which containers and CI lack.
        os.environ.setdefault("LOGNAME", getpass.getuser())
    LOGGER.warning("Filling %d T1w image(s) of %d subject(s) with method %r (run %s).",
                   sum(r.mask is not None for r in runs), len(subjects),
                   config.workflow.method, ex.run_uuid)  # fmt: skip
    try:
        workflow.run(plugin=ny.plugin, plugin_args=plugin_args)
    except Exception as err:  # Nipype raises RuntimeError listing crashed nodes
        crash_dirs = sorted(
            {str(p.parent) for p in out_dir.glob(f"sub-*/log/{ex.run_uuid}/crash-*")}
        )
        where = f"; crash files are in {', '.join(crash_dirs)}" if crash_dirs else ""
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise BidsfillExit(f"bidsfill failed ({first}){where}.", ExitCode.FAILURE) from None
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


def run(argv: list[str] | None = None) -> int:
    """Run bidsfill with ``argv`` (without the program name); return the exit code."""
    from bidsfill.cli.parser import ANALYSIS_LEVELS, build_parser

    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(format="%(asctime)s bidsfill %(levelname)s: %(message)s",
                        datefmt="%H:%M:%S", level=logging.WARNING)  # fmt: skip
    parser = build_parser()
    try:
        opts = parser.parse_args(argv)
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
        _check_paths(opts.bids_dir, opts.output_dir, opts.work_dir)
        _set_config(opts, argv)
        if opts.analysis_level == "group":
            return _run_group()
        return _run_participant()
    except BidsfillExit as exc:
        print(f"bidsfill: error: {exc.message}", file=sys.stderr)
        return int(exc.code)
    except KeyboardInterrupt:
        print("bidsfill: interrupted.", file=sys.stderr)
        return int(ExitCode.FAILURE)


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
