"""The group report ``<out>/group.html``: lesion load, tissue-volume change by filling and
fill time across all filled T1w images, per method (plots embedded, one file to share).
"""

from __future__ import annotations

import base64
import io
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from bidsfill import __version__
from bidsfill.report.html import esc, page, table, write_page
from bidsfill.segment.tissues import LABELS

__all__ = ["method_summary", "write_group_report"]

_CLASSES = tuple(LABELS)  # GM, WM, CSF: the BIDS dseg order


def _num(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if np.isnan(out) else out


def _values(rows: list[dict[str, Any]], key: str) -> list[float]:
    return [v for v in (_num(r.get(key)) for r in rows) if v is not None]


def _mean_sd(values: list[float]) -> str:
    if not values:
        return "n/a"
    return (
        f"{np.mean(values):+.2f} ± {np.std(values):.2f}" if len(values) > 1 else f"{values[0]:+.2f}"
    )


def method_summary(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """One row per method: images, lesion volume, fill time, mean tissue change."""
    by_method: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_method[str(row.get("method"))].append(row)
    out = []
    for method, group in sorted(by_method.items()):
        vol, sec = _values(group, "lesion_volume_ml"), _values(group, "fill_seconds")
        out.append((
            method, len(group),
            round(float(np.mean(vol)), 3) if vol else "n/a",
            round(float(np.median(sec)), 3) if sec else "n/a",
            *(_mean_sd(_values(group, f"{c}_ml_change")) for c in _CLASSES),
        ))  # fmt: skip
    return out


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _plots(rows: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(data URI, alt, caption) of each group plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = sorted({str(r.get("method")) for r in rows})
    colours = {m: plt.cm.tab10(i % 10) for i, m in enumerate(methods)}
    labels = [_image_label(r) for r in rows]
    out = []

    fig, ax = plt.subplots(figsize=(max(5, 0.45 * len(rows) + 2), 3.2))
    vols = [_num(r.get("lesion_volume_ml")) or 0.0 for r in rows]
    ax.bar(range(len(rows)), vols, color=[colours[str(r.get("method"))] for r in rows])
    ax.set_xticks(range(len(rows)), labels, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("lesion volume (ml)")
    _legend(ax, colours)
    out.append((_png(fig), "lesion load per image", "Lesion volume of every filled T1w."))

    fig, axes = plt.subplots(1, 3, figsize=(10, 3.2), sharey=False)
    for ax, c in zip(axes, _CLASSES, strict=True):
        for m in methods:
            pts = [(_num(r.get("lesion_volume_ml")), _num(r.get(f"{c}_ml_change")))
                   for r in rows if str(r.get("method")) == m]  # fmt: skip
            pts = [p for p in pts if None not in p]
            if pts:
                x, y = zip(*pts, strict=True)
                ax.scatter(x, y, color=colours[m], label=m, s=22)
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.set_title(c)
        ax.set_xlabel("lesion volume (ml)")
    axes[0].set_ylabel("filled − original (ml)")
    _legend(axes[-1], colours)
    out.append((_png(fig), "tissue volume change by filling",
                "Change of the GM, WM and CSF volumes from the original to the filled image, "
                "against lesion volume. A fill turns lesion voxels (often segmented as GM or "
                "CSF) into WM, so WM typically grows by up to the lesion volume."))  # fmt: skip

    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(methods) + 2), 3.2))
    for i, m in enumerate(methods):
        secs = _values([r for r in rows if str(r.get("method")) == m], "fill_seconds")
        jitter = np.linspace(-0.15, 0.15, len(secs)) if len(secs) > 1 else [0.0]
        ax.scatter(np.add(i, jitter), secs, color=colours[m], s=22)
    ax.set_xticks(range(len(methods)), methods)
    ax.set_ylabel("fill time (s)")
    if any(v > 0 for v in _values(rows, "fill_seconds")):
        ax.set_yscale("log")
    out.append((_png(fig), "fill time per method", "Time spent in the fill step of each image."))
    return out


def _legend(ax, colours: dict[str, Any]) -> None:
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color=c, label=m) for m, c in colours.items()], fontsize=8,
              frameon=False, title="method", title_fontsize=8)  # fmt: skip


def _image_label(row: dict[str, Any]) -> str:
    parts = [f"sub-{row.get('subject')}"]
    for key, ent in (("session", "ses"), ("acquisition", "acq"), ("run", "run")):
        if row.get(key) not in (None, "", "n/a"):
            parts.append(f"{ent}-{row[key]}")
    return "_".join(parts)


def write_group_report(output_dir: Path, rows: list[dict[str, Any]]) -> Path:
    """Write ``<output_dir>/group.html`` from the rows of the group table."""
    output_dir = Path(output_dir)
    per_method = table(
        ["Method", "Images", "Mean lesion volume (ml)", "Median fill time (s)",
         *(f"{c} change (ml)" for c in _CLASSES)],
        method_summary(rows),
    )  # fmt: skip
    plots = "".join(
        f'<figure><img src="{uri}" alt="{esc(alt)}"><figcaption>{esc(cap)}</figcaption></figure>'
        for uri, alt, cap in _plots(rows)
    )
    columns = ["image", "method", "lesion_count", "lesion_volume_ml", "fill_seconds", "device",
               *(f"{c}_ml_{d}" for c in _CLASSES for d in ("orig", "filled", "change"))]  # fmt: skip
    listing = []
    for row in rows:
        report = f"sub-{row.get('subject')}.html"
        anchor = _image_label(row).replace("sub-", "run-", 1)
        link = (f'<a href="{esc(report)}#{esc(anchor)}">{esc(_image_label(row))}</a>'
                if (output_dir / report).exists() else esc(_image_label(row)))  # fmt: skip
        listing.append((link, *(row.get(c) for c in columns[1:])))
    sections = [
        ("methods", "Per method", per_method),
        ("plots", "Plots", plots),
        ("images", "All images", '<div class="scroll">' + table(columns, listing, raw_columns=(0,))
         + "</div>"
         + '<p>The same numbers are in <a href="group_T1w.tsv">group_T1w.tsv</a>.</p>'),
    ]  # fmt: skip
    header = (f"<p>bidsfill {esc(__version__)}: {len(rows)} filled T1w image(s) of "
              f"{len({r.get('subject') for r in rows})} subject(s).</p>")  # fmt: skip
    return write_page(page("bidsfill: group report", sections, header), output_dir / "group.html")
