"""Throughput of whole participant runs: subjects per hour and peak memory.

Builds a demo dataset of ``2 x --copies`` subjects (each copy is ``make_demo_dataset`` with
its own seed: one subject with two sessions, one whose mask is on the FLAIR grid), then
runs ``bidsfill ... participant`` on all of them with

- MultiProc at ``--nprocs 1`` (Nipype's Linear plugin) and ``--nprocs 2``,
- Nipype's SLURM plugin on a one-node cluster started by ``scripts/slurm-up.sh`` (the row
  is left out, with the reason, where SLURM cannot be installed),

sampling the resident memory of every process of the run (the bidsfill process, its
MultiProc workers, and the SLURM jobs' Python processes) every 0.2 s. It also lists, per
lesion count, the fill time of the classical fillers on the 2 mm template. The tables go to the
"## Throughput" section of RESULTS.md.

    python benchmarks/bench_throughput.py [--copies 1] [--downsample 2] [--method ring]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

import numpy as np
import psutil

from bidsfill.demo import make_demo_dataset

sys.path.insert(0, str(Path(__file__).parent))
from _results import write_section  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _machine() -> str:
    ram = psutil.virtual_memory().total / 2**30
    return (f"{platform.platform()}, {platform.machine()}, {psutil.cpu_count()} CPUs, "
            f"{ram:.0f} GiB RAM, Python {platform.python_version()}")  # fmt: skip


def build_dataset(root: Path, copies: int, downsample: int) -> tuple[Path, Path, int]:
    """Merge ``copies`` demo datasets (seeds 0..copies-1) into one, renumbering subjects."""
    bids, lesions = root / "bids", root / "bids" / "derivatives" / "lesions"
    participants = []
    for k in range(copies):
        demo = make_demo_dataset(root / f"seed{k}", seed=k, downsample=downsample)
        labels = {"01": f"{2 * k + 1:02d}", "02": f"{2 * k + 2:02d}"}

        def rename(text: str, labels=labels) -> str:
            return re.sub(r"sub-(0[12])", lambda m: f"sub-{labels[m.group(1)]}", text)

        for src in demo.bids.rglob("*"):
            rel = src.relative_to(demo.bids)
            if not src.is_file() or (rel.parts[0] != "derivatives" and k and len(rel.parts) == 1):
                continue  # top-level files of the dataset come from the first copy
            dst = bids / rename(str(rel))
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.suffix in (".json", ".tsv") and src.name != "participants.tsv":
                dst.write_text(rename(src.read_text()))
            elif src.name != "participants.tsv":
                shutil.copy2(src, dst)
        participants += [f"sub-{labels['01']}\tpatient", f"sub-{labels['02']}\tpatient"]
        shutil.rmtree(root / f"seed{k}")
    (bids / "participants.tsv").write_text(
        "participant_id\tgroup\n" + "\n".join(participants) + "\n"
    )
    return bids, lesions, 2 * copies


class MemorySampler(threading.Thread):
    """Peak RSS (MiB) summed over a run's processes and of its largest single process.

    The run's processes are the descendants of ``root_pid`` plus any process whose command
    line names ``work_dir`` (SLURM jobs, which slurmd starts, not the bidsfill process).
    """

    def __init__(self, root_pid: int, work_dir: Path, period: float = 0.2):
        super().__init__(daemon=True)
        self.root_pid, self.work_dir, self.period = root_pid, str(work_dir), period
        self.peak_total = self.peak_master = self.peak_worker = 0.0
        self._halt = threading.Event()

    def _rss(self) -> tuple[float, float, float]:
        master, others = 0.0, []
        try:
            root = psutil.Process(self.root_pid)
            master = root.memory_info().rss / 2**20
            family = {p.pid: p for p in root.children(recursive=True)}
        except psutil.Error:
            family = {}
        for proc in psutil.process_iter(["cmdline"]):
            cmd = proc.info.get("cmdline") or []
            if any(self.work_dir in part for part in cmd):
                family.setdefault(proc.pid, proc)
        family.pop(self.root_pid, None)  # its own command line names the work dir too
        for proc in family.values():
            try:
                others.append(proc.memory_info().rss / 2**20)
            except psutil.Error:
                pass
        # Linear runs every node in the bidsfill process itself.
        return master + sum(others), master, max(others, default=master)

    def run(self) -> None:
        while not self._halt.is_set():
            total, master, worker = self._rss()
            self.peak_total = max(self.peak_total, total)
            self.peak_master = max(self.peak_master, master)
            self.peak_worker = max(self.peak_worker, worker)
            time.sleep(self.period)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def run_once(argv: list[str], work: Path, env: dict[str, str]) -> tuple[float, MemorySampler, int]:
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    sampler = MemorySampler(proc.pid, work)
    sampler.start()
    _, err = proc.communicate()
    seconds = time.perf_counter() - start
    sampler.stop()
    if proc.returncode != 0:
        print(err[-3000:], file=sys.stderr)
    return seconds, sampler, proc.returncode


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def lesion_load_rows(methods: list[str], counts: list[int]) -> list[tuple[str, int, float, float]]:
    """(method, lesions, volume mL, fill seconds) on the 2 mm MNI template, library level.

    The same ``fill_image`` call the fill node makes, without the workflow around it, so
    the fill's own growth with lesion load is not hidden by the fixed per-subject cost.
    """
    from bidsfill.demo import _load_template
    from bidsfill.fill import fill_image
    from bidsfill.lesions import lesion_sites, sample_lesion_mask

    maps, affine = _load_template(1)
    zooms = (float(abs(affine[0, 0])),) * 3
    sites = lesion_sites(maps["wm"], zooms, brain_mask=maps["brain"] > 0, csf_prob=maps["csf"])
    image = np.ascontiguousarray(maps["t1"], dtype=np.float32)
    rows = []

    def lesions(n: int) -> np.ndarray:
        return sample_lesion_mask(sites, sites.zooms, np.random.default_rng(n), kind="ms",
                                  n_lesions=n, volume_ml=(0.05, 4.0))  # fmt: skip

    warm = lesions(1)
    for method in methods:  # warm-up: imports and first-call costs are not the fill's
        fill_image(image, warm, method=method, zooms=zooms, seed=0)
    for n in counts:
        mask = lesions(n)
        ml = float(mask.sum() * np.prod(zooms) / 1000)
        for method in methods:
            start = time.perf_counter()
            fill_image(image, mask, method=method, zooms=zooms, seed=0)
            rows.append((method, n, ml, time.perf_counter() - start))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=1, help="demo copies (2 subjects each)")
    parser.add_argument("--downsample", type=int, default=2, help="1: 2 mm grid, 2: ~4 mm")
    parser.add_argument("--method", default="ring")
    parser.add_argument("--no-slurm", action="store_true", help="leave out the SLURM row")
    parser.add_argument("--load-methods", nargs="+", default=["ring", "nawm", "nonlocal"])
    parser.add_argument("--load-counts", nargs="+", type=int, default=[2, 8, 32])
    parser.add_argument("--results", type=Path, default=Path(__file__).parent / "RESULTS.md")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bidsfill-throughput-", dir="/tmp"))
    os.chmod(tmp, 0o755)  # munged wants the folders above its socket searchable by all
    env = dict(os.environ, OMP_NUM_THREADS="1")
    notes, rows, lesions = [], [], []
    cluster = None
    try:
        bids, deriv, n_subjects = build_dataset(tmp / "data", args.copies, args.downsample)
        n_t1w = len(list(bids.glob("sub-*/**/anat/*_T1w.nii.gz")))
        configs = [("MultiProc --nprocs 1 (Linear)", ["--nprocs", "1"]),
                   ("MultiProc --nprocs 2", ["--nprocs", "2"])]  # fmt: skip
        if not args.no_slurm:
            cluster = tmp / "slurm"
            up_env = dict(os.environ, BIDSFILL_SLURMCTLD_PORT=str(_free_port()),
                          BIDSFILL_SLURMD_PORT=str(_free_port()))  # fmt: skip
            up = subprocess.run(["bash", str(REPO / "scripts" / "slurm-up.sh"), str(cluster)],
                                env=up_env, capture_output=True, text=True)  # fmt: skip
            if up.returncode == 0:
                env["SLURM_CONF"] = str(cluster / "slurm.conf")
                plugin = tmp / "slurm.yml"
                plugin.write_text('plugin: SLURM\nplugin_args:\n  sbatch_args: "--mem=2G -c 1"\n')
                cpus = psutil.cpu_count()
                configs.append((f"SLURM plugin, 1 node x {cpus} CPUs, 1 CPU per job",
                                ["--use-plugin", str(plugin)]))  # fmt: skip
            else:
                notes.append("SLURM row left out: " + (up.stderr.strip().splitlines() or ["?"])[-1])
        for label, extra in configs:
            tag = re.sub(r"\W+", "-", label)
            out, work = tmp / f"out-{tag}", tmp / f"work-{tag}"
            argv = [sys.executable, "-m", "bidsfill", str(bids), str(out), "participant",
                    "--derivatives", str(deriv), "--method", args.method, "--seed", "0",
                    "-w", str(work), *extra]  # fmt: skip
            load = os.getloadavg()[0]
            seconds, mem, code = run_once(argv, work, env)
            status = "ok" if code == 0 else f"exit {code}"
            print(f"{label}: {seconds:.1f} s, peak {mem.peak_total:.0f} MiB, {status}", flush=True)
            rows.append((label, seconds, n_subjects * 3600 / seconds, mem, load, status))
        lesions = lesion_load_rows(args.load_methods, args.load_counts)
    finally:
        if cluster is not None:
            subprocess.run(["bash", str(REPO / "scripts" / "slurm-down.sh"), str(cluster)],
                           capture_output=True)  # fmt: skip
        shutil.rmtree(tmp, ignore_errors=True)

    table = ["| engine | wall s | subjects/h | peak RSS, all processes (MiB) | "
             "peak RSS, bidsfill process (MiB) | peak RSS, largest worker/job (MiB) | "
             "load avg at start | status |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for label, seconds, per_hour, mem, load, status in rows:
        table.append(f"| {label} | {seconds:.0f} | {per_hour:.1f} | {mem.peak_total:.0f} | "
                     f"{mem.peak_master:.0f} | {mem.peak_worker:.0f} | {load:.1f} | {status} |")  # fmt: skip
    fills = ["| method | lesions | lesion volume (mL) | fill seconds |", "|---|---|---|---|"]
    fills += [f"| {m} | {n} | {ml:.1f} | {sec:.2f} |" for m, n, ml, sec in lesions]
    body = "\n".join([
        f"Machine: {_machine()}. {date.today().isoformat()}.",
        "",
        f"`python benchmarks/bench_throughput.py --copies {args.copies} --downsample "
        f"{args.downsample} --method {args.method}`: {n_subjects} demo subjects ({n_t1w} T1w "
        f"images, ~{2 * args.downsample} mm grid), whole participant runs (mask alignment, fill, "
        "two segmentations, derivatives, report). Peak RSS is sampled every 0.2 s; the "
        "largest worker/job is what one node of one subject needed at most. The machine is "
        "shared: the load average says how busy it was.",
        "",
        *table,
        "",
        *notes,
        "",
        "Each engine runs once; on a shared 2-core machine the spread between repeats is "
        "large. With 2 cores the "
        "extra processes of MultiProc and SLURM mostly add cost: every worker or job imports "
        "bidsfill, torch and antspyx again, ITK runs `--omp-nthreads` threads per node, and "
        "Nipype's SLURM plugin polls `squeue` every 2 s and waits for each job's result file. "
        "They pay off where there are cores or nodes to spread over.",
        "",
        "Lesion load against fill time: `fill_image` alone on the MNI152 template at 2 mm "
        "with synthetic MS-like lesions (one process, after a warm-up import):",
        "",
        *fills,
    ])  # fmt: skip
    print(body)
    write_section(args.results, "Throughput", body)


if __name__ == "__main__":
    main()
