"""Seconds and peak memory of a whole participant run on a demo subject.

Runs ``bidsfill`` in a subprocess (``--nprocs 1``, Linear plugin, so the peak RSS of the
child is the peak of the whole run) for each method given, on demo subject ``sub-01``
session 1, and writes the table to the "## Participant run" section of RESULTS.md.

    python benchmarks/bench_participant.py [--methods nawm ring nonlocal]
"""

from __future__ import annotations

import argparse
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import psutil

from bidsfill.demo import make_demo_dataset

sys.path.insert(0, str(Path(__file__).parent))
from _results import write_section  # noqa: E402


def _machine() -> str:
    ram = psutil.virtual_memory().total / 2**30
    return (f"{platform.platform()}, {platform.machine()}, {psutil.cpu_count()} CPUs, "
            f"{ram:.0f} GiB RAM, Python {platform.python_version()}")  # fmt: skip


def run_once(bids: Path, deriv: Path, method: str, tmp: Path) -> tuple[float, float, int]:
    out, work = tmp / f"out-{method}", tmp / f"work-{method}"
    cmd = [sys.executable, "-m", "bidsfill", str(bids), str(out), "participant",
           "--participant-label", "01", "--session-label", "1", "--derivatives", str(deriv),
           "--method", method, "--nprocs", "1", "-w", str(work)]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if proc.returncode != 0:
        print(proc.stderr[-2000:], file=sys.stderr)
    return seconds, max(peak_mib, before / 1024), proc.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["nawm", "ring", "nonlocal"])
    args = parser.parse_args()
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
        "report) with `--nprocs 1`; peak RSS is the child process's maximum resident set "
        "(note: ru_maxrss of children is the largest single child, which here is the only one).",
        "",
        f"Machine: {_machine()}.",
        "",
        "| method | wall seconds | peak RSS (MiB) | exit |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {m} | {s:.1f} | {p:.0f} | {c} |" for m, s, p, c in rows]
    text = "\n".join(lines)
    print(text)
    write_section(Path(__file__).with_name("RESULTS.md"), "Participant run", text)


if __name__ == "__main__":
    main()
