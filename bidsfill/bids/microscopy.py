"""Discovery of BIDS microscopy images (``micr/``) and their artefact masks (issue 18).

Images: ``sub-<label>[/ses-<label>]/micr/sub-<label>[_ses-..]_sample-<label>[_acq-..]
[_stain-..][_run-..][_chunk-..]_<suffix>.<ext>`` with a microscopy suffix (``BF``, ``DF``,
...) and PNG, TIFF or OME-TIFF; the pixel size from the sidecar (``PixelSize`` in
``PixelSizeUnits``). Masks: ``<entities>_desc-artefact_mask.png`` (or ``.tif``) at the
same relative path in a ``--derivatives`` dataset, or in a dataset nested under
``<bids>/derivatives/`` (found without the option). Names are parsed here (no pybids
index: microscopy names are regular and pybids adds nothing for them).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bidsfill.microscopy.io import EXTENSIONS, MICROSCOPY_SUFFIXES

__all__ = ["MicroscopyImage", "discover_microscopy", "is_microscopy_dataset", "mask_names"]

_UNITS_UM = {"mm": 1000.0, "um": 1.0, "µm": 1.0, "nm": 0.001}
_ENTITY = re.compile(r"^([a-zA-Z]+)-([a-zA-Z0-9]+)$")


@dataclass
class MicroscopyImage:
    """One microscopy image to repair."""

    path: Path
    subject: str
    entities: dict[str, str]  # name key -> label, in file-name order (sub, ses, sample, ...)
    suffix: str
    extension: str
    sidecar: dict[str, Any] = field(default_factory=dict)
    pixel_size_um: float | None = None
    mask: Path | None = None
    mask_root: Path | None = None

    @property
    def stem(self) -> str:
        return "_".join(f"{k}-{v}" for k, v in self.entities.items())


def _parse(path: Path) -> tuple[dict[str, str], str, str] | None:
    name = path.name
    ext = next((e for e in EXTENSIONS if name.lower().endswith(e)), None)
    if ext is None:
        return None
    parts = name[: -len(ext)].split("_")
    suffix = parts[-1]
    entities = {}
    for part in parts[:-1]:
        m = _ENTITY.match(part)
        if m is None:
            return None
        entities[m.group(1)] = m.group(2)
    if suffix not in MICROSCOPY_SUFFIXES or "sub" not in entities:
        return None
    return entities, suffix, ext


def _micr_files(root: Path) -> list[Path]:
    return sorted(p for pattern in ("sub-*/micr/*", "sub-*/ses-*/micr/*")
                  for p in root.glob(pattern) if p.is_file())  # fmt: skip


def is_microscopy_dataset(bids_dir: Path) -> bool:
    """True when the dataset holds microscopy images and no anatomical MRI."""
    bids_dir = Path(bids_dir)
    has_anat = any(bids_dir.glob("sub-*/anat")) or any(bids_dir.glob("sub-*/ses-*/anat"))
    return not has_anat and any(_parse(p) for p in _micr_files(bids_dir))


def _pixel_size_um(sidecar: dict[str, Any]) -> float | None:
    size = sidecar.get("PixelSize")
    unit = str(sidecar.get("PixelSizeUnits", "um"))
    if not size or unit not in _UNITS_UM:
        return None
    values = [float(v) for v in (size if isinstance(size, list) else [size])][:2]
    return sum(values) / len(values) * _UNITS_UM[unit]


def mask_names(entities: dict[str, str]) -> list[str]:
    stem = "_".join(f"{k}-{v}" for k, v in entities.items())
    return [f"{stem}_desc-artefact_mask{ext}" for ext in (".png", ".tif", ".tiff")]


def _mask_roots(bids_dir: Path, derivatives: list[Path]) -> list[Path]:
    roots = [Path(d) for d in derivatives]
    nested = Path(bids_dir) / "derivatives"
    if nested.is_dir():
        roots += sorted(p for p in nested.iterdir()
                        if (p / "dataset_description.json").is_file())  # fmt: skip
    return roots


def discover_microscopy(
    bids_dir: Path,
    participant_label: list[str] | None = None,
    derivatives: list[Path] | None = None,
) -> tuple[list[MicroscopyImage], list[str]]:
    """The microscopy images of the chosen participants, each with its mask if found."""
    bids_dir = Path(bids_dir)
    roots = _mask_roots(bids_dir, list(derivatives or []))
    images, warnings = [], []
    for path in _micr_files(bids_dir):
        parsed = _parse(path)
        if parsed is None:
            continue
        entities, suffix, ext = parsed
        if participant_label and entities["sub"] not in participant_label:
            continue
        sidecar_path = path.with_name(path.name[: -len(ext)] + ".json")
        sidecar = json.loads(sidecar_path.read_text()) if sidecar_path.is_file() else {}
        img = MicroscopyImage(path, entities["sub"], entities, suffix, ext, sidecar,
                              _pixel_size_um(sidecar))  # fmt: skip
        rel = path.parent.relative_to(bids_dir)
        for root in roots:
            found = [root / rel / n for n in mask_names(entities) if (root / rel / n).is_file()]
            if found:
                img.mask, img.mask_root = found[0], root
                break
        if img.mask is None:
            warnings.append(f"{path.name} has no artefact mask "
                            f"({mask_names(entities)[0]}); it is not repaired.")  # fmt: skip
        if img.pixel_size_um is None:
            warnings.append(f"{path.name} has no PixelSize in its sidecar; the model's pixel "
                            "size is assumed.")  # fmt: skip
        images.append(img)
    return images, warnings
