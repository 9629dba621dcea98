"""Nipype workflows: the whole run, one subject, one T1w run.

Only :func:`init_bidsfill_wf` reads the config; the builders below it take explicit
keyword arguments, so a test can build any of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nipype.interfaces.utility import IdentityInterface, Merge
from nipype.pipeline import engine as pe

from bidsfill.bids.discovery import RunInputs, synthetic_conditioning
from bidsfill.diffusion.sampling import SamplingPlan
from bidsfill.fill.methods import fill_method
from bidsfill.interfaces.bids import WriteRunDerivatives
from bidsfill.interfaces.fill import FillLesions
from bidsfill.interfaces.masks import AlignLesionMask
from bidsfill.interfaces.report import SubjectReport
from bidsfill.interfaces.segment import BrainMask, SegmentTissues

__all__ = [
    "init_bidsfill_wf",
    "init_fill_run_wf",
    "init_single_subject_wf",
    "method_uses_gpu",
    "model_contrasts",
]


def model_contrasts(method: str, model: str | Path | None = None) -> tuple[str, ...]:
    """BIDS suffixes of the contrasts the fill's model is conditioned on ("FLAIR", "T2w");
    empty for a classical method or a T1w-only model."""
    from bidsfill.diffusion.card import CONTRAST_CHANNELS, ModelCard
    from bidsfill.diffusion.weights import default_model_path

    if not fill_method(method).uses_model:
        return ()
    path = Path(model) if model else default_model_path(method)
    if path is None or not path.with_suffix(".json").is_file():
        return ()  # the fill node says what is missing
    try:
        card = ModelCard.load(path.with_suffix(".json"))
    except ValueError:
        return ()  # likewise
    return tuple(CONTRAST_CHANNELS[c] for c in card.contrasts)


def method_uses_gpu(method: str, device: str) -> bool:
    """Whether the fill node of ``method`` will run on a GPU."""
    return fill_method(method).uses_gpu(device)


def init_fill_run_wf(
    *,
    run: RunInputs,
    bids_dir: Path,
    output_dir: Path,
    method: str,
    seed: int,
    dilate: int = 0,
    mask_threshold: float | None = None,
    fill_params: dict[str, Any] | None = None,
    use_gpu: bool = False,
    omp_nthreads: int = 1,
    segment: bool = True,
    conditioning: tuple[str, ...] = (),
    synthetic: str | None = None,
    name: str = "fill_run_wf",
):
    """Fill the lesions of one T1w, segment it before and after, write derivatives.

    Parameters
    ----------
    run
        The T1w with its mask and same-session FLAIR/T2w (from discovery).
    bids_dir, output_dir
        Raw dataset and derivatives dataset.
    method
        Registered fill method; ``seed`` seeds every random draw.
    dilate
        Grow the mask by this many voxels first.
    mask_threshold
        Binarise a non-binary mask at this value (None: such a mask is refused).
    fill_params
        Extra method parameters (diffusion: sampler, steps, n_samples, model, device).
    use_gpu
        Mark the fill node as a GPU node (MultiProc counts ``n_gpu_procs``).
    segment
        Segment GM/WM/CSF before and after filling; False (``--skip-segmentation``)
        builds neither segmentation nor the brain mask they need.
    conditioning
        BIDS suffixes of the contrasts the diffusion model is conditioned on ("FLAIR",
        "T2w"); those the session has are registered to the T1w once (by ``align_mask``,
        with the mask's own transform when the mask is on their grid), resampled onto
        its grid and given to the fill.
    synthetic
        BIDS suffix of a synthetic image (``--synthesize``) that conditions the fill in
        place of the session's own: it arrives on ``inputnode.synthetic`` (the written
        derivative), is aligned like a raw FLAIR/T2w, and the sidecar names it as such.

    Inputs
    ------
    t1w, mask, references, reference_suffixes, synthetic

    Outputs
    -------
    summary
        JSON summary of the run (used by the subject report).
    """
    workflow = pe.Workflow(name=name)
    inputnode = pe.Node(
        IdentityInterface(fields=["t1w", "mask", "references", "reference_suffixes", "synthetic"]),
        name="inputnode",
    )
    inputnode.inputs.t1w = str(run.t1w)
    inputnode.inputs.mask = str(run.mask)
    refs = [(s, p) for s, p in (("FLAIR", run.flair), ("T2w", run.t2w)) if p is not None]
    inputnode.inputs.references = [str(p) for _, p in refs]
    inputnode.inputs.reference_suffixes = [s for s, _ in refs]
    if synthetic in (s for s, _ in refs):
        raise ValueError(f"{run.t1w.name} has a {synthetic} of its own; it needs no synthetic one")
    outputnode = pe.Node(IdentityInterface(fields=["summary", "out_files"]), name="outputnode")

    align = pe.Node(AlignLesionMask(dilate=dilate, seed=seed), name="align_mask", mem_gb=1)
    if mask_threshold is not None:  # left undefined otherwise, so cached work dirs stay valid
        align.inputs.mask_threshold = mask_threshold
    wanted = [s for s, _ in refs if s in conditioning] + ([synthetic] if synthetic else [])
    if wanted:  # likewise
        align.inputs.resample = wanted
    fill = pe.Node(
        FillLesions(
            method=method,
            seed=seed,
            params=fill_params or {},
            use_gpu=use_gpu,
            omp_nthreads=omp_nthreads,
        ),
        name="fill",
        mem_gb=fill_method(method).mem_gb,
        n_procs=omp_nthreads,
    )
    ds_run = pe.Node(
        WriteRunDerivatives(
            output_dir=str(output_dir),
            bids_dir=str(bids_dir),
            mask_origin=run.mask_source,
        ),
        name="ds_run",
        overwrite=True,  # always (re)write outputs, even when the work dir is cached
        run_without_submitting=True,
    )
    if synthetic:  # the synthetic image joins the session's references, last
        merge_refs = pe.Node(Merge(2), name="merge_references", run_without_submitting=True)
        align.inputs.reference_suffixes = [s for s, _ in refs] + [synthetic]
        ds_run.inputs.synthetic_suffix = synthetic
        workflow.connect([
            (inputnode, merge_refs, [("references", "in1"), ("synthetic", "in2")]),
            (merge_refs, align, [("out", "references")]),
            (inputnode, ds_run, [("synthetic", "synthetic")]),
        ])  # fmt:skip
    else:
        workflow.connect([(inputnode, align, [("references", "references"),
                                              ("reference_suffixes", "reference_suffixes")])])  # fmt:skip
    workflow.connect([
        (inputnode, align, [("t1w", "t1w"), ("mask", "mask")]),
        (inputnode, fill, [("t1w", "t1w")]),
        (align, fill, [("out_mask", "mask")]),
        (align, fill, [("out_references", "references"),
                       ("out_reference_suffixes", "reference_suffixes")]),
        (inputnode, ds_run, [("t1w", "source_file"), ("mask", "mask_source"),
                             ("references", "references"),
                             ("reference_suffixes", "reference_suffixes")]),
        (align, ds_run, [("out_mask", "mask"), ("out_info", "mask_info")]),
        (fill, ds_run, [("out_file", "filled"), ("out_std", "fill_std"),
                        ("out_info", "fill_info")]),
        (ds_run, outputnode, [("out_summary", "summary"), ("out_files", "out_files")]),
    ])  # fmt:skip
    if not segment:  # ds_run then checks itself whether the T1w is skull-stripped
        return workflow
    brain_mask = pe.Node(BrainMask(seed=seed), name="brain_mask", mem_gb=1)
    seg_orig = pe.Node(
        SegmentTissues(seed=seed, omp_nthreads=omp_nthreads),
        name="seg_orig",
        mem_gb=1,
        n_procs=omp_nthreads,
    )
    seg_filled = pe.Node(
        SegmentTissues(seed=seed, omp_nthreads=omp_nthreads),
        name="seg_filled",
        mem_gb=1,
        n_procs=omp_nthreads,
    )
    workflow.connect([
        (inputnode, brain_mask, [("t1w", "in_file")]),
        (inputnode, seg_orig, [("t1w", "in_file")]),
        (brain_mask, seg_orig, [("out_mask", "brain_mask")]),
        (fill, seg_filled, [("out_file", "in_file")]),
        (brain_mask, seg_filled, [("out_mask", "brain_mask")]),
        (brain_mask, ds_run, [("skull_stripped", "skull_stripped")]),
        (seg_orig, ds_run, [("out_dseg", "dseg_orig"), ("out_probseg", "probseg_orig"),
                            ("out_info", "seg_info_orig")]),
        (seg_filled, ds_run, [("out_dseg", "dseg_filled"), ("out_probseg", "probseg_filled"),
                              ("out_info", "seg_info_filled")]),
    ])  # fmt:skip
    return workflow


def init_single_subject_wf(
    *,
    subject: str,
    runs: list[RunInputs],
    bids_dir: Path,
    output_dir: Path,
    log_dir: Path,
    method: str,
    seed: int,
    dilate: int = 0,
    mask_threshold: float | None = None,
    fill_params: dict[str, Any] | None = None,
    use_gpu: bool = False,
    omp_nthreads: int = 1,
    segment: bool = True,
    conditioning: tuple[str, ...] = (),
    warnings: list[str] | None = None,
    config_file: Path | None = None,
    n_synthetic: int = 0,
    synthetic_runs: dict[str, str] | None = None,
    name: str | None = None,
):
    """All T1w runs of one subject, then the subject's report.

    Parameters
    ----------
    subject
        Label without ``sub-``.
    runs
        The subject's T1w runs that have a mask.
    log_dir
        ``<output_dir>/sub-<subject>/log/<run_uuid>``: crash files and the config.
    conditioning
        The model's contrasts (see :func:`init_fill_run_wf`).
    warnings
        Discovery warnings shown in the report.
    n_synthetic
        Synthetic images (``--synthesize``) written for the subject: the report waits for
        them on ``merge_synthetic.in1`` ... and shows each beside its sources.
    synthetic_runs
        Run key -> suffix of the synthetic image that conditions that run's fill (it
        arrives on ``fill_<key>_wf.inputnode.synthetic``; see :func:`init_fill_run_wf`).
    """
    workflow = pe.Workflow(name=name or f"sub_{subject}_wf")
    workflow.config["execution"] = {
        "crashdump_dir": str(log_dir),
        "crashfile_format": "txt",
    }
    merge = pe.Node(Merge(len(runs)), name="merge_summaries", run_without_submitting=True)
    report = pe.Node(
        SubjectReport(
            subject=subject,
            output_dir=str(output_dir),
            warnings=list(warnings or []),
            log_dir=str(log_dir),
            config_file=str(config_file) if config_file else "",
        ),
        name="report",
        overwrite=True,
        run_without_submitting=True,
    )
    for i, run in enumerate(runs):
        run_wf = init_fill_run_wf(
            run=run,
            bids_dir=bids_dir,
            output_dir=output_dir,
            method=method,
            seed=seed,
            dilate=dilate,
            mask_threshold=mask_threshold,
            fill_params=fill_params,
            use_gpu=use_gpu,
            omp_nthreads=omp_nthreads,
            segment=segment,
            conditioning=conditioning,
            synthetic=(synthetic_runs or {}).get(run.key),
            name=f"fill_{run.key}_wf",
        )
        workflow.connect(run_wf, "outputnode.summary", merge, f"in{i + 1}")
    workflow.connect(merge, "out", report, "summaries")
    if n_synthetic:
        merge_synth = pe.Node(Merge(n_synthetic), name="merge_synthetic",
                              run_without_submitting=True)  # fmt: skip
        workflow.connect(merge_synth, "out", report, "synthetic")
    # Nipype drops sub-workflow configs when it flattens the graph; set it on each node.
    for node in workflow._get_all_nodes():
        node.config = {"execution": dict(workflow.config["execution"])}
    return workflow


def init_bidsfill_wf(runs: list[RunInputs], warnings: list[str] | None = None, synthesis=None):  # noqa: ANN001
    """The whole participant-level run, built from the config.

    One sub-workflow per subject, each with one sub-workflow per T1w run; with
    ``--synthesize``, one more for the sessions in ``synthesis`` (``SynthesisInputs``).
    """
    from bidsfill import config

    workflow = pe.Workflow(name="bidsfill_wf")
    workflow.base_dir = str(config.execution.work_dir)
    wf = config.workflow
    # The sampling, decided once here; the fill node resolves it against the model card.
    plan = SamplingPlan.from_params(wf.get())
    method = fill_method(wf.method)
    fill_params = method.fill_params(plan, wf.model)
    use_gpu = method.uses_gpu(wf.device)
    conditioning = model_contrasts(wf.method, wf.model)
    synthesis_wf = None
    if synthesis:
        from bidsfill.workflows.synthesis import init_synthesis_wf

        synthesis_wf = init_synthesis_wf(
            sessions=synthesis, target=wf.synthesize, model=wf.synthesis_model,
            bids_dir=Path(config.execution.bids_dir), output_dir=Path(config.execution.output_dir),
            seed=config.seeds.master, device=wf.device, omp_nthreads=config.nipype.omp_nthreads,
        )  # fmt: skip
        workflow.add_nodes([synthesis_wf])
    # Fills conditioned on the synthesised contrast take it where a session lacks it.
    synthesized = synthetic_conditioning(runs, synthesis or [], wf.synthesize, conditioning)
    by_subject: dict[str, list[RunInputs]] = {}
    for run in runs:
        if run.mask is not None:
            by_subject.setdefault(run.subject, []).append(run)
    for subject, subject_runs in sorted(by_subject.items()):
        log_dir = (
            Path(config.execution.output_dir) / f"sub-{subject}" / "log" / config.execution.run_uuid
        )
        subject_warnings = [w for w in (warnings or []) if f"sub-{subject}_" in w]
        sessions = [s for s in synthesis or [] if s.subject == subject]
        subject_wf = init_single_subject_wf(
            subject=subject,
            runs=subject_runs,
            bids_dir=Path(config.execution.bids_dir),
            output_dir=Path(config.execution.output_dir),
            log_dir=log_dir,
            method=config.workflow.method,
            seed=config.seeds.master,
            dilate=config.workflow.dilate,
            mask_threshold=config.workflow.mask_threshold,
            fill_params=fill_params,
            use_gpu=use_gpu,
            omp_nthreads=config.nipype.omp_nthreads,
            segment=not config.workflow.skip_segmentation,
            conditioning=conditioning,
            warnings=subject_warnings,
            config_file=log_dir / "bidsfill.toml",
            n_synthetic=len(sessions),
            synthetic_runs={k: wf.synthesize for k in synthesized},
        )  # fmt:skip
        workflow.add_nodes([subject_wf])
        for i, session in enumerate(sessions):  # the report shows them: it waits for them
            workflow.connect(synthesis_wf, f"ds_synthetic_{session.key}.out_file",
                             subject_wf, f"merge_synthetic.in{i + 1}")  # fmt: skip
        for run in subject_runs:
            if run.key in synthesized:
                workflow.connect(synthesis_wf, f"ds_synthetic_{synthesized[run.key].key}.out_file",
                                 subject_wf, f"fill_{run.key}_wf.inputnode.synthetic")  # fmt: skip
    return workflow
