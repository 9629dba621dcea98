"""Small HTML building blocks shared by the subject and group reports (no templating
dependency, no scripts: a report must open from a laptop's file browser, offline).
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from bidsfill.io.atomic import part_file

__all__ = ["esc", "figure", "kv_table", "page", "pre", "table", "write_page"]

_CSS = """
body { font-family: system-ui, sans-serif; margin: 0; color: #222; }
nav { position: sticky; top: 0; background: #1f2d3d; padding: .5em 1em; z-index: 1; }
nav a { color: #fff; margin-right: 1.2em; text-decoration: none; font-size: .95em; }
main { max-width: 1200px; margin: auto; padding: 0 1em 3em; }
h1 { margin-top: .8em; } h2 { border-bottom: 2px solid #1f2d3d; padding-bottom: .2em; }
table { border-collapse: collapse; margin: .6em 0; font-size: .92em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #eef2f6; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; background: #000; }
figcaption { font-size: .9em; color: #444; margin-top: .3em; }
.flickers { display: flex; flex-wrap: wrap; gap: 1em; }
.flickers figure { margin: 0; }
.warn { background: #fff4e5; border-left: 4px solid #f0a020; padding: .4em .8em; }
.error { background: #fdecea; border-left: 4px solid #d62728; padding: .4em .8em; }
pre { background: #f6f8fa; padding: .8em; overflow-x: auto; font-size: .85em; }
code { font-size: .9em; }
.scroll { overflow-x: auto; }
"""


def esc(value: Any) -> str:
    return html.escape("n/a" if value is None else str(value))


def kv_table(rows: Iterable[tuple[str, Any]]) -> str:
    """Two-column table of labels and values."""
    body = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def table(
    headers: Sequence[str], rows: Iterable[Sequence[Any]], raw_columns: Sequence[int] = ()
) -> str:
    """Table with a header row; numbers are right-aligned; ``raw_columns`` hold HTML."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    lines = []
    for row in rows:
        cells = []
        for i, value in enumerate(row):
            text = str(value) if i in raw_columns else esc(value)
            cls = ' class="num"' if isinstance(value, int | float) else ""
            cells.append(f"<td{cls}>{text}</td>")
        lines.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><tr>{head}</tr>{''.join(lines)}</table>"


def figure(src: str, alt: str, caption: str = "", width: int | None = None) -> str:
    size = f' width="{width}"' if width else ""
    cap = f"<figcaption>{caption}</figcaption>" if caption else ""
    return f'<figure><img src="{esc(src)}" alt="{esc(alt)}"{size} loading="eager">{cap}</figure>'


def pre(text: str) -> str:
    return f"<pre>{esc(text)}</pre>"


def page(title: str, sections: Sequence[tuple[str, str, str]], header: str = "") -> str:
    """A whole page: a sticky navigation bar and one ``<section>`` per (id, title, html)."""
    nav = "".join(f'<a href="#{esc(sid)}">{esc(name)}</a>' for sid, name, _ in sections)
    body = "".join(
        f'<section id="{esc(sid)}"><h2>{esc(name)}</h2>{content}</section>'
        for sid, name, content in sections
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{_CSS}</style></head>"
        f"<body><nav>{nav}</nav><main><h1>{esc(title)}</h1>{header}{body}</main></body></html>\n"
    )


def write_page(text: str, path: Path) -> Path:
    """Write the page through a ``.part`` file so a crash never leaves half a report."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with part_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path
