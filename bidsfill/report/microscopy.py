"""The subject report of a microscopy repair: before/after at full resolution in a
zoomable, synchronised viewer (``zoom.py``) with the mask outline as a toggleable
overlay, and the cell statistics of the repaired area against intact tissue.

Figures are a crop around the mask (at most 1024 px a side) as 8-bit grayscale PNGs,
both windowed by the percentiles of the crop before repair, so the two compare 1:1."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np

from bidsfill.report.render import CONTOUR_RGB
from bidsfill.report.zoom import ZOOM_CSS, ZOOM_JS, zoom_viewer

__all__ = ["write_microscopy_report"]


def _outline(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return mask & ~ndimage.binary_erosion(mask)


def _gray8(gray: np.ndarray, lo: float, hi: float) -> np.ndarray:
    g = (gray.astype(np.float64) - lo) / max(hi - lo, 1e-9) * 255
    return np.clip(np.rint(g), 0, 255).astype(np.uint8)


def _overlay(outline: np.ndarray) -> np.ndarray:
    """Transparent RGBA with the outline in the reports' contour colour."""
    rgba = np.zeros((*outline.shape, 4), np.uint8)
    rgba[outline] = (*CONTOUR_RGB, 255)
    return rgba


def _crop(mask: np.ndarray, pad: int = 48, most: int = 1024) -> tuple[slice, slice]:
    ys, xs = np.nonzero(mask)
    y0, y1 = max(ys.min() - pad, 0), min(ys.max() + pad + 1, mask.shape[0])
    x0, x1 = max(xs.min() - pad, 0), min(xs.max() + pad + 1, mask.shape[1])
    return slice(y0, min(y1, y0 + most)), slice(x0, min(x1, x0 + most))


def write_microscopy_report(out_dir: Path, subject: str, items: list[dict[str, Any]],
                            card: Any) -> Path:  # fmt: skip
    """``sub-<subject>.html`` with figures in ``sub-<subject>/figures/``."""
    from PIL import Image
    from scipy import ndimage

    from bidsfill.microscopy.cells import cell_stats, otsu_threshold
    from bidsfill.microscopy.io import read_image

    fig_dir = Path(out_dir) / f"sub-{subject}" / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    parts = []
    for item in items:
        img, mask = item["img"], item["mask"]
        repaired = item["repaired"]
        if repaired is None:
            repaired = read_image(item["dst"])[0]
        ys, xs = _crop(mask)
        before = np.asarray(item["array"][ys, xs])
        after = np.asarray(repaired[ys, xs])
        m = mask[ys, xs]
        lo, hi = np.percentile(before.astype(np.float64), (0.5, 99.5))
        names = {}
        for tag, arr in (("before", _gray8(before, lo, hi)), ("after", _gray8(after, lo, hi)),
                         ("outline", _overlay(_outline(m)))):  # fmt: skip
            names[tag] = f"sub-{subject}/figures/{img.stem}_{img.suffix}_{tag}.png"
            Image.fromarray(arr).save(Path(out_dir) / names[tag])
        px = img.pixel_size_um or 1.0
        thr = otsu_threshold(before)
        ring = ndimage.binary_dilation(m, iterations=int(40 / px)) & ~m
        rows = []
        for label, arr, region in (("repaired area (after)", after, m),
                                   ("intact ring around it (40 µm)", before, ring)):  # fmt: skip
            st = cell_stats(arr, region, px, threshold=thr)
            rows.append(f"<tr><td>{label}</td><td>{st['count']}</td>"
                        f"<td>{st['density_per_mm2']:.0f}</td>"
                        f"<td>{st['mean_size_um2']:.1f}</td></tr>")  # fmt: skip
        viewer = zoom_viewer([("before", names["before"]), ("after", names["after"])],
                             m.shape[1], m.shape[0], overlay=names["outline"])  # fmt: skip
        parts.append(
            f"<h2>{html.escape(img.path.name)}</h2><p>mask {html.escape(img.mask.name)}: "
            f"{100 * mask.mean():.2f} % of the image; crop rows {ys.start}-{ys.stop}, columns "
            f"{xs.start}-{xs.stop} ({m.shape[1]} x {m.shape[0]} px); red: mask outline. Output "
            f"<code>{html.escape(str(Path(item['dst']).relative_to(out_dir)))}</code>.</p>"
            f"{viewer}"
            "<table><tr><th>cells (Otsu + watershed)</th><th>count</th><th>density / mm²</th>"
            f"<th>mean size µm²</th></tr>{''.join(rows)}</table>"
        )  # fmt: skip
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>bidsfill: sub-"
        f"{html.escape(subject)} histology repair</title><style>body{{font-family:sans-serif;"
        "margin:2em} td,th{padding:2px 8px;border-bottom:1px solid #ccc}"
        f"{ZOOM_CSS}</style></head><body>"
        f"<h1>sub-{html.escape(subject)}: histology repair</h1><p>Model "
        f"{html.escape(str(card.name))} (sha256 "
        f"{str(card.sha256)[:12]}…), unconditional DDPM with RePaint (Kropp et al.).</p>"
        + "".join(parts) + f"<script>{ZOOM_JS}</script></body></html>"
    )  # fmt: skip
    path = Path(out_dir) / f"sub-{subject}.html"
    path.write_text(page)
    return path
