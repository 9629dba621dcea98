"""Missing-contrast synthesis: one synthesise-and-write pair of nodes per session."""

from __future__ import annotations

from pathlib import Path

from nipype.pipeline import engine as pe

from bidsfill.bids.discovery import SynthesisInputs
from bidsfill.interfaces.synthesis import SynthesizeContrast, WriteSynthesis

__all__ = ["init_synthesis_wf"]


def init_synthesis_wf(
    *,
    sessions: list[SynthesisInputs],
    target: str,
    model: str | Path,
    bids_dir: Path,
    output_dir: Path,
    seed: int = 0,
    steps: int | None = None,
    device: str = "cpu",
    omp_nthreads: int = 1,
    name: str = "synthesis_wf",
):
    """Synthesise ``target`` for each session (which lacks it and has the model's sources)
    and write ``<entities>_desc-synthetic_<target>`` with its sidecar."""
    workflow = pe.Workflow(name=name)
    for session in sessions:
        synth = pe.Node(
            SynthesizeContrast(
                sources=[str(p) for p in session.sources.values()],
                source_contrasts=list(session.sources),
                model=str(model),
                seed=seed,
                steps=int(steps or 0),
                device=device,
                omp_nthreads=omp_nthreads,
            ),
            name=f"synthesize_{session.key}",
            mem_gb=4,
            n_procs=omp_nthreads,
        )
        write = pe.Node(
            WriteSynthesis(output_dir=str(output_dir), bids_dir=str(bids_dir), target=target,
                           sources=[str(p) for p in session.sources.values()]),  # fmt: skip
            name=f"ds_synthetic_{session.key}",
            overwrite=True,
            run_without_submitting=True,
        )
        workflow.connect([(synth, write, [("out_file", "in_file"), ("out_info", "info")])])
    return workflow
