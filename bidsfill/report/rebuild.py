"""Rebuild a run summary from the files bidsfill wrote (for ``--reports-only``)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

__all__ = ["summary_from_outputs"]


def summary_from_outputs(output_dir: Path, filled_sidecar: Path) -> dict[str, Any]:
    """The same dictionary the workflow's ``ds_run`` node writes, read back from sidecars."""
    output_dir = Path(output_dir)
    filled = json.loads(Path(filled_sidecar).read_text())
    anat = Path(filled_sidecar).parent
    stem = Path(filled_sidecar).name.split("_desc-filled_T1w")[0]
    mask_sidecar = anat / f"{stem}_label-lesion_mask.json"
    mask_meta = json.loads(mask_sidecar.read_text()) if mask_sidecar.exists() else {}
    seg = {}
    for desc in ("orig", "filled"):
        path = anat / f"{stem}_desc-{desc}_dseg.json"
        seg[desc] = json.loads(path.read_text()) if path.exists() else {}
    # Only this run's files: "sub-01_*" must not pick up "sub-01_run-2_*".
    files = sorted(
        p.relative_to(output_dir).as_posix()
        for p in anat.glob(f"{stem}_*.nii.gz")
        if re.split(r"_(?:label|desc)-", p.name)[0] == stem
    )
    description = json.loads((output_dir / "dataset_description.json").read_text())
    raw_root = description.get("DatasetLinks", {}).get("raw", "")
    raw_source = next((s for s in filled.get("Sources", []) if s.startswith("bids:raw:")), "")
    summary: dict[str, Any] = {
        "source": raw_source.removeprefix("bids:raw:"),
        "mask_source": (mask_meta.get("RawSources") or ["n/a"])[0],
        "filled": filled,
        "mask": {"Warnings": [], **{k: mask_meta.get(k) for k in (
            "MaskAlignment", "Dilation", "LesionCount", "LesionVolumeML")}},
        "segmentation": seg,
        "files": files,
    }  # fmt: skip
    if raw_root.startswith("file://"):
        summary["bids_dir"] = raw_root.removeprefix("file://")
    return summary
