"""The per-subject HTML report ``<out>/sub-X.html`` (figures in ``sub-X/figures/``)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from bidsfill import __version__
from bidsfill.report.figures import before_after_figure

__all__ = ["write_subject_report"]


def _table(rows: list[tuple[str, Any]]) -> str:
    cells = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows
    )
    return f"<table>{cells}</table>"


def write_subject_report(
    *,
    subject: str,
    output_dir: Path,
    summaries: list[dict[str, Any]],
    warnings: list[str] | None = None,
    log_dir: Path | None = None,
    config_file: Path | None = None,
) -> Path:
    """Write ``sub-<subject>.html`` summarising every filled T1w of the subject."""
    output_dir = Path(output_dir)
    fig_dir = output_dir / f"sub-{subject}" / "figures"
    sections = []
    all_warnings = list(warnings or [])
    for summary in summaries:
        filled_meta = summary["filled"]
        files = {Path(f).name: output_dir / f for f in summary["files"]}
        filled_path = next(p for n, p in files.items() if "_desc-filled_T1w" in n)
        mask_path = next(p for n, p in files.items() if "_label-lesion_mask" in n)
        stem = filled_path.name.split("_desc-filled")[0]
        original = (
            np.asarray(
                nib.load(str(Path(summary["bids_dir"]) / summary["source"])).get_fdata(), np.float32
            )
            if "bids_dir" in summary
            else None
        )
        filled = np.asarray(nib.load(str(filled_path)).get_fdata(), np.float32)
        mask = np.asarray(nib.load(str(mask_path)).dataobj) > 0
        if original is None:
            original = filled
        figure = before_after_figure(original, filled, mask, fig_dir / f"{stem}_desc-fill_T1w.png")
        all_warnings += summary["mask"].get("Warnings", [])
        vols = summary["segmentation"]
        tissue_rows = "".join(
            f"<tr><td>{c}</td><td>{vols['orig']['TissueVolumesML'][c]:.1f}</td>"
            f"<td>{vols['filled']['TissueVolumesML'][c]:.1f}</td>"
            f"<td>{vols['filled']['TissueVolumesML'][c] - vols['orig']['TissueVolumesML'][c]:+.1f}</td></tr>"
            for c in ("GM", "WM", "CSF")
        )
        rows = [
            ("Source", summary["source"]),
            ("Lesion mask", summary["mask_source"]),
            ("Mask alignment", filled_meta.get("MaskAlignment")),
            (
                "Lesions",
                f"{filled_meta.get('LesionCount')} ({filled_meta.get('LesionVolumeML')} ml)",
            ),
            ("Method", filled_meta.get("Method")),
            ("Model", f"{filled_meta.get('ModelName', '-')} {filled_meta.get('ModelSHA256', '')}"),
            (
                "Sampler / steps",
                f"{filled_meta.get('Sampler', '-')} / {filled_meta.get('Steps', '-')}",
            ),
            ("Device", filled_meta.get("Device")),
            ("Fill seconds", filled_meta.get("FillSeconds")),
            ("Seed", filled_meta.get("Seed")),
            ("Segmenter", vols["filled"]["Segmenter"]),
        ]
        rel = figure.relative_to(output_dir).as_posix()
        sections.append(
            f"<h2>{html.escape(stem)}</h2>{_table(rows)}"
            f'<figure><img src="{rel}" alt="lesions before and after filling">'
            "<figcaption>Slices through the lesions: original (top), filled (bottom); "
            "red: lesion outline.</figcaption></figure>"
            "<table><tr><th>Tissue</th><th>Original (ml)</th><th>Filled (ml)</th>"
            f"<th>Change</th></tr>{tissue_rows}</table>"
        )
    warn_html = "".join(f"<li>{html.escape(w)}</li>" for w in all_warnings) or "<li>none</li>"
    config_text = ""
    if config_file and Path(config_file).exists():
        config_text = (
            f"<h2>Configuration</h2><pre>{html.escape(Path(config_file).read_text())}</pre>"
        )
    crashes = sorted(Path(log_dir).glob("crash-*")) if log_dir and Path(log_dir).exists() else []
    crash_html = "".join(f"<li>{html.escape(c.name)}</li>" for c in crashes) or "<li>none</li>"
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>bidsfill: sub-{html.escape(subject)}</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:auto}}
th{{text-align:left;padding-right:1em}} img{{max-width:100%}}</style></head>
<body><h1>bidsfill report: sub-{html.escape(subject)}</h1>
<p>bidsfill {__version__}</p>
{"".join(sections)}
<h2>Warnings</h2><ul>{warn_html}</ul>
<h2>Errors</h2><ul>{crash_html}</ul>
{config_text}
</body></html>
"""
    out = output_dir / f"sub-{subject}.html"
    tmp = out.with_name(out.name + ".part")
    tmp.write_text(page)
    tmp.replace(out)
    return out
