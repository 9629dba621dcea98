"""Which scans of a BIDS dataset to train or score on (pybids), for ``bidsfill-train``.

The training library (:mod:`bidsfill.train`) knows nothing of BIDS; it loads the
:class:`~bidsfill.train.dataset.TrainingScan` list this module finds.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bidsfill.train.dataset import TrainingScan

__all__ = ["training_scans"]

LOGGER = logging.getLogger("bidsfill.bids.training")


def training_scans(
    bids_dir: str | Path,
    participant_labels: Sequence[str] | None = None,
    *,
    flair: bool = False,
    t2w: bool = False,
) -> list[TrainingScan]:
    """Every T1w of the chosen participants, sorted by path.

    Args:
        bids_dir: the dataset root.
        participant_labels: labels with or without "sub-"; all when None.
        flair: pair each T1w with a FLAIR of the same subject and session (an extra
            channel); a T1w without one is skipped with a warning.
        t2w: likewise with a T2w.

    Raises:
        ValueError: no T1w matched, or none had the contrasts asked for.
    """
    from bids import BIDSLayout

    layout = BIDSLayout(str(bids_dir), validate=False)
    query: dict[str, Any] = {"suffix": "T1w", "extension": [".nii", ".nii.gz"]}
    if participant_labels:
        query["subject"] = [label.removeprefix("sub-") for label in participant_labels]
    files = layout.get(return_type="object", **query)
    if not files:
        raise ValueError(f"No T1w images found in {bids_dir} for {participant_labels or 'all'}.")
    wanted = {"flair": "FLAIR"} if flair else {}  # channel -> BIDS suffix
    if t2w:
        wanted["t2w"] = "T2w"
    scans = []
    for bf in sorted(files, key=lambda f: f.path):
        ents = bf.get_entities()
        extras = {}
        for channel, suffix in wanted.items():
            match = layout.get(subject=ents["subject"], session=ents.get("session"),
                               suffix=suffix, extension=[".nii", ".nii.gz"])  # fmt: skip
            if not match:
                LOGGER.warning("Skipping %s: no %s beside it.", bf.filename, suffix)
                break
            extras[channel] = Path(match[0].path)
        if len(extras) < len(wanted):
            continue
        name = bf.filename.split(".nii")[0]
        scans.append(TrainingScan(Path(bf.path), name, extras, Path(bids_dir).resolve()))
    if not scans:
        raise ValueError(f"No T1w image with a {' and a '.join(wanted.values())} was found.")
    return scans
