"""Group level: one table row per filled T1w, read back from the output sidecars."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from bidsfill.io.atomic import part_file
from bidsfill.segment.tissues import LABELS

__all__ = ["collect_rows", "write_group_table"]

_CLASSES = tuple(LABELS)  # GM, WM, CSF: the BIDS dseg order


def _entities(name: str) -> dict[str, str]:
    return dict(p.split("-", 1) for p in name.split("_")[:-1] if "-" in p)


def collect_rows(output_dir: Path) -> list[dict[str, Any]]:
    """Rows for every ``*_desc-filled_T1w.json`` under ``output_dir``."""
    rows = []
    for sidecar in sorted(Path(output_dir).glob("sub-*/**/anat/*_desc-filled_T1w.json")):
        meta = json.loads(sidecar.read_text())
        ents = _entities(sidecar.name)
        row: dict[str, Any] = {
            "subject": ents.get("sub", ""),
            "session": ents.get("ses", "n/a"),
            "acquisition": ents.get("acq", "n/a"),
            "run": ents.get("run", "n/a"),
            "filled_image": sidecar.with_suffix(".nii.gz").relative_to(output_dir).as_posix(),
            "method": meta.get("Method"),
            "lesion_count": meta.get("LesionCount"),
            "lesion_volume_ml": meta.get("LesionVolumeML"),
            "fill_seconds": meta.get("FillSeconds"),
            "device": meta.get("Device"),
        }
        for desc in ("orig", "filled"):
            dseg = sidecar.with_name(sidecar.name.replace("desc-filled_T1w", f"desc-{desc}_dseg"))
            vols = json.loads(dseg.read_text()).get("TissueVolumesML", {}) if dseg.exists() else {}
            for c in _CLASSES:
                row[f"{c}_ml_{desc}"] = vols.get(c, "n/a")
        for c in _CLASSES:
            a, b = row[f"{c}_ml_orig"], row[f"{c}_ml_filled"]
            row[f"{c}_ml_change"] = (
                round(b - a, 3)
                if isinstance(a, float | int) and isinstance(b, float | int)
                else "n/a"
            )
        rows.append(row)
    return rows


def write_group_table(output_dir: Path) -> tuple[Path, list[dict[str, Any]]]:
    """Write ``<output_dir>/group_T1w.tsv`` (BIDS-style TSV, ``n/a`` for missing)."""
    rows = collect_rows(output_dir)
    out = Path(output_dir) / "group_T1w.tsv"
    if rows:
        with part_file(out) as tmp, tmp.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]), delimiter="\t")
            writer.writeheader()
            writer.writerows(rows)
    return out, rows
