"""Naming and writing BIDS-Derivatives outputs.

Names follow the source T1w's entities, with ``label``/``desc`` inserted in the BIDS
entity order. Every file is written under a temporary name and renamed, so a crash never
leaves a file that looks complete.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from bidsfill import __version__
from bidsfill.io.atomic import part_file

__all__ = [
    "CODE_URL",
    "bids_uri",
    "derivative_name",
    "write_dataset_description",
    "write_file",
    "write_json",
]

CODE_URL = "https://github.com/bidsfill/bidsfill"
# BIDS entity order (appendix "Entity table"), abbreviated keys.
_ORDER = [
    "sub", "ses", "sample", "task", "tracksys", "acq", "nuc", "voi", "ce", "trc", "stain",
    "rec", "dir", "run", "mod", "echo", "flip", "inv", "mt", "part", "proc", "hemi",
    "space", "split", "recording", "chunk", "seg", "res", "den", "label", "desc",
]  # fmt: skip


def _parse(name: str) -> tuple[dict[str, str], str]:
    stem = name.split(".")[0]
    parts = stem.split("_")
    entities = dict(p.split("-", 1) for p in parts[:-1] if "-" in p)
    return entities, parts[-1]


def derivative_name(
    source: str | Path, *, suffix: str, extension: str = ".nii.gz", **new: str
) -> str:
    """File name for a derivative of ``source`` (e.g. ``desc="filled", suffix="T1w"``)."""
    entities, _ = _parse(Path(source).name)
    entities.update({k: v for k, v in new.items() if v})
    ordered = [f"{k}-{entities[k]}" for k in _ORDER if k in entities]
    ordered += [f"{k}-{v}" for k, v in entities.items() if k not in _ORDER]
    return "_".join(ordered + [suffix]) + extension


def derivative_dir(out_dir: Path, source: str | Path) -> Path:
    entities, _ = _parse(Path(source).name)
    path = Path(out_dir) / f"sub-{entities['sub']}"
    if "ses" in entities:
        path = path / f"ses-{entities['ses']}"
    return path / "anat"


def bids_uri(path: str | Path, root: str | Path, dataset: str = "raw") -> str:
    """``bids:<dataset>:<relative path>`` as BIDS 1.8 recommends for Sources."""
    return f"bids:{dataset}:{Path(path).resolve().relative_to(Path(root).resolve()).as_posix()}"


def write_file(src: str | Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    with part_file(dst) as tmp:
        shutil.copyfile(src, tmp)
    return dst


def write_json(data: dict[str, Any], dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    with part_file(dst) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    return dst


def write_dataset_description(
    out_dir: Path, bids_dir: Path, derivatives: list[Path] | None = None
) -> Path:
    """The output's ``dataset_description.json`` and ``.bidsignore``."""
    generated: dict[str, Any] = {"Name": "bidsfill", "Version": __version__, "CodeURL": CODE_URL}
    image = os.getenv("BIDSFILL_CONTAINER_IMAGE")
    if image:
        generated["Container"] = {
            "Type": os.getenv("BIDSFILL_CONTAINER_TYPE", "docker"),
            "Tag": image,
        }
    links = {"raw": Path(bids_dir).resolve().as_uri()}
    for i, deriv in enumerate(derivatives or []):
        links[f"deriv{i}"] = Path(deriv).resolve().as_uri()
    description = {
        "Name": "bidsfill lesion-filled T1w images",
        "BIDSVersion": "1.9.0",
        "DatasetType": "derivative",
        "GeneratedBy": [generated],
        "SourceDatasets": [{"URL": uri} for uri in links.values()],
        "DatasetLinks": links,
    }
    (Path(out_dir) / ".bidsignore").write_text("*.html\nlogs/\n*/log/\n*/figures/\ngroup_*\n")
    return write_json(description, Path(out_dir) / "dataset_description.json")
