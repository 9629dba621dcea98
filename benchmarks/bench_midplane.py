"""Speed and agreement of the mid-sagittal plane estimate: antspyx's default rigid
schedule against the shorter one the fill uses (``midline.MIDPLANE_ITERATIONS``).

A mirror-conditioned default estimates the plane of every scan it fills, so the
registration is part of the fill's time budget. For each scan: seconds of each schedule,
the angle between the two planes and their distance at the brain's centre (the mean of
the voxels above the scan's 60th percentile).

    python benchmarks/bench_midplane.py [--threads 1] [--scans PATH ...]

Recorded in "## Mid-sagittal plane speed" of RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
from _results import run_line, write_section

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "healthy-t1w"
SECTION = "Mid-sagittal plane speed"
SCANS = ("sub-fsconf01", "sub-ds2748s61", "sub-head01", "sub-ixi015")


def _estimate(image: np.ndarray, affine: np.ndarray, iterations, threads: int):
    """(plane, seconds) with ``iterations`` (None: antspyx's default schedule)."""
    from bidsfill.segment.midline import estimate_midplane

    start = time.perf_counter()
    plane = estimate_midplane(image, affine, n_threads=threads, iterations=iterations)
    return plane, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--scans", nargs="+", type=Path,
                        default=[DATA / s / "anat" / f"{s}_T1w.nii.gz" for s in SCANS])  # fmt: skip
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import nibabel as nib

    from bidsfill.segment.midline import MIDPLANE_ITERATIONS

    load, start = os.getloadavg()[0], time.perf_counter()
    rows = ["| scan | voxel (mm) | default (s) | short (s) | angle (deg) | distance (mm) |",
            "|---|---|---|---|---|---|"]  # fmt: skip
    for path in args.scans:
        img = nib.as_closest_canonical(nib.load(path))
        image = np.asarray(img.dataobj, dtype=np.float32)
        bright = np.argwhere(image > np.percentile(image, 60)).mean(0)
        centre = (img.affine @ np.append(bright, 1.0))[:3]
        full, t_full = _estimate(image, img.affine, None, args.threads)
        short, t_short = _estimate(image, img.affine, MIDPLANE_ITERATIONS, args.threads)
        cos = abs(float(np.dot(full.normal, short.normal)))
        angle = float(np.degrees(np.arccos(min(cos, 1.0))))
        gap = abs(full.distance(centre) - short.distance(centre))
        zooms = "×".join(f"{z:.2g}" for z in img.header.get_zooms()[:3])
        rows.append(f"| {path.name.split('_')[0]} | {zooms} | {t_full:.1f} | {t_short:.1f} | "
                    f"{angle:.3f} | {gap:.3f} |")  # fmt: skip
        print(rows[-1], flush=True)
    body = "\n".join([
        f"antspyx's default rigid schedule (2100/1200/1200/10 iterations over shrink 6/4/2/1 "
        f"of the 2 mm grid) against the fill's `MIDPLANE_ITERATIONS` {MIDPLANE_ITERATIONS}: "
        "seconds of each estimate, angle between the two planes, their distance at the "
        "brain's centre.", "", *rows, "",
        run_line("bench_midplane.py",
                 args.threads, load, start),
    ])  # fmt: skip
    print(body)
    if not args.no_record:
        write_section(HERE / "RESULTS.md", SECTION, body)


if __name__ == "__main__":
    main()
