"""A real one-node SLURM cluster runs bidsfill through Nipype's SLURM plugin.

``scripts/slurm-up.sh`` installs Debian's ``slurm-wlm`` and ``munge`` when they are
missing, starts munged, slurmctld and slurmd on loopback (every file in one folder, on free
ports) and waits for the node to be idle; ``scripts/slurm-down.sh`` stops them. The test
runs the two-subject demo once with ``--use-plugin slurm.yml`` (every node an ``sbatch``
job) and once with MultiProc, and requires the same output files, the filled images and
lesion masks bit-identical.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bidsfill.cli.run import run
from bidsfill.demo import make_demo_dataset
from bidsfill.io.nifti import raw_data

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _logs(state: Path) -> str:
    return "\n".join(
        f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        for log in sorted(state.glob("*.log"))
    )


@pytest.fixture(scope="module")
def slurm_conf():
    """Start the cluster for this module; yield its slurm.conf; stop it afterwards."""
    # munged wants every folder above its socket searchable by all: not under pytest's
    # 0700 tmp_path, but a fresh folder in /tmp.
    state = Path(tempfile.mkdtemp(prefix="bidsfill-slurm-", dir="/tmp"))
    env = dict(os.environ, BIDSFILL_SLURMCTLD_PORT=str(_free_port()))
    env["BIDSFILL_SLURMD_PORT"] = str(_free_port())
    up = subprocess.run(
        ["bash", str(REPO / "scripts" / "slurm-up.sh"), str(state)],
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    try:
        if up.returncode == 3:
            pytest.skip(f"SLURM cannot be installed here: {up.stderr.strip().splitlines()[-1]}")
        assert up.returncode == 0, f"slurm-up.sh failed:\n{up.stderr}\n{_logs(state)}"
        yield state / "slurm.conf"
    finally:
        subprocess.run(
            ["bash", str(REPO / "scripts" / "slurm-down.sh"), str(state), "--purge"],
            capture_output=True, timeout=120,
        )  # fmt: skip


def test_cluster_runs_a_job(slurm_conf, tmp_path):
    env = dict(os.environ, SLURM_CONF=str(slurm_conf))
    out = tmp_path / "job.out"
    sub = subprocess.run(
        ["sbatch", "--wait", "-o", str(out), "--wrap", "echo ran on $SLURMD_NODENAME"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert sub.returncode == 0, sub.stderr + _logs(slurm_conf.parent)
    assert out.read_text().strip() == "ran on localhost"


def _outputs(out: Path) -> set[str]:
    """Output files, without the per-run log folders (their names hold the run's uuid)."""
    return {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and "log" not in p.parts}


def test_slurm_plugin_matches_multiproc(slurm_conf, tmp_path, monkeypatch):
    demo = make_demo_dataset(tmp_path / "demo", seed=0, downsample=2)
    common = [str(demo.bids), "participant", "--derivatives", str(demo.lesions),
              "--method", "ring", "--seed", "7"]  # fmt: skip
    # The jobs run this interpreter (Nipype's batch script calls sys.executable) and read
    # the work dir, which a single-node cluster shares with the test by construction.
    monkeypatch.setenv("SLURM_CONF", str(slurm_conf))
    plugin = tmp_path / "slurm.yml"
    plugin.write_text(
        'plugin: SLURM\nplugin_args:\n  sbatch_args: "--mem=2G -c 1"\n  max_jobs: 8\n'
    )
    out_slurm, work_slurm = tmp_path / "out-slurm", tmp_path / "work-slurm"
    argv = common[:1] + [str(out_slurm)] + common[1:]
    code = run(argv + ["-w", str(work_slurm), "--use-plugin", str(plugin)])
    assert code == 0, _logs(slurm_conf.parent)
    out_mp = tmp_path / "out-mp"
    argv = common[:1] + [str(out_mp)] + common[1:]
    assert run(argv + ["-w", str(tmp_path / "work-mp"), "--nprocs", "2"]) == 0

    # Every node that Nipype does not run in the submitting process (align, brain mask, fill,
    # two segmentations per T1w) was an sbatch job with its own log.
    job_logs = list(work_slurm.rglob("slurm-*.out"))
    fills = list(work_slurm.glob("bidsfill_wf/*/*/fill"))
    assert len(fills) == len(demo.images) == 3
    assert len(job_logs) == 5 * len(demo.images), sorted(p.name for p in job_logs)
    assert "sched: Allocate JobId" in (slurm_conf.parent / "slurmctld.log").read_text()

    assert _outputs(out_slurm) == _outputs(out_mp)
    for image in demo.images:
        rel = image.t1w.parent.relative_to(demo.bids)
        stem = image.t1w.name.replace("_T1w.nii.gz", "")
        for name in (f"{stem}_desc-filled_T1w.nii.gz", f"{stem}_label-lesion_mask.nii.gz"):
            a, b = nib.load(str(out_slurm / rel / name)), nib.load(str(out_mp / rel / name))
            assert a.header.binaryblock == b.header.binaryblock, name
            da, db = raw_data(a), raw_data(b)
            assert da.dtype == db.dtype and np.array_equal(da, db), name
        # The segmentations hang on a brain mask from an antspyx registration that is not
        # bit-reproducible between processes (see bidsfill/segment/brainmask.py), so they
        # must agree, not be identical.
        for desc in ("orig", "filled"):
            name = f"{stem}_desc-{desc}_dseg.nii.gz"
            da = np.asarray(nib.load(str(out_slurm / rel / name)).dataobj)
            db = np.asarray(nib.load(str(out_mp / rel / name)).dataobj)
            assert (da == db).mean() > 0.99, name
        original = raw_data(nib.load(str(image.t1w)))
        filled = raw_data(nib.load(str(out_slurm / rel / f"{stem}_desc-filled_T1w.nii.gz")))
        assert not np.array_equal(filled, original)  # the lesions were filled
