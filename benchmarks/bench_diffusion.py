"""Benchmark the diffusion fillers: seconds and peak memory per subject.

Subject: the same demo-like brain as ``bench_fillers.py`` (MNI152 2009 at 2 mm with 10
seeded ellipsoid lesions in the WM). Each method x sampler x steps runs in its own
subprocess so its peak RSS is its own. Weights: the shipped ones when
``bidsfill/data/models/<method>.safetensors`` exists, otherwise randomly initialised
weights of the default architecture (timings only; the quality column is then
meaningless and marked so). Writes the "## Diffusion engine" section of
``benchmarks/RESULTS.md``, keeping the other sections.

    python benchmarks/bench_diffusion.py [--threads 2] [--device cpu] [--quick] [--no-ddpm]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
SECTION = "## Diffusion engine"

# (method, sampler, steps, fills averaged); the first row is the shipped model card's
# default sampling (DDIM 10, mean of 4), what `--method pseudo3d` runs.
CONFIGS = [
    ("pseudo3d", "ddim", 10, 4),
    ("pseudo3d", "ddim", 10, 1),
    ("pseudo3d", "ddim", 20, 1),
    ("pseudo3d", "ddim", 50, 1),
    ("slicewise", "ddim", 20, 1),
    ("wdm3d", "ddim", 20, 1),
    ("repaint", "ddim", 20, 1),
    ("pseudo3d", "ddpm", 1000, 1),  # the papers' full ancestral sampler, for scale
]
QUICK = CONFIGS[:1]


def _weights(method: str, workdir: Path) -> tuple[Path, bool]:
    """Shipped weights, or random weights of the default architecture (False = untrained)."""
    import torch

    from bidsfill.diffusion.architectures import DEFAULT_CONFIGS, build_network
    from bidsfill.diffusion.card import default_preprocessing
    from bidsfill.diffusion.schedules import NoiseSchedule
    from bidsfill.diffusion.weights import default_model_path, save_weights

    shipped = default_model_path(method)
    if shipped is not None:
        return shipped, True
    arch = "pseudo3d" if method == "repaint" else method
    cfg = dict(DEFAULT_CONFIGS[arch])
    if method == "repaint":
        cfg["in_channels"] = 1
    torch.manual_seed(0)
    net = build_network(arch, **cfg)
    torch.nn.init.normal_(net.out[-1].weight, std=0.01)  # not the all-zero output
    card = {
        "architecture": arch,
        "config": cfg,
        "schedule": NoiseSchedule(
            1000, "linear", "sample" if arch == "wdm3d" else "epsilon"
        ).to_dict(),
        "preprocessing": default_preprocessing(arch),
        "training": {"data": "none: random initialisation for benchmarking"},
    }
    return save_weights(net, card, workdir / f"random-{method}"), False


def run_one(
    method: str, sampler: str, steps: int, n_samples: int, threads: int, device: str
) -> dict:
    """Fill the demo subject once and report seconds, peak RSS and in-mask quality."""
    import resource

    sys.path.insert(0, str(HERE))
    from bench_fillers import demo_brain

    from bidsfill.fill.base import fill_image

    truth, image, mask, _ = demo_brain()
    with tempfile.TemporaryDirectory() as tmp:
        path, trained = _weights(method, Path(tmp))
        start = time.perf_counter()
        res = fill_image(
            image, mask, method=method, zooms=(2.0, 2.0, 2.0), seed=0, model=path,
            sampler=sampler, steps=steps, n_samples=n_samples, device=device, omp_nthreads=threads,
        )  # fmt: skip
        seconds = time.perf_counter() - start
    err = res.filled[mask] - truth[mask]
    mse = float(np.mean(err**2))
    rng = float(truth.max() - truth.min())
    return {
        "method": method,
        "sampler": sampler,
        "steps": res.params["Steps"],
        "n_samples": res.params["NSamples"],
        "seconds": seconds,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "psnr": 10 * np.log10(rng**2 / mse) if mse > 0 else float("inf"),
        "crops": res.params["Crops"],
        "model_calls": res.params["ModelCalls"],
        "device": res.device,
        "weights": _trained_label(res.params) if trained else "random init (untrained)",
        "lesion_voxels": int(mask.sum()),
    }


def _write(rows: list[dict], threads: int, device: str) -> str:
    lines = [
        SECTION,
        "",
        f"`python benchmarks/bench_diffusion.py --threads {threads} --device {device}` "
        f"({datetime.date.today()}): the demo-like subject of `bench_fillers.py` (MNI152 2009 "
        f"at 2 mm, 10 WM lesions, {rows[0]['lesion_voxels'] if rows else '?'} voxels); one "
        "subprocess per row, peak RSS includes the interpreter and imports. Default "
        "configuration: first row (target on 2 CPU cores: <= 60 s, <= 4 GB).",
        "",
        f"Machine: {platform.platform()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}; load average at start "
        f"{', '.join(f'{x:.1f}' for x in os.getloadavg())} (CPU shared with other jobs).",
        "",
        "| method | sampler | steps | fills averaged | seconds | peak RSS (MiB) | crops | "
        "model calls | device | PSNR in mask (dB) | weights |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['method']} | {r['sampler']} | {r['steps']} | {r['n_samples']} "
                         f"| – | – | – | – | – | – | {r['error']} |")  # fmt: skip
            continue
        psnr = f"{r['psnr']:.2f}" if r["weights"].startswith("trained") else f"({r['psnr']:.2f})"
        lines.append(
            f"| {r['method']} | {r['sampler']} | {r['steps']} | {r['n_samples']} | "
            f"{r['seconds']:.1f} | "
            f"{r['peak_rss_mib']:.0f} | {r['crops']} | {r['model_calls']} | {r['device']} | "
            f"{psnr} | {r['weights']} |"
        )
    lines += [
        "",
        "PSNR in parentheses: untrained weights, shown only to prove the pipeline runs.",
        "",
    ]
    return "\n".join(lines)


def _update_results(section: str) -> None:
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(section + "\n", text)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    RESULTS.write_text(text)


def _trained_label(params: dict) -> str:
    """'trained' plus the shipped card's training steps and the weights' sha256 prefix."""
    import json as _json

    from bidsfill.diffusion.weights import default_model_path

    path = default_model_path("pseudo3d")
    steps = "?"
    if path is not None:
        card = _json.loads(path.with_suffix(".json").read_text())
        steps = card.get("training", {}).get("steps", "?")
    return f"trained ({steps} steps, {str(params.get('ModelSHA256', ''))[:12]})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="only the default configuration")
    parser.add_argument("--one", nargs=4, metavar=("METHOD", "SAMPLER", "STEPS", "N"))
    parser.add_argument("--no-ddpm", action="store_true",
                        help="leave out the 1000-step DDPM row (about an hour on 2 CPU cores)")  # fmt: skip
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if args.one:
        method, sampler, steps, n = args.one
        row = run_one(method, sampler, int(steps), int(n), args.threads, args.device)
        print(json.dumps(row))
        return
    rows = []
    for method, sampler, steps, n in QUICK if args.quick else CONFIGS:
        if sampler == "ddpm" and args.no_ddpm:
            error = f"not run (--no-ddpm): {steps} model calls per crop"
            rows.append({"method": method, "sampler": sampler, "steps": steps, "n_samples": n,
                         "error": error})  # fmt: skip
            continue
        cmd = [sys.executable, __file__, "--one", method, sampler, str(steps), str(n),
               "--threads", str(args.threads), "--device", args.device]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            tail = (proc.stderr.strip().splitlines() or ["failed"])[-1]
            row = {"method": method, "sampler": sampler, "steps": steps, "n_samples": n,
                   "error": tail}  # fmt: skip
        else:
            row = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(json.dumps(row), flush=True)
    section = _write(rows, args.threads, args.device)
    print(section)
    if not args.no_write:
        _update_results(section)


if __name__ == "__main__":
    main()
