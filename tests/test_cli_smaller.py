"""The smaller things a new user hits on the command line (issue 13).

Fast ``--help``/``--version``, help text without doubled defaults or markup, a ``--gpus``
default that matches the machine.
"""

from __future__ import annotations

import errno
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bidsfill import config
from bidsfill.cli.parser import build_parser
from bidsfill.cli.run import _set_config, cuda_device_count, run

HEAVY = ("torch", "nipype", "nibabel", "scipy", "skimage", "bids", "ants")


# --- --help and --version without heavy imports ------------------------------------------


@pytest.mark.parametrize("flag", ["--version", "--help"])
def test_help_and_version_import_nothing_heavy(flag):
    """Listing the methods must not import torch (it took 8-26 s on a busy machine)."""
    code = (
        "import contextlib, io, json, sys\n"
        "from bidsfill.cli.run import run\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        f"    rc = run([{flag!r}])\n"
        f"heavy = sorted(m for m in {HEAVY!r} if m in sys.modules)\n"
        "print(json.dumps({'rc': rc, 'heavy': heavy, 'out': out.getvalue()}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)  # fmt: skip
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["rc"] == 0
    assert result["heavy"] == []
    assert "bidsfill" in result["out"]


def test_listed_methods_are_the_registered_ones():
    """The static list the parser shows is exactly what importing the fillers registers."""
    from bidsfill.fill.base import available_methods, method_names

    choices = next(a.choices for a in build_parser()._actions if a.dest == "method")
    assert list(choices) == method_names() == available_methods()


# --- help text ---------------------------------------------------------------------------


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_help_shows_each_default_once(capsys):
    assert run(["--help"]) == 0
    text = _flat(capsys.readouterr().out)
    assert not re.search(r"\(default[^)]*\) \(default", text), text
    for empty in ("(default: None)", "(default: False)", "(default: [])"):
        assert empty not in text
    # Defaults that say something are still shown.
    assert "(default: pseudo3d)" in text
    assert "(default: the model's)" in text


@pytest.mark.parametrize("module, builder", [("train", "build_parser"),
                                             ("evaluate", "_build_parser")])  # fmt: skip
def test_tool_descriptions_have_no_markup(module, builder):
    import importlib

    parser = getattr(importlib.import_module(f"bidsfill.cli.{module}"), builder)()
    text = parser.format_help()
    assert "``" not in text
    assert f"bidsfill-{module}:" in _flat(text)


# --- --gpus ------------------------------------------------------------------------------


def test_gpus_default_is_the_cuda_devices(tiny_bids, tmp_path, monkeypatch):
    """No GPU, no GPU slot: a default of 1 made ``-v`` warn on every CPU machine."""
    argv = [str(tiny_bids), str(tmp_path / "out"), "participant", "--method", "nawm"]
    opts = build_parser().parse_args(argv)
    assert opts.gpus is None
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    _set_config(opts, argv)
    assert config.nipype.n_gpu_procs == 0
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    _set_config(opts, argv)
    assert config.nipype.n_gpu_procs == cuda_device_count()
    opts = build_parser().parse_args([*argv[:3], "--device", "cuda"])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    _set_config(opts, argv)
    assert config.nipype.n_gpu_procs == 1  # a GPU fill always holds a slot
    opts = build_parser().parse_args([*argv, "--gpus", "3"])
    _set_config(opts, argv)
    assert config.nipype.n_gpu_procs == 3


def test_shift_reaches_the_fill_node_and_zero_is_kept(tiny_bids, tmp_path):
    from bidsfill.diffusion.sampling import SamplingPlan
    from bidsfill.fill.methods import fill_method

    argv = [str(tiny_bids), str(tmp_path / "out"), "participant"]
    for extra, expected in (([], None), (["--shift", "2"], 2), (["--shift", "0"], 0)):
        _set_config(build_parser().parse_args([*argv, *extra]), argv)
        plan = SamplingPlan.from_params(config.workflow.get())
        assert plan.shift_voxels == expected
        assert fill_method("pseudo3d").fill_params(plan).get("shift_voxels") == expected
    assert "shift_voxels" not in fill_method("nawm").fill_params(SamplingPlan(shift_voxels=2))
    with pytest.raises(SystemExit):
        build_parser().parse_args([*argv, "--shift", "-1"])


def test_antithetic_reaches_the_fill_node_and_the_card_decides_otherwise(tiny_bids, tmp_path):
    from bidsfill.diffusion.card import ModelCard
    from bidsfill.diffusion.sampling import SamplingPlan
    from bidsfill.diffusion.weights import default_model_path
    from bidsfill.fill.methods import fill_method

    argv = [str(tiny_bids), str(tmp_path / "out"), "participant"]
    card = ModelCard.load(default_model_path("pseudo3d").with_suffix(".json"))
    shipped = bool(card.sampling.antithetic)
    for extra, given, resolved in (([], None, shipped), (["--antithetic"], True, True),
                                   (["--no-antithetic"], False, False)):  # fmt: skip
        _set_config(build_parser().parse_args([*argv, *extra]), argv)
        plan = SamplingPlan.from_params(config.workflow.get())
        assert plan.antithetic is given
        assert fill_method("pseudo3d").fill_params(plan).get("antithetic") is given
        assert plan.resolve(card).antithetic is resolved
    assert "antithetic" not in fill_method("nawm").fill_params(SamplingPlan(antithetic=True))


@pytest.mark.parametrize(
    "visible, expected",
    [(None, 2), ("0", 1), ("1,0", 2), ("0,1,2", 2), ("", 0), ("-1", 0), ("0,-1,1", 1),
     ("GPU-8e3c", 1)],
)  # fmt: skip
def test_cuda_device_count(tmp_path, monkeypatch, visible, expected):
    procfs = tmp_path / "gpus"
    for bus in ("0000:17:00.0", "0000:65:00.0"):
        (procfs / bus).mkdir(parents=True)
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert cuda_device_count(procfs, tmp_path / "dev") == expected


def test_cuda_device_count_from_dev_nodes(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    dev = tmp_path / "dev"
    dev.mkdir()
    for name in ("nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm", "nvidia-modeset"):
        (dev / name).touch()
    assert cuda_device_count(tmp_path / "no-procfs", dev) == 2
    assert cuda_device_count(tmp_path / "no-procfs", tmp_path / "empty") == 0


# --- library warnings --------------------------------------------------------------------


_NOISY_RUN = """
import multiprocessing, sys, warnings
import numpy as np
import bidsfill.cli.run as cli_run

def noisy():  # warn as numpy does inside a node, here and in a forked MultiProc worker
    np.float64(1.0) / np.float64(0.0)
    np.mean(np.array([]))
    warnings.warn("raised by a library", RuntimeWarning, stacklevel=1)
    worker = multiprocessing.get_context("fork").Process(target=np.std, args=(np.array([]),))
    worker.start()
    worker.join()
    return 0

cli_run._run_participant = noisy
sys.exit(cli_run.run(sys.argv[1:]))
"""


@pytest.mark.parametrize("verbose", [[], ["-vv"]])
def test_library_warnings_go_to_the_debug_log(tiny_bids, tmp_path, verbose):
    argv = [str(tiny_bids), str(tmp_path / "out"), "participant", "--method", "nawm", *verbose]
    proc = subprocess.run([sys.executable, "-c", _NOISY_RUN, *argv], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr
    assert "Traceback" not in err
    raw = [line for line in err.splitlines() if "Warning" in line and " DEBUG: " not in line]
    assert raw == []
    if verbose:  # the same warnings, each once, as debug lines of the log
        debug = [line for line in err.splitlines() if " DEBUG: RuntimeWarning" in line]
        for text in ("divide by zero", "Mean of empty slice", "raised by a library",
                     "Degrees of freedom"):  # fmt: skip
            assert any(text in line for line in debug), err
    else:
        assert err == ""


# --- a failed write ----------------------------------------------------------------------


def test_part_file_is_removed_when_the_write_fails(tmp_path):
    from bidsfill.io.atomic import part_file

    out = tmp_path / "figure.png"
    out.write_text("the previous run's figure")
    with pytest.raises(OSError), part_file(out) as tmp:
        tmp.write_text("half a fig")
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figure.png"]
    assert out.read_text() == "the previous run's figure"
    with part_file(out) as tmp:
        tmp.write_text("new")
    assert out.read_text() == "new" and not tmp.exists()


def test_full_disk_leaves_no_part_and_no_empty_crash_file(tiny_bids, tmp_path, capsys,
                                                          monkeypatch):  # fmt: skip
    """The derivatives writer and then Nipype's crash file both meet a full disk."""
    from types import SimpleNamespace

    import nipype.pipeline.plugins.tools as nipype_tools

    import bidsfill.bids.derivatives as derivatives

    def half_copy(src, dst):
        data = Path(src).read_bytes()
        Path(dst).write_bytes(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device", str(dst))

    def crash_file_on_full_disk(crashfile, crashinfo):
        Path(crashfile).touch()  # open() succeeds, the first write does not
        raise OSError(errno.ENOSPC, "No space left on device", crashfile)

    monkeypatch.setattr(derivatives, "shutil", SimpleNamespace(copyfile=half_copy))
    monkeypatch.setattr(nipype_tools, "crash2txt", crash_file_on_full_disk)
    out = tmp_path / "out"
    code = run(
        [
            str(tiny_bids),
            str(out),
            "participant",
            "-w",
            str(tmp_path / "w"),
            "--participant-label",
            "01",
            "--session-label",
            "1",
            "--skip-bids-validation",
            "--method",
            "nawm",
            "--nprocs",
            "1",
        ]
    )  # fmt: skip  (Linear: in this process)
    err = capsys.readouterr().err
    assert code == 1, err
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert "sub-01" in line and "No space left on device" in line, line
    assert "crash file could not be written" in line, line
    assert "ds_" in line or "write" in line, line  # the node that failed
    assert list(out.rglob("*.part")) == []
    assert [p for p in out.rglob("crash-*") if p.stat().st_size == 0] == []
    assert not list(out.rglob("*desc-filled_T1w.nii.gz"))  # nothing half-written looks done


# --- --seed reaches every node -----------------------------------------------------------


def test_seed_reaches_the_brain_mask(tiny_bids, tmp_path, monkeypatch):
    """The README promises --seed seeds every random draw: the brain mask's registration too."""
    import bidsfill.segment as segment
    from bidsfill.bids.discovery import discover, load_layout
    from bidsfill.interfaces.segment import BrainMask
    from bidsfill.workflows.base import init_fill_run_wf

    runs, _ = discover(load_layout(tiny_bids, validate=False), participant_label=["01"])
    wf = init_fill_run_wf(run=runs[0], bids_dir=tiny_bids, output_dir=tmp_path / "out",
                          method="nawm", seed=11)  # fmt: skip
    assert wf.get_node("brain_mask").inputs.seed == 11
    seen = {}

    def estimate(image, affine, **kwargs):
        seen.update(kwargs)
        return image > 0, True

    monkeypatch.setattr(segment, "estimate_brain_mask", estimate)
    monkeypatch.chdir(tmp_path)
    BrainMask(in_file=str(runs[0].t1w), seed=11).run()
    assert seen.get("seed") == 11


# --- --skip-segmentation -----------------------------------------------------------------


def test_skip_segmentation_builds_no_segmentation_node(tiny_bids, tmp_path):
    from bidsfill.bids.discovery import discover, load_layout
    from bidsfill.workflows.base import init_fill_run_wf

    runs, _ = discover(load_layout(tiny_bids, validate=False), participant_label=["01"])
    kwargs = dict(run=runs[0], bids_dir=tiny_bids, output_dir=tmp_path / "out", method="nawm",
                  seed=0)  # fmt: skip
    names = set(init_fill_run_wf(**kwargs).list_node_names())
    assert {"brain_mask", "seg_orig", "seg_filled"} <= names
    names = set(init_fill_run_wf(**kwargs, segment=False).list_node_names())
    assert names.isdisjoint({"brain_mask", "seg_orig", "seg_filled"})
    assert {"align_mask", "fill", "ds_run"} <= names


def test_skip_segmentation_writes_the_fill_and_the_report(tiny_bids, tmp_path, capsys):
    out = tmp_path / "out"
    code = run([str(tiny_bids), str(out), "participant", "-w", str(tmp_path / "w"),
                "--participant-label", "01", "--session-label", "1", "--skip-bids-validation",
                "--method", "nawm", "--nprocs", "1", "--skip-segmentation"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    anat = out / "sub-01" / "ses-1" / "anat"
    names = sorted(p.name for p in anat.iterdir())
    assert "sub-01_ses-1_desc-filled_T1w.nii.gz" in names
    assert "sub-01_ses-1_label-lesion_mask.nii.gz" in names
    assert not [n for n in names if "dseg" in n or "probseg" in n], names
    sidecar = json.loads((anat / "sub-01_ses-1_desc-filled_T1w.json").read_text())
    assert isinstance(sidecar["SkullStripped"], bool)
    report = (out / "sub-01.html").read_text()
    assert "Skipped (--skip-segmentation)" in report
    assert "none (--skip-segmentation)" in report
    assert (out / "sub-01" / "figures" / "sub-01_ses-1_desc-intensity_T1w.png").exists()
    assert not list((out / "sub-01" / "figures").glob("*_dseg.svg"))
    assert not list(out.rglob("crash-*"))
    # The group level and --reports-only work on such an output.
    assert run([str(tiny_bids), str(out), "group"]) == 0
    assert run([str(tiny_bids), str(out), "participant", "-w", str(tmp_path / "w"),
                "--participant-label", "01", "--session-label", "1", "--skip-bids-validation",
                "--method", "nawm", "--reports-only"]) == 0  # fmt: skip
    assert "Skipped (--skip-segmentation)" in (out / "sub-01.html").read_text()


# --- scripts/test.sh says what it installs -----------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def test_test_script_says_what_it_installs(tmp_path):
    """Without chromium on PATH, the plan names the Debian packages, apt-get and root."""
    import shutil

    bin_dir = tmp_path / "bin"  # a PATH with the tools the script needs, and no chromium
    bin_dir.mkdir()
    for tool in ("dirname", "id"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    bash = shutil.which("bash")
    proc = subprocess.run([bash, str(ROOT / "scripts" / "test.sh"), "--plan"], cwd=tmp_path,
                          env={"PATH": str(bin_dir)}, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    plan = " ".join(proc.stdout.split())
    for needle in ("chromium", "chromium-driver", "apt-get", "root", "440 MB"):
        assert needle in plan, plan
    # And it prints the plan first when it really runs.
    script = (ROOT / "scripts" / "test.sh").read_text()
    body = script[script.index('if [ "${1:-}" = "--plan" ]') :]
    assert body.index("\nplan\n") < body.index("scripts/setup.sh") < body.index("install-test")


def test_readme_quick_start_says_what_the_tests_install():
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## Quick start")
    quick = " ".join(readme[start : readme.index("\n## ", start + 1)].split())
    for needle in ("chromium", "apt-get", "root", "--plan"):
        assert needle in quick, needle


def test_tests_find_shared_data_from_the_repository():
    """No test names a path of the machine it was written on (issue 13)."""
    machine = "/" + "work/"  # not spelt whole, so this file does not match itself
    offenders = [
        f"{path.name}:{n}"
        for path in sorted((ROOT / "tests").glob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if f'"{machine}' in line or f"'{machine}" in line
    ]
    assert offenders == []
