"""Controlling a run as fMRIPrep users do (issue 13): progress lines per node, SIGTERM
stops the workers, ``--config-file``, ``--clean-workdir``, ``--resource-monitor``.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from bidsfill.cli.progress import NodeProgress, node_subject
from bidsfill.cli.run import run

BASE = ["--participant-label", "01", "--session-label", "1", "--skip-bids-validation"]


def _args(bids: Path, tmp: Path, *extra: str) -> list[str]:
    return [str(bids), str(tmp / "out"), "participant", "-w", str(tmp / "w"), *BASE, *extra]


# --- progress ----------------------------------------------------------------------------


def test_node_subject_reads_the_subject_workflow_name():
    assert node_subject("bidsfill_wf.sub_01_wf.fill_sub01_ses1_wf.fill") == (
        "sub-01", "fill_sub01_ses1_wf.fill")  # fmt: skip
    assert node_subject("bidsfill_wf.sub_pat7_wf.report") == ("sub-pat7", "report")
    assert node_subject("other_wf.node") == ("", "other_wf.node")


def _tiny_workflow(tmp_path: Path, fail: bool = False):
    from nipype.interfaces.utility import Function
    from nipype.pipeline import engine as pe

    def square(x):
        if x < 0:
            raise ValueError("negative input")
        return x * x

    outer = pe.Workflow(name="bidsfill_wf", base_dir=str(tmp_path / "work"))
    outer.config["execution"] = {"crashdump_dir": str(tmp_path), "crashfile_format": "txt"}
    inner = pe.Workflow(name="sub_01_wf")
    node = pe.Node(Function(input_names=["x"], output_names=["y"], function=square),
                   name="square")  # fmt: skip
    node.inputs.x = -2 if fail else 3
    inner.add_nodes([node])
    outer.add_nodes([inner])
    return outer


@pytest.mark.parametrize("tty", [True, False])
def test_node_progress_lines(tmp_path, tty):
    """A terminal sees start and end of each node; a log file one line per node."""
    stream = io.StringIO()
    _tiny_workflow(tmp_path).run(plugin="Linear",
                                 plugin_args={"status_callback": NodeProgress(stream, tty=tty)})  # fmt: skip
    lines = stream.getvalue().splitlines()
    done = [line for line in lines if "sub-01: square done in" in line]
    started = [line for line in lines if "sub-01: square started" in line]
    assert len(done) == 1, lines
    assert len(started) == (1 if tty else 0), lines
    assert len(lines) == (2 if tty else 1)


def test_node_progress_names_a_failed_node(tmp_path):
    stream = io.StringIO()
    with pytest.raises(RuntimeError):
        _tiny_workflow(tmp_path, fail=True).run(
            plugin="Linear", plugin_args={"status_callback": NodeProgress(stream, tty=False)}
        )
    assert "sub-01: square failed after" in stream.getvalue()


def test_participant_run_prints_one_line_per_node(tiny_bids, tmp_path, capsys):
    code = run(_args(tiny_bids, tmp_path, "--method", "nawm", "--nprocs", "1",
                     "--skip-segmentation"))  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err
    for node in ("align_mask", "fill", "ds_run", "report"):
        hits = [line for line in err.splitlines() if f"{node} done in" in line]
        assert len(hits) == 1, (node, err)
        assert "sub-01: " in hits[0]
    assert " started" not in err  # capsys is no terminal


# --- --resource-monitor ------------------------------------------------------------------


def test_resource_monitor_records_each_node(tiny_bids, tmp_path, capsys, monkeypatch):
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    code = run(_args(tiny_bids, tmp_path, "--method", "nawm", "--nprocs", "1",
                     "--skip-segmentation", "--resource-monitor"))  # fmt: skip
    assert code == 0, capsys.readouterr().err
    logs = list((tmp_path / "out" / "sub-01" / "log").glob("*/resource_monitor.jsonl"))
    assert len(logs) == 1
    rows = [json.loads(line) for line in logs[0].read_text().splitlines()]
    fill = [r for r in rows if r["node"].endswith(".fill")]
    assert len(fill) == 1
    assert fill[0]["mem_peak_gb"] is not None and fill[0]["mem_peak_gb"] > 0
    assert fill[0]["seconds"] >= 0
    assert not list(here.iterdir())  # the monitor's samples stay in the work dir


def test_no_resource_log_without_the_flag(tiny_bids, tmp_path, capsys):
    code = run(_args(tiny_bids, tmp_path, "--method", "nawm", "--nprocs", "1",
                     "--skip-segmentation"))  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert not list((tmp_path / "out").rglob("resource_monitor.jsonl"))


# --- --config-file -----------------------------------------------------------------------


def _parse(argv: list[str]):
    from bidsfill.cli.parser import build_parser
    from bidsfill.cli.run import _with_config_file

    parser = build_parser()
    opts = parser.parse_args(argv)
    return _with_config_file(parser, opts.config_file, argv) if opts.config_file else opts


def test_config_file_sets_defaults_and_the_command_line_wins(tiny_bids, tmp_path):
    cfg = tmp_path / "bidsfill.toml"
    cfg.write_text('[workflow]\nmethod = "nawm"\ndilate = 2\nfeather = true\n'
                   '[seeds]\nmaster = 7\n'
                   '[execution]\nrun_uuid = "old"\nparticipant_label = ["01"]\n')  # fmt: skip
    opts = _parse([str(tiny_bids), str(tmp_path / "o"), "participant", "--config-file",
                   str(cfg), "--dilate", "1"])  # fmt: skip
    assert (opts.method, opts.dilate, opts.feather, opts.seed) == ("nawm", 1, True, 7)
    assert opts.participant_label == ["01"]


def test_a_previous_runs_config_reproduces_its_settings(tiny_bids, tmp_path, capsys):
    """The bidsfill.toml a run leaves in its log folder is a valid --config-file."""
    from bidsfill import config

    code = run(_args(tiny_bids, tmp_path, "--method", "nawm", "--nprocs", "1", "--dilate",
                     "1", "--skip-segmentation", "--seed", "5"))  # fmt: skip
    assert code == 0, capsys.readouterr().err
    (saved,) = (tmp_path / "out" / "sub-01" / "log").glob("*/bidsfill.toml")
    opts = _parse([str(tiny_bids), str(tmp_path / "o2"), "participant", "--config-file",
                   str(saved)])  # fmt: skip
    assert (opts.method, opts.dilate, opts.seed, opts.skip_segmentation) == ("nawm", 1, 5, True)
    assert opts.participant_label == ["01"] and opts.session_label == ["1"]
    config.reset()


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[workflow]\ndilate = 60\n", "--dilate 60 is too large"),
        ("[workflow]\nmethod = \"magic\"\n", "is not a choice of --method"),
        ("[workflow]\ncolour = 1\n", "unknown setting 'colour'"),
        ("[paint]\nx = 1\n", "unknown section [paint]"),
        ("[workflow\n", "cannot be used"),
    ],
)
def test_bad_config_file_is_one_sentence(tiny_bids, tmp_path, capsys, text, says):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    code = run(_args(tiny_bids, tmp_path, "--config-file", str(cfg)))
    err = capsys.readouterr().err
    assert code == 64
    assert says in err and "Traceback" not in err


# --- --clean-workdir ---------------------------------------------------------------------


def test_clean_workdir_empties_the_work_directory(tiny_bids, tmp_path, capsys):
    stale = tmp_path / "w" / "bidsfill_wf" / "stale.txt"
    stale.parent.mkdir(parents=True)
    stale.write_text("old")
    code = run(_args(tiny_bids, tmp_path, "--method", "nawm", "--nprocs", "1",
                     "--skip-segmentation", "--clean-workdir"))  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert not stale.exists()
    assert (tmp_path / "out" / "sub-01" / "ses-1" / "anat").is_dir()


def test_clean_workdir_never_deletes_the_output(tiny_bids, tmp_path, capsys):
    work = tmp_path / "w"
    code = run([str(tiny_bids), str(work / "out"), "participant", "-w", str(work), *BASE,
                "--method", "nawm", "--clean-workdir"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 64
    assert "would delete the output directory" in err


# --- SIGTERM stops the MultiProc workers -------------------------------------------------


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


@pytest.mark.slow
def test_sigterm_stops_the_workers(tiny_bids, tmp_path):
    """SIGTERM (docker stop, a scheduler's kill) ends the run and every worker it started."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "bidsfill.cli.run", str(tiny_bids), str(tmp_path / "out"),
           "participant", "-w", str(tmp_path / "w"), "--skip-bids-validation",
           "--participant-label", "01", "--nprocs", "2", "--omp-nthreads", "1",
           "--method", "nonlocal"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    seen: set[psutil.Process] = set()
    deadline = time.monotonic() + 300
    # Wait for a worker to run a node: the forkserver plus at least one worker.
    while time.monotonic() < deadline and proc.poll() is None:
        seen.update(_descendants(proc.pid))
        if len(seen) >= 2:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before any worker started"
    time.sleep(1.0)
    seen.update(_descendants(proc.pid))
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "interrupted by SIGTERM" in err and "Traceback" not in err
    _, alive = psutil.wait_procs(list(seen), timeout=10)
    assert not alive, [p.pid for p in alive]
    assert not list((tmp_path / "out").rglob("*.part"))


def _run_on_terminal(cmd: list[str], timeout: float = 600) -> tuple[int, str]:
    """Run ``cmd`` with stdout and stderr on a pseudo-terminal; its exit code and output."""
    import pty
    import select

    leader, follower = pty.openpty()
    proc = subprocess.Popen(cmd, stdout=follower, stderr=follower, stdin=subprocess.DEVNULL,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))  # fmt: skip
    os.close(follower)
    chunks, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 1.0)
        if ready:
            try:
                data = os.read(leader, 4096)
            except OSError:  # the terminal closes when the process ends
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(leader)
    return proc.wait(timeout=60), b"".join(chunks).decode(errors="replace")


@pytest.mark.slow
def test_terminal_shows_nodes_and_crop_progress_from_the_worker(tiny_bids, tmp_path):
    """On a terminal: each node's start and end, and the diffusion fill's crops with an
    ETA, printed by the MultiProc worker that runs the fill."""
    code, out = _run_on_terminal([
        sys.executable, "-m", "bidsfill.cli.run", str(tiny_bids), str(tmp_path / "out"),
        "participant", "-w", str(tmp_path / "w"), *BASE, "--nprocs", "2", "--omp-nthreads",
        "1", "--skip-segmentation", "--n-samples", "1",
    ])  # fmt: skip
    assert code == 0, out
    assert "sub-01: fill_sub01_ses1_wf.fill started" in out
    assert "sub-01: fill_sub01_ses1_wf.fill done in" in out
    crops = [line for line in out.splitlines()
             if "sub-01_ses-1_T1w: Diffusion fill: crop" in line]  # fmt: skip
    assert crops, out
    assert "left" in crops[-1]


# --- each node's threads are counted against --nprocs ------------------------------------


@pytest.mark.parametrize("omp", [1, 3])
def test_nodes_claim_the_threads_they_use(tiny_bids, tmp_path, omp):
    """A node that runs ``omp_nthreads`` threads (torch, ITK) asks MultiProc for as many
    slots; the others run one thread and ask for one."""
    from bidsfill.bids.discovery import discover, load_layout
    from bidsfill.workflows.base import init_fill_run_wf

    runs, _ = discover(load_layout(tiny_bids, validate=False), participant_label=["01"])
    wf = init_fill_run_wf(run=runs[0], bids_dir=tiny_bids, output_dir=tmp_path / "out",
                          method="pseudo3d", seed=0, omp_nthreads=omp)  # fmt: skip
    for name in wf.list_node_names():
        node = wf.get_node(name)
        threads = getattr(node.inputs, "omp_nthreads", None)
        expected = omp if isinstance(threads, int) else 1
        assert node.n_procs == expected, (name, node.n_procs, threads)
        if isinstance(threads, int):
            assert threads == omp, name


# --- --boilerplate-only ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "says", "absent"),
    [
        (["--method", "nawm"], "normal-appearing white matter", "Sampling used"),
        ([], "pseudo-3D denoising diffusion model", "FSL's lesion_filling"),
        (["--steps", "3", "--skip-segmentation"], "Sampling used ddim with 3 steps", "Atropos"),
    ],
)
def test_boilerplate_only_writes_the_citation_and_stops(tiny_bids, tmp_path, capsys, extra,
                                                        says, absent):
    code = run(_args(tiny_bids, tmp_path, "--boilerplate-only", *extra))
    assert code == 0, capsys.readouterr().err
    out = tmp_path / "out"
    text = (out / "logs" / "CITATION.md").read_text()
    assert says in text and absent not in text
    if "--skip-segmentation" not in extra:
        assert "segmented with" in text
    # Nothing else: no subject folders, no dataset description, no work dir.
    assert sorted(p.name for p in out.iterdir()) == ["logs"]
    assert not (tmp_path / "w").exists()


def test_boilerplate_names_the_resolved_model_sampling(tiny_bids, tmp_path, capsys):
    """Without --steps the text gives the model card's default, as the run would use."""
    from bidsfill.diffusion.card import ModelCard
    from bidsfill.diffusion.weights import default_model_path

    card = ModelCard.load(default_model_path("pseudo3d").with_suffix(".json"))
    assert run(_args(tiny_bids, tmp_path, "--boilerplate-only")) == 0, capsys.readouterr().err
    text = (tmp_path / "out" / "logs" / "CITATION.md").read_text()
    assert f"with {card.sampling.steps} steps" in text
    assert str(card.sha256) in text
