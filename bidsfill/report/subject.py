"""The per-subject HTML report ``<out>/sub-X.html`` (figures in ``sub-X/figures/``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bidsfill import __version__
from bidsfill.report.html import esc, kv_table, page, pre, table, write_page
from bidsfill.report.provenance import find_run_log, package_versions, write_citation
from bidsfill.report.run_section import run_section
from bidsfill.report.synthesis import synthesis_section

__all__ = ["write_subject_report"]


def _list(items: list[str], cls: str) -> str:
    if not items:
        return "<p>None.</p>"
    return "".join(f'<p class="{cls}">{esc(i)}</p>' for i in dict.fromkeys(items))


def write_subject_report(
    *,
    subject: str,
    output_dir: Path,
    summaries: list[dict[str, Any]],
    warnings: list[str] | None = None,
    log_dir: Path | None = None,
    config_file: Path | None = None,
) -> Path:
    """Write ``sub-<subject>.html`` with one section per filled T1w of the subject.

    ``log_dir`` is the run's ``sub-X/log/<run_uuid>``; without it (``--reports-only``)
    the newest log folder of a filling run is used.
    """
    output_dir = Path(output_dir)
    fig_dir = output_dir / f"sub-{subject}" / "figures"
    runs = [run_section(s, output_dir, fig_dir) for s in summaries]
    synthetic, synthesis_notes = synthesis_section(output_dir, subject, fig_dir)
    all_warnings = list(warnings or []) + [w for r in runs for w in r.warnings] + synthesis_notes
    log = find_run_log(output_dir, subject, log_dir)
    config_text = log.config_text
    if not config_text and config_file and Path(config_file).is_file():
        config_text = Path(config_file).read_text()

    overview = table(
        ["T1w", "Method", "Lesions", "Volume (ml)", "Fill time (s)", "Device"],
        [(f'<a href="#{esc(r.anchor)}">{esc(r.title)}</a>', s["filled"].get("Method"),
          s["filled"].get("LesionCount"), s["filled"].get("LesionVolumeML"),
          s["filled"].get("FillSeconds"), s["filled"].get("Device"))
         for r, s in zip(runs, summaries, strict=True)],
        raw_columns=(0,),
    )  # fmt: skip
    summary_html = f"<p>{len(runs)} T1w image(s) filled.</p>{overview}<h3>Warnings</h3>" + _list(
        all_warnings, "warn"
    )
    sections = [("summary", "Summary", summary_html)]
    sections += [(r.anchor, r.title, r.html) for r in runs]
    if synthetic:  # --synthesize wrote images for this subject
        sections.append(("synthetic", "Synthetic contrasts", synthetic))

    seeds = sorted({str(s["filled"].get("Seed")) for s in summaries})
    checksums = sorted({str(s["filled"]["ModelSHA256"]) for s in summaries
                        if s["filled"].get("ModelSHA256")})  # fmt: skip
    prov = (
        "<h3>Software</h3>"
        + table(["Package", "Version"], sorted(package_versions().items()))
        + "<h3>Run</h3>"
        + kv_table(
            [
                ("Command line", log.command_line),
                ("Run", log.folder.name if log.folder else "n/a"),
                ("Seed", ", ".join(seeds)),
                ("Weights sha256", ", ".join(checksums) or "n/a (classical method)"),
            ]
        )  # fmt: skip
        + "<h3>Configuration</h3>"
        + (pre(config_text) if config_text else "<p>No configuration file was found.</p>")
    )
    sections.append(("provenance", "Provenance", prov))

    if log.crashes:
        errors = "".join(
            f'<details class="error"><summary>{esc(c.name)}</summary>'
            f"{pre(c.read_text(errors='replace'))}</details>"
            for c in log.crashes
        )
    else:
        errors = "<p>No errors were reported.</p>"
    sections.append(("errors", "Errors", errors))

    citation = write_citation(output_dir)
    sections.append((
        "citation", "Citation",
        f"<p>Also in <code>{esc(citation.relative_to(output_dir).as_posix())}</code>.</p>"
        + pre(citation.read_text()),
    ))  # fmt: skip
    header = f"<p>bidsfill {esc(__version__)}</p>"
    out = output_dir / f"sub-{subject}.html"
    return write_page(page(f"bidsfill: sub-{subject}", sections, header), out)
