"""The default model's held-out scorecard cases, for the benchmarks that fill them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
#: Registrations and scored rows, shared with benchmarks/scorecard.py.
CACHE = ROOT / "runs" / "scorecard" / "cache"


def held_out_cases(subjects: Sequence[str], kinds: Sequence[str], cache_dir: Path = CACHE) -> list:
    """One case per (held-out scan, mask kind), placed exactly as the scorecard places them."""
    from bidsfill.bids.training import training_scans
    from bidsfill.train.scorecard import held_out_volumes, make_scorecard_cases

    scans = training_scans(DATA / "healthy-t1w", sorted(subjects))
    volumes = held_out_volumes(scans, dict.fromkeys(subjects), cache_dir)
    return make_scorecard_cases(volumes, kinds, real_masks=DATA / "lesion-masks")
