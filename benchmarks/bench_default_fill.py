"""Speed of the default fill on a 1 mm whole-head scan with 15 lesions (issue 12's budget).

The scan is a real 1 mm head with skull (default: sub-fsconf01 of the shared healthy-T1w
data, held out from training); the lesions are the 15 largest components of a real MS
consensus mask moved into it through its MNI registration, grown by 4 mm, as in the case
that took 49 minutes before (15 lesions, about 35 ml). The default fill (the CLI's
``--method`` default with the model card's sampling) runs through ``fill_image``, with
torch and ITK threads set to the cores this process may use. It runs alone, then again
beside a CPU hog (a busy process on one core), and the table records the load average
before each run and the ratio of the two times.

    python benchmarks/bench_default_fill.py [--scan PATH] [--no-hog]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from _results import write_section

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"
SECTION = "Default fill speed (1 mm head, 15 lesions)"


def _hog(stop: mp.Event) -> None:  # noqa: ANN001
    while not stop.is_set():
        sum(i * i for i in range(10_000))


def lesion_case(scan: Path, ms_mask: Path, n_lesions: int = 15, grow_mm: float = 4.0):
    """(image, zooms, mask) of the scan with the real MS mask's largest lesions, grown."""
    from scipy import ndimage

    from bidsfill.lesions import RealMask, place_mni_mask
    from bidsfill.train.dataset import load_volume

    vol = load_volume(scan, scan.name, cache_dir=HERE.parent / "runs" / "bench-cache")
    mask = place_mni_mask(RealMask(ms_mask), vol.image.shape, vol.affine, vol.to_mni, vol.brain)
    labels, n = ndimage.label(mask, structure=np.ones((3, 3, 3)))
    sizes = np.bincount(labels.ravel())[1:]
    keep = np.argsort(sizes)[::-1][:n_lesions] + 1
    mask = np.isin(labels, keep)
    radius = [int(round(grow_mm / z)) for z in vol.zooms]
    ball = np.ones([2 * r + 1 for r in radius], bool)
    grid = np.ogrid[tuple(slice(-r, r + 1) for r in radius)]
    ball &= sum((g * z / grow_mm) ** 2 for g, z in zip(grid, vol.zooms, strict=True)) <= 1
    mask = ndimage.binary_dilation(mask, ball) & vol.brain
    _, count = ndimage.label(mask, structure=np.ones((3, 3, 3)))
    return vol, mask, count


def timed_fill(vol, mask, threads: int, **sampling) -> tuple[float, dict]:  # noqa: ANN001
    import torch

    from bidsfill.config import workflow
    from bidsfill.fill import fill_image

    torch.set_num_threads(threads)
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(threads)
    start = time.perf_counter()
    result = fill_image(
        vol.image, mask, method=workflow.method, zooms=vol.zooms, seed=0,
        affine=vol.affine, device="cpu", omp_nthreads=threads, **sampling,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    assert np.array_equal(result.filled[~mask], vol.image[~mask])
    return seconds, result.params


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scan", type=Path,
                   default=DATA / "healthy-t1w/sub-fsconf01/anat/sub-fsconf01_T1w.nii.gz")  # fmt: skip
    p.add_argument("--ms-mask", type=Path,
                   default=DATA / "lesion-masks/ms-openms/openms-26_mask.nii.gz")  # fmt: skip
    p.add_argument("--no-hog", action="store_true", help="skip the run beside a CPU hog")
    p.add_argument("--n-samples", type=int, default=None,
                   help="fills to average instead of the card's (what a default change would cost)")  # fmt: skip
    p.add_argument("--model", type=Path, default=None,
                   help="other weights (with their card) instead of the default's")  # fmt: skip
    p.add_argument("--section", default=SECTION, help="the RESULTS.md section to write")
    args = p.parse_args()
    sampling = {} if args.n_samples is None else {"n_samples": args.n_samples}
    if args.model is not None:
        sampling["model"] = str(args.model)
    threads = len(os.sched_getaffinity(0))
    vol, mask, count = lesion_case(args.scan, args.ms_mask)
    ml = float(mask.sum()) * float(np.prod(vol.zooms)) / 1000
    rows = []
    load = os.getloadavg()[0]
    seconds, params = timed_fill(vol, mask, threads, **sampling)
    rows.append(("alone", load, seconds))
    if not args.no_hog:
        stop = mp.Event()
        hog = mp.Process(target=_hog, args=(stop,), daemon=True)
        hog.start()
        time.sleep(2)
        load = os.getloadavg()[0]
        hog_seconds, _ = timed_fill(vol, mask, threads, **sampling)
        stop.set()
        hog.join()
        rows.append(("beside a 1-core CPU hog", load, hog_seconds))
    lines = [
        f"Scan `{args.scan.name}` ({'x'.join(map(str, vol.image.shape))} at "
        f"{'x'.join(f'{z:g}' for z in vol.zooms)} mm, with skull); the 15 largest lesions of "
        f"`{args.ms_mask.name}` grown by 4 mm ({count} connected regions once grown), "
        f"{ml:.1f} ml in all. Default fill"
        f"{'' if not sampling else ' with --n-samples ' + str(args.n_samples)}: "
        f"`{params.get('Architecture', '')}` model `{params.get('ModelName')}` "
        f"(sha256 `{str(params.get('ModelSHA256'))[:12]}…`), DDIM {params.get('Steps')} "
        f"step(s), {params.get('NSamples')} fill(s), {params.get('Crops')} crops, "
        f"{params.get('ModelCalls')} model calls; {threads} torch/ITK threads "
        "(the cores this process may use).",
        "",
        "| run | load average (1 min) before | fill seconds |",
        "|---|---|---|",
        *(f"| {name} | {la:.2f} | {s:.1f} |" for name, la, s in rows),
    ]
    if len(rows) == 2:
        lines += ["", f"Ratio beside the hog / alone: {rows[1][2] / rows[0][2]:.2f}."]
    lines += [
        "",
        f"`python benchmarks/bench_default_fill.py {' '.join(sys.argv[1:])}` "
        f"({time.strftime('%Y-%m-%d %H:%M')}); machine: {platform.machine()}, "
        f"{os.cpu_count()} cores, {platform.system()} {platform.release()}.",
    ]
    body = "\n".join(lines)
    print(body)
    write_section(HERE / "RESULTS.md", args.section, body)


if __name__ == "__main__":
    main()
