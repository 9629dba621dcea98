"""Run the official BIDS validator (bids-validator-deno, a test extra) on a dataset.

The validator carries its BIDS schema (1.2.7 in 3.0.2) in its bundle and fetches one only
when ``BIDS_SCHEMA`` or ``--schema`` names it, so with that variable removed it needs no
network (checked with the network unshared). Tests skip only when it cannot be found.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def validator_executable() -> str:
    found = shutil.which("bids-validator-deno")
    beside = Path(sys.executable).with_name("bids-validator-deno")
    if found is None and beside.is_file():
        found = str(beside)
    if found is None:
        pytest.skip("bids-validator-deno is not installed (pip install bids-validator-deno)")
    return found


def validator_errors(dataset: Path) -> list[tuple[str, str]]:
    """(code, location) of every error the validator reports for ``dataset``."""
    proc = subprocess.run(
        [validator_executable(), "--format", "json", str(dataset)],
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in os.environ.items() if k != "BIDS_SCHEMA"},
    )
    try:
        issues = json.loads(proc.stdout)["issues"]["issues"]
    except (json.JSONDecodeError, KeyError):
        raise AssertionError(f"the validator gave no report (exit {proc.returncode}): "
                             f"{proc.stderr[-2000:]}") from None  # fmt: skip
    return [(i["code"], i.get("location", "")) for i in issues if i["severity"] == "error"]
