"""Writing a BIDS-Derivatives dataset: its description, links, ignore list and files.

Every file is written under a temporary name and renamed, so a crash never leaves a file
that looks complete. The names of a run's outputs are in :mod:`bidsfill.bids.outputs`.
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
    "BIDSIGNORE",
    "CODE_URL",
    "bids_uri",
    "dataset_links",
    "linked_dataset_name",
    "write_dataset_description",
    "write_file",
    "write_json",
]

CODE_URL = "https://github.com/bidsfill/bidsfill"
# What the validator must skip: reports, logs, figures and the group table. The official
# validator (bids-validator-deno) tests a directory's own path without a trailing slash,
# so "figures/" (fMRIPrep's pattern) hides the files inside but not the folder itself,
# which it then reports as NOT_INCLUDED; "sub-*/figures" hides both.
BIDSIGNORE = ("*.html", "logs", "sub-*/log", "sub-*/figures", "group_*")


def bids_uri(path: str | Path, root: str | Path, dataset: str = "raw") -> str:
    """``bids:<dataset>:<relative path>`` as BIDS 1.8 recommends for Sources."""
    return f"bids:{dataset}:{Path(path).resolve().relative_to(Path(root).resolve()).as_posix()}"


def dataset_links(bids_dir: Path, derivatives: list[Path] | None = None) -> dict[str, str]:
    """``DatasetLinks``: ``raw`` and ``deriv0``, ``deriv1``... in ``--derivatives`` order."""
    links = {"raw": Path(bids_dir).resolve().as_uri()}
    for i, deriv in enumerate(derivatives or []):
        links[f"deriv{i}"] = Path(deriv).resolve().as_uri()
    return links


def linked_dataset_name(out_dir: Path, root: str | Path) -> str:
    """The name ``out_dir``'s ``DatasetLinks`` gives the dataset at ``root``.

    BIDS URIs of files from that dataset must use this name, so a reader can resolve them.
    """
    description = Path(out_dir) / "dataset_description.json"
    links = {}
    if description.exists():
        links = json.loads(description.read_text()).get("DatasetLinks", {})
    uri = Path(root).resolve().as_uri()
    name = next((k for k, v in links.items() if v == uri), None)
    if name is None:
        raise ValueError(f"{description} has no DatasetLinks entry for {root}")
    return name


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
    links = dataset_links(bids_dir, derivatives)
    description = {
        "Name": "bidsfill lesion-filled T1w images",
        "BIDSVersion": "1.9.0",
        "DatasetType": "derivative",
        "GeneratedBy": [generated],
        "SourceDatasets": [{"URL": uri} for uri in links.values()],
        "DatasetLinks": links,
    }
    (Path(out_dir) / ".bidsignore").write_text("".join(f"{p}\n" for p in BIDSIGNORE))
    return write_json(description, Path(out_dir) / "dataset_description.json")
