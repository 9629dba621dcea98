"""Animated before/after SVG: two embedded PNG frames that fade into each other.

Like niworkflows' before/after reportlets, but the animation runs by itself (it also
works inside an ``<img>`` tag, where hovering cannot start it).
"""

from __future__ import annotations

import base64
import html

__all__ = ["flicker_svg"]

_STYLE = """
@keyframes flicker { 0% { opacity: 1; } 50% { opacity: 0; } }
.after { animation: flicker 3s step-end infinite; }
text { font: bold 13px sans-serif; fill: #fff; paint-order: stroke; stroke: #000;
       stroke-width: 3px; }
"""


def flicker_svg(
    before_png: bytes,
    after_png: bytes,
    width: int,
    height: int,
    labels: tuple[str, str] = ("before", "after"),
    title: str = "",
) -> str:
    """SVG text that alternates ``after`` (shown first) and ``before`` every 1.5 s."""

    def frame(png: bytes, text: str, cls: str) -> str:
        data = base64.b64encode(png).decode("ascii")
        return (
            f'<g class="{cls}"><image width="{width}" height="{height}" '
            f'href="data:image/png;base64,{data}"/>'
            f'<text x="{width - 6}" y="{height - 8}" text-anchor="end">'
            f"{html.escape(text)}</text></g>"
        )

    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}"><title>{html.escape(title)}</title>'
        f"<style>{_STYLE}</style>"
        f"{frame(before_png, labels[0], 'before')}{frame(after_png, labels[1], 'after')}</svg>"
    )
