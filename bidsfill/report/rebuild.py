"""Rebuild a run summary from the files bidsfill wrote (for ``--reports-only``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bidsfill.bids.outputs import read_run_summary

__all__ = ["summary_from_outputs"]


def summary_from_outputs(output_dir: Path, filled_sidecar: Path) -> dict[str, Any]:
    """The summary the workflow's ``ds_run`` node gives the report, read from the same files.

    Both go through :func:`bidsfill.bids.outputs.read_run_summary`, so they share one
    schema; only the mask alignment warnings, kept in no sidecar, are missing here.
    """
    return read_run_summary(output_dir, filled_sidecar).to_dict()
