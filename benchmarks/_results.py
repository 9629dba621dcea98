"""Replace one ``## <title>`` section of RESULTS.md, keeping the others."""

from __future__ import annotations

import re
from pathlib import Path


def write_section(path: Path, title: str, body: str) -> None:
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    section = f"## {title}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text)
    else:
        text = text.rstrip() + "\n\n" + section
    path.write_text(text.rstrip() + "\n")


def filler_means(rows: list[dict], labels: list[str]) -> dict[str, dict]:
    """Per filler label: the scorecard's means (``summarise``) plus the edge-band means,
    which ``summarise`` leaves out (they are not part of a model card's scorecard)."""
    import numpy as np

    from bidsfill.train.scorecard import summarise

    summary = summarise(rows)
    out = {}
    for label in labels:
        mine = [r for r in rows if r["filler"] == label]
        band = {
            k: float(np.mean([r[k] for r in mine if k in r]))
            for k in ("band_psnr_01", "band_ssim3d")
            if any(k in r for r in mine)
        }
        out[label] = {**summary.get(label, {}), **band}
    return out


def metric_cells(entry: dict, columns: list[tuple[str, str, str]]) -> list[str]:
    """One table row's cells for ``columns`` (key, header, format); "—" where missing."""
    return ["—" if entry.get(k) is None else fmt.format(entry[k]) for k, _, fmt in columns]


def run_line(script: str, threads: int, load: float, start: float) -> str:
    """The footer of a benchmark's section: its command line, date, machine, threads, the
    load average when it started and its wall seconds (``start``: ``perf_counter``)."""
    import os
    import platform
    import sys
    import time

    return (
        f"`python benchmarks/{script} {' '.join(sys.argv[1:])}` ({time.strftime('%Y-%m-%d')}). "
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, {threads} thread(s), load "
        f"average {load:.1f} at the start; {time.perf_counter() - start:.0f} s"
    )
