"""Seconds and peak memory of a whole participant run on a demo subject.

Runs ``bidsfill`` in a subprocess (``--nprocs 1``, Linear plugin, so the peak RSS of the
child is the peak of the whole run) for each method given, on demo subject ``sub-01``
session 1, and writes the table to the "## Participant run" section of RESULTS.md.

    python benchmarks/bench_participant.py [--methods nawm ring nonlocal]

With ``--contention`` it instead runs the default method with the default options (every
core this process may use, MultiProc, ``--omp-nthreads`` from them), alone and then beside
a CPU hog of one core, and records both times, their ratio and the load average before
each in the "## Participant run under contention" section (issue 13's goal: <= 2.5x).

    python benchmarks/bench_participant.py --contention
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

import psutil

from bidsfill.demo import make_demo_dataset

sys.path.insert(0, str(Path(__file__).parent))
from _results import write_section  # noqa: E402


def _machine() -> str:
    ram = psutil.virtual_memory().total / 2**30
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{platform.platform()}, {platform.machine()}, {psutil.cpu_count()} CPUs, "
            f"{ram:.0f} GiB RAM, Python {platform.python_version()}; load average at start "
            f"{load} (above 2: the cores were shared and seconds are contended)")  # fmt: skip


def run_once(
    bids: Path, deriv: Path, method: str | None, tmp: Path, tag: str = "", nprocs: bool = True
) -> tuple[float, float, int]:
    out, work = tmp / f"out-{method}{tag}", tmp / f"work-{method}{tag}"
    cmd = [sys.executable, "-m", "bidsfill", str(bids), str(out), "participant",
           "--participant-label", "01", "--session-label", "1", "--derivatives", str(deriv),
           "-w", str(work)]  # fmt: skip
    if method:
        cmd += ["--method", method]
    if nprocs:
        cmd += ["--nprocs", "1"]
    # A wrapper process per run: RUSAGE_CHILDREN is the largest child ever waited for, so
    # only a fresh parent gives this run's own peak.
    wrapper = (
        "import resource, subprocess, sys, time; t = time.perf_counter(); "
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
        "sys.stderr.write(p.stderr[-2000:] if p.returncode else ''); "
        "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "
        "p.returncode)"
    )
    proc = subprocess.run([sys.executable, "-c", wrapper, *cmd], capture_output=True, text=True)
    if proc.stderr:
        print(proc.stderr, file=sys.stderr)
    seconds, peak_kib, code = proc.stdout.split()
    return float(seconds), int(peak_kib) / 1024, int(code)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["nawm", "ring", "nonlocal", "pseudo3d"])
    parser.add_argument("--contention", action="store_true",
                        help="default run alone and beside a one-core CPU hog")  # fmt: skip
    args = parser.parse_args()
    if args.contention:
        contention()
        return
    tmp = Path(tempfile.mkdtemp(prefix="bidsfill-bench-"))
    try:
        demo = make_demo_dataset(tmp / "demo", seed=0)
        rows = []
        for method in args.methods:
            seconds, peak, code = run_once(demo.bids, demo.lesions, method, tmp)
            rows.append((method, seconds, peak, code))
            print(f"{method}: {seconds:.1f} s, peak {peak:.0f} MiB, exit {code}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    lines = [
        f"`python benchmarks/bench_participant.py` ({date.today()}): one demo T1w "
        "(sub-01 ses-1, MNI152 2009 at 2 mm with synthetic MS-like lesions) through the whole "
        "participant workflow (align, brain mask, fill, two Atropos segmentations, derivatives, "
        "report) with `--nprocs 1` (Linear plugin: every node runs in the one bidsfill "
        "process, so its maximum resident set is the run's peak).",
        "",
        f"Machine: {_machine()}.",
        "",
        "Diffusion methods run with their model card's default sampling "
        f"({_card_sampling()}), as a user's `--method pseudo3d` does.",
        "",
        "| method | wall seconds | peak RSS (MiB) | exit |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {m} | {s:.1f} | {p:.0f} | {c} |" for m, s, p, c in rows]
    text = "\n".join(lines)
    print(text)
    write_section(Path(__file__).with_name("RESULTS.md"), "Participant run", text)


def _hog(stop) -> None:  # noqa: ANN001
    while not stop.is_set():
        sum(i * i for i in range(10_000))


def contention() -> None:
    """The default participant run alone, then beside a busy process on one core."""
    import multiprocessing as mp

    tmp = Path(tempfile.mkdtemp(prefix="bidsfill-bench-"))
    rows = []
    try:
        demo = make_demo_dataset(tmp / "demo", seed=0)
        for tag in ("alone", "beside a 1-core hog"):
            stop = mp.Event()
            hog = mp.Process(target=_hog, args=(stop,)) if tag != "alone" else None
            if hog:
                hog.start()
            load = os.getloadavg()[0]
            try:
                seconds, peak, code = run_once(demo.bids, demo.lesions, None, tmp,
                                               tag=tag[:5], nprocs=False)  # fmt: skip
            finally:
                if hog:
                    stop.set()
                    hog.join()
            rows.append((tag, load, seconds, code))
            print(f"{tag}: {seconds:.1f} s (load {load:.1f}), exit {code}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ratio = rows[1][2] / rows[0][2]
    lines = [
        f"`python benchmarks/bench_participant.py --contention` ({date.today()}): the demo's "
        "sub-01 ses-1 through the whole participant workflow with the default options (no "
        f"--nprocs: the {len(os.sched_getaffinity(0))} cores this process may use, MultiProc; "
        "--omp-nthreads from them; the default method and its card's sampling), alone and "
        "then beside a CPU hog of one core. Every node's threads (torch, ITK) follow "
        "--omp-nthreads, and Nipype counts them against --nprocs.",
        "",
        f"Machine: {_machine()}.",
        "",
        "| run | 1-min load before | wall seconds | exit |",
        "|---|---:|---:|---:|",
        *(f"| {t} | {ld:.1f} | {s:.1f} | {c} |" for t, ld, s, c in rows),
        "",
        f"Ratio beside the hog / alone: **{ratio:.2f}x** (issue 13's goal: at most 2.5x).",
    ]
    text = "\n".join(lines)
    print(text)
    write_section(Path(__file__).with_name("RESULTS.md"), "Participant run under contention",
                  text)  # fmt: skip


def _card_sampling() -> str:
    import json

    from bidsfill.diffusion.weights import default_model_path

    path = default_model_path("pseudo3d")
    if path is None:
        return "no shipped weights"
    card = json.loads(path.with_suffix(".json").read_text())
    sampling = card.get("sampling", {})
    return (
        f"pseudo3d: DDIM {sampling.get('steps', 20)} steps, "
        f"mean of {sampling.get('n_samples', 1)} fill(s)"
    )


if __name__ == "__main__":
    main()
