"""GPU-aware scheduling: MultiProc's ``n_gpu_procs`` bounds concurrent ``use_gpu`` fills.

Nipype's MultiProc counts a node as a GPU node when its interface has ``use_gpu=True``
(``Node.is_gpu_node``) and runs at most ``n_gpu_procs`` of them at once. It does not need a
GPU to do so: when ``n_gpu_procs`` exceeds what ``nvidia-smi`` reports it only logs "at your
own risk". So on a CPU-only machine the real bidsfill run workflow (``init_fill_run_wf``:
align, brain mask, fill, two segmentations, derivatives), with its fill node marked
``use_gpu=True`` as on a GPU machine and the real pseudo-3D diffusion filler (told
``device="cpu"``, 5 DDIM steps: a few seconds per fill), shows what the scheduler does; the
intervals come from the start and end times Nipype records in each node's result file.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from conftest import lesion_mask, phantom, save, write_description

from bidsfill.bids.discovery import RunInputs
from bidsfill.workflows.base import init_fill_run_wf, method_uses_gpu

SHAPE = (32, 32, 32)
CENTRES = ((16, 10, 16), (10, 22, 16), (22, 22, 16))


def _dataset(root: Path, n_subjects: int) -> list[RunInputs]:
    """Tiny subjects (32^3 phantoms with three lesions)."""
    write_description(root)
    runs = []
    for k in range(1, n_subjects + 1):
        mask = lesion_mask(SHAPE, centres=CENTRES, radius=3.5)
        img = phantom(k, SHAPE)
        img[mask] = 40.0
        anat = root / f"sub-0{k}" / "anat"
        t1w = save(img, anat / f"sub-0{k}_T1w.nii.gz")
        roi = save(mask, anat / f"sub-0{k}_label-lesion_roi.nii.gz", np.uint8)
        runs.append(RunInputs(t1w=t1w, subject=f"0{k}", session=None, mask=roi, mask_source="raw"))
    return runs


def _intervals(work: Path) -> list[tuple[str, float, float]]:
    """(node name, start, end) in seconds of every node that ran, from its result file."""
    from nipype.utils.filemanip import loadpkl

    def seconds(stamp: str) -> float:
        return datetime.fromisoformat(stamp).timestamp()

    out = []
    for pkl in work.rglob("result_*.pklz"):
        runtime = loadpkl(pkl).runtime
        if getattr(runtime, "startTime", None) and getattr(runtime, "endTime", None):
            out.append((pkl.parent.name, seconds(runtime.startTime), seconds(runtime.endTime)))
    return out


def _overlap(a: tuple[str, float, float], b: tuple[str, float, float]) -> bool:
    return a[1] < b[2] and b[1] < a[2]


def _run(
    tmp_path: Path, n_gpu_procs: int, n_subjects: int = 4, n_procs: int = 2
) -> list[tuple[str, float, float]]:
    import nipype.pipeline.engine as pe

    runs = _dataset(tmp_path / "bids", n_subjects)
    work = tmp_path / f"work{n_gpu_procs}"
    wf = pe.Workflow(name="gpu_wf", base_dir=str(work))
    wf.config["execution"] = {"crashdump_dir": str(tmp_path / "crash"), "hash_method": "content"}
    for run in runs:
        wf.add_nodes([
            init_fill_run_wf(
                run=run, bids_dir=tmp_path / "bids", output_dir=tmp_path / f"out{n_gpu_procs}",
                method="pseudo3d", seed=0, fill_params={"steps": 5, "device": "cpu"},
                use_gpu=True, omp_nthreads=1,
                name=f"fill_{run.key}_wf",
            )
        ])  # fmt: skip
    # raise_insufficient=True: Nipype must accept GPU nodes on a machine without a GPU.
    wf.run(
        plugin="MultiProc",
        # Workers from a forkserver, as the CLI starts them: a forked worker of a process
        # that already ran torch (the earlier tests) can hang in its first torch call.
        plugin_args={"n_procs": n_procs, "n_gpu_procs": n_gpu_procs, "memory_gb": 8,
                     "raise_insufficient": True, "mp_context": "forkserver"},
    )  # fmt: skip
    intervals = _intervals(work)
    assert sum(name == "fill" for name, *_ in intervals) == n_subjects
    for run in runs:  # every subject finished: its filled image was written
        stem = run.t1w.name.replace("_T1w.nii.gz", "")
        out = tmp_path / f"out{n_gpu_procs}" / f"sub-{run.subject}" / "anat"
        assert (out / f"{stem}_desc-filled_T1w.nii.gz").is_file()
    return intervals


def test_only_the_fill_node_is_a_gpu_node(tmp_path):
    runs = _dataset(tmp_path / "bids", 1)
    for use_gpu in (True, False):
        wf = init_fill_run_wf(
            run=runs[0], bids_dir=tmp_path / "bids", output_dir=tmp_path / "out",
            method="pseudo3d", seed=0, use_gpu=use_gpu,
        )  # fmt: skip
        gpu_nodes = [n.name for n in wf._get_all_nodes() if n.is_gpu_node()]
        assert gpu_nodes == (["fill"] if use_gpu else [])


def test_method_uses_gpu():
    assert method_uses_gpu("pseudo3d", "cuda") and method_uses_gpu("wdm3d", "cuda:1")
    assert not method_uses_gpu("pseudo3d", "cpu")
    assert not method_uses_gpu("nawm", "cuda")  # classical fillers never take a GPU slot


@pytest.mark.slow
def test_one_gpu_slot_serialises_fills_while_cpu_nodes_run_beside(tmp_path):
    intervals = _run(tmp_path, n_gpu_procs=1)
    fills = sorted((iv for iv in intervals if iv[0] == "fill"), key=lambda iv: iv[1])
    cpu = [
        iv for iv in intervals if iv[0] in ("align_mask", "brain_mask", "seg_orig", "seg_filled")
    ]
    for earlier, later in zip(fills, fills[1:], strict=False):
        assert later[1] >= earlier[2], f"two GPU fills ran at once: {earlier} and {later}"
    # The second worker was not left idle while a fill held the only GPU slot.
    assert any(_overlap(f, c) for f in fills for c in cpu), (fills, cpu)


@pytest.mark.slow
def test_two_gpu_slots_let_fills_overlap(tmp_path):
    """The control: the same run with two GPU slots does run two fills at once, so the
    serialisation above comes from ``n_gpu_procs`` and the test can see an overlap."""
    # Four CPU slots, so the two GPU slots are never starved by CPU nodes that happen to be
    # scheduled first (with two CPU slots an overlap depended on the order of readiness).
    fills = [iv for iv in _run(tmp_path, n_gpu_procs=2, n_procs=4) if iv[0] == "fill"]
    assert any(_overlap(a, b) for i, a in enumerate(fills) for b in fills[i + 1 :]), fills
