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

__all__ = ["contrast_query", "synthesis_scans", "training_scans"]

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
    query = contrast_query("T1w")  # plain T1w: a contrast-enhanced one is another contrast
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
        # pybids' raw config has no `label` entity: select `_label-lesion_` by name
        own = [f.path for f in layout.get(subject=ents["subject"], session=ents.get("session"),
                                          suffix="roi", extension=[".nii", ".nii.gz"])
               if "_label-lesion_" in Path(f.path).name]  # fmt: skip
        scans.append(TrainingScan(Path(bf.path), name, extras, Path(bids_dir).resolve(),
                                  Path(own[0]) if own else None))  # fmt: skip
    if not scans:
        raise ValueError(f"No T1w image with a {' and a '.join(wanted.values())} was found.")
    return scans


def contrast_query(contrast: str) -> dict[str, Any]:
    """BIDS entities of a contrast name: "FLAIR", "T2w", "ce-gadolinium_T1w"."""
    from bids.layout import Query

    ce, _, suffix = contrast.rpartition("_")
    query: dict[str, Any] = {"suffix": suffix, "extension": [".nii", ".nii.gz"]}
    query["ceagent"] = ce.removeprefix("ce-") if ce else Query.NONE
    return query


def synthesis_scans(
    bids_dir: str | Path,
    contrasts: Sequence[str],
    participant_labels: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Sessions that have every one of ``contrasts`` (target and sources), sorted.

    Each item: ``participant``, ``session``, ``paths`` (contrast -> Path), and the
    ``source`` and ``licence`` columns of participants.tsv when it has them.
    A session lacking one of the contrasts is skipped with a warning.

    Raises:
        ValueError: no session has them all.
    """
    from bids import BIDSLayout

    layout = BIDSLayout(str(bids_dir), validate=False)
    table = _participants(Path(bids_dir))
    subjects = layout.get_subjects()
    if participant_labels:
        wanted = {label.removeprefix("sub-") for label in participant_labels}
        subjects = [s for s in subjects if s in wanted]
    out = []
    for sub in sorted(subjects):
        for ses in layout.get_sessions(subject=sub) or [None]:
            paths = {}
            for contrast in contrasts:
                hits = layout.get(subject=sub, session=ses, **contrast_query(contrast))
                if not hits:
                    LOGGER.warning("Skipping sub-%s%s: no %s.", sub,
                                   f" ses-{ses}" if ses else "", contrast)  # fmt: skip
                    break
                paths[contrast] = Path(sorted(h.path for h in hits)[0])
            if len(paths) == len(contrasts):
                row = table.get(f"sub-{sub}", {})
                out.append({"participant": sub, "session": ses, "paths": paths,
                            "source": row.get("source"), "licence": row.get("licence")})  # fmt: skip
    if not out:
        raise ValueError(f"No session in {bids_dir} has all of {', '.join(contrasts)}.")
    return out


def _participants(root: Path) -> dict[str, dict[str, str]]:
    path = root / "participants.tsv"
    if not path.is_file():
        return {}
    lines = [line.split("\t") for line in path.read_text().splitlines() if line.strip()]
    head = lines[0]
    return {row[0]: dict(zip(head, row, strict=False)) for row in lines[1:]}
