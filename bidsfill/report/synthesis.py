"""The report's synthetic contrasts: each synthetic image beside the images it was made from.

A synthetic FLAIR (cWDM, ``--synthesize``) is a stand-in computed from the session's other
contrasts, not an acquisition. The report shows it on the same axial slices as each of its
sources, framed and labelled as synthetic with the model that made it, so a reader can
judge it before trusting anything built on it (a fill it conditioned, say).

Everything is read from the output dataset (the image, its sidecar, the sources its
``Sources`` URIs name), so a run and ``--reports-only`` draw the same section.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np
from PIL import Image, ImageDraw

from bidsfill.report.figures import _scale, box_around
from bidsfill.report.html import esc, figure, kv_table
from bidsfill.report.render import Volume, compose, label, load_ras, render_tile, save_png, window

__all__ = [
    "SYNTHETIC_RGB",
    "SynthesisFigure",
    "resolve_uri",
    "synthesis_figure",
    "synthesis_section",
    "synthetic_images",
]

SYNTHETIC_RGB = (255, 140, 0)  # orange: the synthetic row's frame and label
_FRAME = 2  # pixels


@dataclass(frozen=True)
class SynthesisFigure:
    """The written figure and how it was drawn (rows: synthetic, then each source)."""

    path: Path
    slices: list[int]  # axial (RAS) slice indices, the same in every row
    box: tuple[slice, slice, slice]
    px_per_mm: float


def synthetic_images(output_dir: Path, subject: str) -> list[Path]:
    """The subject's ``*_desc-synthetic_<contrast>`` images in the output dataset."""
    return sorted(Path(output_dir).glob(f"sub-{subject}/**/anat/*_desc-synthetic_*.nii.gz"))


def resolve_uri(uri: str, output_dir: Path) -> Path | None:
    """The file a BIDS URI names: ``bids::<path>`` is in the output dataset itself,
    ``bids:<name>:<path>`` in the dataset its ``DatasetLinks`` call ``<name>``."""
    if not uri.startswith("bids:") or uri.count(":") < 2:
        return None
    _, name, rel = uri.split(":", 2)
    if not name:
        return Path(output_dir) / rel
    description = Path(output_dir) / "dataset_description.json"
    links = (
        json.loads(description.read_text()).get("DatasetLinks", {}) if description.exists() else {}
    )
    link = urlparse(links.get(name, ""))
    return Path(unquote(link.path)) / rel if link.scheme == "file" else None


def _axial_slices(foreground: np.ndarray, n: int) -> list[int]:
    """``n`` axial slices spread over the middle half of the foreground."""
    zs = np.nonzero(foreground.any(axis=(0, 1)))[0]
    if zs.size == 0:
        return [foreground.shape[2] // 2]
    return sorted({int(round(q)) for q in np.quantile(zs, np.linspace(0.25, 0.75, n))})


def _framed(tile: np.ndarray, text: str) -> np.ndarray:
    """An orange frame and an orange label: this tile is not an acquired image."""
    img = Image.fromarray(tile)
    draw = ImageDraw.Draw(img)
    height, width = tile.shape[:2]
    draw.rectangle((0, 0, width - 1, height - 1), outline=SYNTHETIC_RGB, width=_FRAME)
    left, top, right, bottom = draw.textbbox((4, 3), text)
    draw.rectangle((left - 2, top - 2, right + 2, bottom + 2), fill=SYNTHETIC_RGB)
    draw.text((4, 3), text, fill=(0, 0, 0))
    return np.asarray(img)


def synthesis_figure(
    synthetic: Volume,
    target: str,
    sources: dict[str, Volume],
    out_file: Path,
    n_slices: int = 3,
) -> SynthesisFigure:
    """One row per image, synthetic first, on the same axial slices; each image has its
    own grey window. The sources must be on the synthetic's grid (cWDM writes it there)."""
    foreground = synthetic.data > 0
    for vol in sources.values():
        foreground |= vol.data > 0
    box = box_around(foreground, synthetic.zooms, margin_mm=4.0)
    px_per_mm = _scale(box, synthetic.zooms, 150)
    slices = _axial_slices(foreground, n_slices)
    rows = []
    for name, vol in [(f"SYNTHETIC {target}", synthetic), *sources.items()]:
        vrange = window(vol.data)
        row = []
        for k in slices:
            tile = render_tile(vol.data, synthetic.zooms, 2, k, vrange=vrange, box=box,
                               px_per_mm=px_per_mm)  # fmt: skip
            text = f"{name}, axial {k}"
            row.append(_framed(tile, text) if vol is synthetic else label(tile, text))
        rows.append(row)
    path = save_png(compose(rows), out_file)
    return SynthesisFigure(path, slices, box, px_per_mm)


def _contrast(path: Path) -> str:
    """The file name without subject and session: ``T1w``, ``ce-gadolinium_T1w``..."""
    parts = path.name.split(".")[0].split("_")
    return "_".join(p for p in parts if not p.startswith(("sub-", "ses-")))


def _section(image: Path, output_dir: Path, fig_dir: Path) -> tuple[str, list[str]]:
    """HTML of one synthetic image and any notes (a source that could not be shown)."""
    sidecar = image.with_name(image.name.replace(".nii.gz", ".json"))
    meta: dict[str, Any] = json.loads(sidecar.read_text()) if sidecar.exists() else {}
    target = image.name.split(".")[0].rsplit("_", 1)[-1]
    stem = image.name.split("_desc-synthetic_")[0]
    synthetic = load_ras(image)
    sources, notes = {}, []
    for uri in meta.get("Sources", []):
        path = resolve_uri(uri, output_dir)
        if path is None or not path.is_file():
            notes.append(f"The source {uri} of {image.name} could not be read; it is not shown.")
            continue
        vol = load_ras(path)
        if vol.data.shape != synthetic.data.shape:
            notes.append(f"The source {uri} is not on the grid of {image.name}; it is not shown.")
            continue
        sources[f"{_contrast(path)} (source)"] = vol
    fig = synthesis_figure(
        synthetic, target, sources, fig_dir / f"{stem}_desc-synthetic_{target}.png"
    )
    model = meta.get("SynthesisModel", {})
    sampling = meta.get("Sampling", {})
    rows = [
        ("Synthetic", "yes: computed from the sources below, not an acquired image"),
        ("Image", image.relative_to(output_dir).as_posix()),
        ("Model", f"{model.get('Name')} ({model.get('Architecture')})"),
        ("Weights sha256", model.get("Sha256")),
        ("Sources", ", ".join(meta.get("Sources", []))),
        ("Sampling", f"{sampling.get('Sampler')}, {sampling.get('Steps')} steps, seed "
                     f"{sampling.get('Seed')}, {sampling.get('Device')}"),
        ("Intensity rule", meta.get("IntensityRule")),
    ]  # fmt: skip
    caption = (
        f"Top row, framed in orange: the SYNTHETIC {esc(target)} made by the model "
        f"{esc(model.get('Name'))} (cWDM); below it, its source images "
        f"({esc(', '.join(sources) or 'none readable')}), on the same axial slices "
        f"{', '.join(map(str, fig.slices))}. Each image has its own grey window. A synthetic "
        "image is a stand-in computed from the other contrasts, not an acquired image."
    )
    html = (
        f"<h3>{esc(image.name)}</h3>{kv_table(rows)}"
        + figure(
            fig.path.relative_to(output_dir).as_posix(),
            f"synthetic {target} beside its sources",
            caption,
        )
        + "".join(f'<p class="warn">{esc(n)}</p>' for n in notes)
    )
    return html, notes


def synthesis_section(output_dir: Path, subject: str, fig_dir: Path) -> tuple[str, list[str]]:
    """The subject's synthetic images, each beside its sources ("" when there are none),
    and notes for the report's warnings."""
    parts, notes = [], []
    for image in synthetic_images(output_dir, subject):
        html, more = _section(image, Path(output_dir), fig_dir)
        parts.append(html)
        notes += more
    return "".join(parts), notes
