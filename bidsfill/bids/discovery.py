"""Find T1w images, their lesion masks and same-session FLAIR/T2w with pybids.

Masks come from the raw dataset (``anat/<entities>_label-lesion_roi``, the fMRIPrep
convention) or from any ``--derivatives`` dataset (``<entities>_label-lesion_mask`` or
``<entities>_desc-lesion_mask``). A mask matches a T1w when subject and session agree and
every other entity the mask names (acq, ce, rec, run) equals the T1w's; a mask that does
not name an entity applies to all values of it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bids import BIDSLayout
from bids.exceptions import BIDSValidationError

from bidsfill.exit_codes import BidsfillExit, ExitCode

__all__ = [
    "RunInputs",
    "SynthesisInputs",
    "check_filter_entities",
    "discover",
    "load_bids_filters",
    "load_layout",
    "synthesis_sessions",
    "synthetic_conditioning",
]

LOGGER = logging.getLogger("bidsfill")
_NIFTI = [".nii", ".nii.gz"]
_MATCH_ENTITIES = ("acquisition", "ceagent", "reconstruction", "run")
_FILTER_KEYS = {"t1w", "roi", "flair", "t2w"}
_QUERY_KEYS = {"extension", "suffix", "datatype", "scope"}
_JSON_KINDS = {list: "an array", str: "a string", int: "a number", float: "a number",
               bool: "a boolean"}  # fmt: skip


@dataclass(frozen=True)
class RunInputs:
    """One T1w to fill, with what was found for it."""

    t1w: Path
    subject: str
    session: str | None
    mask: Path | None
    mask_source: str  # "raw", "derivatives:<path>" or "none"
    flair: Path | None = None
    t2w: Path | None = None
    entities: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """A short unique name of this run, from its file name."""
        return self.t1w.name.split(".")[0].replace("_T1w", "").replace("-", "")


def load_bids_filters(path: Path) -> dict[str, Any]:
    """Read ``--bids-filter-file`` (fMRIPrep's format: query name -> pybids filters)."""
    try:
        filters = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise BidsfillExit(
            f"The BIDS filter file {path} is not valid JSON ({err}).", ExitCode.USAGE
        ) from None
    if not isinstance(filters, dict) or not set(filters) <= _FILTER_KEYS:
        raise BidsfillExit(
            f"The BIDS filter file {path} must map some of {sorted(_FILTER_KEYS)} to filters.",
            ExitCode.USAGE,
        )
    for query, value in filters.items():
        if not isinstance(value, dict):
            raise BidsfillExit(
                f"In the BIDS filter file {path}, {query!r} must be an object of pybids "
                f'filters such as {{"acquisition": "mprage"}}, not {json.dumps(value)}.',
                ExitCode.USAGE,
            )
    return filters


def check_filter_entities(layout: BIDSLayout, filters: dict[str, Any], path: Path | None) -> None:
    """Refuse filter keys pybids does not know, which it would raise on mid-discovery."""
    known = set(layout.get_entities()) | _QUERY_KEYS
    for query, value in filters.items():
        unknown = sorted(set(value) - known)
        if unknown:
            raise BidsfillExit(
                f"The BIDS filter file {path} filters {query!r} on "
                f"{', '.join(map(repr, unknown))}, which pybids does not know as an entity "
                "(use its full name, e.g. 'acquisition', not 'acq').",
                ExitCode.USAGE,
            )


def _read_description(root: Path, what: str) -> dict[str, Any]:
    """``dataset_description.json`` as a dict; pybids crashes on anything else."""
    path = Path(root) / "dataset_description.json"
    if not path.exists():
        raise BidsfillExit(
            f"{what} {root} has no dataset_description.json.", ExitCode.INVALID_DATASET
        )
    try:
        description = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BidsfillExit(f"{path} is not valid JSON ({err}).", ExitCode.INVALID_DATASET) from None
    if not isinstance(description, dict):
        raise BidsfillExit(
            f"{path} must hold a JSON object (with Name and BIDSVersion), not "
            f"{_JSON_KINDS.get(type(description), 'null')}.",
            ExitCode.INVALID_DATASET,
        )
    return description


def load_layout(bids_dir: Path, *, validate: bool, database_path: Path | None = None) -> BIDSLayout:
    """Index the raw dataset; an invalid dataset stops with exit code 16."""
    if not (Path(bids_dir) / "dataset_description.json").exists():
        raise BidsfillExit(
            f"{bids_dir} is not a BIDS dataset: it has no dataset_description.json.",
            ExitCode.INVALID_DATASET,
        )
    _read_description(Path(bids_dir), "The BIDS dataset")
    try:
        # pybids' validating indexer drops fMRIPrep's `_label-lesion_roi` masks, so index
        # everything and validate the files bidsfill reads with the BIDS validator.
        layout = BIDSLayout(str(bids_dir), validate=False, derivatives=False)
    except (BIDSValidationError, ValueError) as err:
        raise BidsfillExit(
            f"{bids_dir} is not a valid BIDS dataset ({err}).", ExitCode.INVALID_DATASET
        ) from None
    if validate:
        _validate(layout)
    return layout


def _validate(layout: BIDSLayout) -> None:
    from bids_validator import BIDSValidator

    description = _read_description(Path(layout.root), "The BIDS dataset")
    missing = [k for k in ("Name", "BIDSVersion") if k not in description]
    if missing:
        raise BidsfillExit(
            f"{layout.root}/dataset_description.json lacks {', '.join(missing)}.",
            ExitCode.INVALID_DATASET,
        )
    validator = BIDSValidator()
    for f in layout.get(suffix=["T1w", "FLAIR", "T2w"], extension=_NIFTI, return_type="filename"):
        rel = "/" + Path(f).relative_to(layout.root).as_posix()
        if not validator.is_bids(rel):
            raise BidsfillExit(
                f"{rel.lstrip('/')} is not a valid BIDS file name (use "
                "--skip-bids-validation to proceed anyway).",
                ExitCode.INVALID_DATASET,
            )


def _derivative_layout(path: Path) -> BIDSLayout:
    _read_description(Path(path), "The derivatives dataset")
    try:
        return BIDSLayout(str(path), validate=False, is_derivative=True)
    except (BIDSValidationError, ValueError) as err:
        raise BidsfillExit(
            f"The derivatives dataset {path} could not be indexed ({err}).",
            ExitCode.INVALID_DATASET,
        ) from None


def _compatible(candidate: dict[str, Any], target: dict[str, Any]) -> int | None:
    """Number of matching optional entities, or None when the candidate conflicts."""
    score = 0
    for ent in _MATCH_ENTITIES:
        if ent in candidate:
            if str(candidate[ent]) != str(target.get(ent)):
                return None
            score += 1
    return score


def _best(cands: list[tuple[Path, str, dict[str, Any]]], target: dict[str, Any]):
    scored = [
        (s, path, source)
        for path, source, ents in cands
        if (s := _compatible(ents, target)) is not None
    ]
    if not scored:
        return []
    top = max(s for s, _, _ in scored)
    return [(path, source) for s, path, source in scored if s == top]


def _query(layout: BIDSLayout, subject: str, session: str | None, **filters: Any) -> list:
    query: dict[str, Any] = {
        "subject": subject,
        "extension": _NIFTI,
        "return_type": "object",
        "invalid_filters": "allow",
    }
    query["session"] = session if session is not None else None
    query.update(filters)
    if session is None:
        query.pop("session")
        return [f for f in layout.get(**query) if "session" not in f.get_entities()]
    return layout.get(**query)


def discover(
    layout: BIDSLayout,
    *,
    participant_label: list[str] | None = None,
    session_label: list[str] | None = None,
    derivatives: list[Path] | None = None,
    bids_filters: dict[str, Any] | None = None,
) -> tuple[list[RunInputs], list[str]]:
    """Every T1w of the selected subjects/sessions with its mask; plus warnings.

    Raises:
        BidsfillExit: 18 when the filters match no T1w, 16 when a T1w has two candidate
            masks, 66 when no T1w has a mask at all.
    """
    filters = bids_filters or {}
    subjects = layout.get_subjects()
    if participant_label:
        missing = sorted(set(participant_label) - set(subjects))
        if missing:
            raise BidsfillExit(
                f"Participant(s) {', '.join('sub-' + m for m in missing)} not found in "
                f"{layout.root}.",
                ExitCode.NO_MATCH,
            )
        subjects = [s for s in subjects if s in participant_label]
    query: dict[str, Any] = {
        "subject": subjects,
        "suffix": "T1w",
        "datatype": "anat",
        "extension": _NIFTI,
        "return_type": "object",
    }
    if session_label:
        query["session"] = session_label
    query.update(filters.get("t1w", {}))
    t1ws = [f for f in layout.get(**query) if "space" not in f.get_entities()]
    if not t1ws:
        raise BidsfillExit(
            f"No T1w image in {layout.root} matches the participant, session and filter selection.",
            ExitCode.NO_MATCH,
        )
    deriv_layouts = [(Path(p), _derivative_layout(Path(p))) for p in (derivatives or [])]
    runs: list[RunInputs] = []
    warnings: list[str] = []
    for t1w in sorted(t1ws, key=lambda f: f.path):
        ents = t1w.get_entities()
        subject, session = ents["subject"], ents.get("session")
        cands: list[tuple[Path, str, dict[str, Any]]] = []
        # pybids' raw config has no `label` entity: select `_label-lesion_` by name.
        for f in _query(layout, subject, session, suffix="roi", **filters.get("roi", {})):
            if "_label-lesion_" in Path(f.path).name:
                cands.append((Path(f.path), "raw", f.get_entities()))
        for root, dlayout in deriv_layouts:
            found = _query(dlayout, subject, session, suffix="mask", label="lesion")
            found += _query(dlayout, subject, session, suffix="mask", desc="lesion")
            for f in {f.path: f for f in found}.values():
                cands.append((Path(f.path), f"derivatives:{root}", f.get_entities()))
        best = _best(cands, ents)
        if len(best) > 1:
            names = ", ".join(sorted(p.name for p, _ in best))
            raise BidsfillExit(
                f"{Path(t1w.path).name} has more than one candidate lesion mask ({names}); "
                "keep one or narrow the choice with --bids-filter-file.",
                ExitCode.INVALID_DATASET,
            )
        mask, source = best[0] if best else (None, "none")
        if mask is None:
            warnings.append(f"{Path(t1w.path).name} has no lesion mask; it is skipped.")
        extra = {}
        for suffix in ("FLAIR", "T2w"):
            others = _best(
                [
                    (Path(f.path), "raw", f.get_entities())
                    for f in _query(
                        layout, subject, session, suffix=suffix, **filters.get(suffix.lower(), {})
                    )
                ],
                {k: v for k, v in ents.items() if k != "run"},
            )
            extra[suffix] = others[0][0] if others else None
        runs.append(
            RunInputs(
                t1w=Path(t1w.path),
                subject=subject,
                session=session,
                mask=mask,
                mask_source=source,
                flair=extra["FLAIR"],
                t2w=extra["T2w"],
                entities={
                    k: v for k, v in ents.items() if k not in ("extension", "suffix", "datatype")
                },
            )
        )
    if not any(r.mask for r in runs):
        raise BidsfillExit(
            "No selected T1w image has a lesion mask (expected anat/<entities>_label-lesion_roi "
            "in the dataset or <entities>_label-lesion_mask / _desc-lesion_mask in a "
            "--derivatives dataset).",
            ExitCode.MISSING_INPUT,
        )
    return runs, warnings


@dataclass(frozen=True)
class SynthesisInputs:
    """One session lacking the ``--synthesize`` target, with the source images found."""

    subject: str
    session: str | None
    sources: dict[str, Path]  # contrast -> image, in the model's source order

    @property
    def key(self) -> str:
        return f"{self.subject}{self.session or ''}".replace("-", "")


def synthesis_sessions(
    layout: BIDSLayout,
    target: str,
    sources: list[str],
    *,
    participant_label: list[str] | None = None,
    session_label: list[str] | None = None,
) -> tuple[list[SynthesisInputs], list[str]]:
    """Sessions that lack ``target`` and have every one of ``sources``; plus warnings for
    sessions lacking both the target and a source."""
    from bidsfill.bids.training import contrast_query

    subjects = [s for s in layout.get_subjects()
                if not participant_label or s in participant_label]  # fmt: skip
    found, warnings = [], []
    for subject in sorted(subjects):
        for session in layout.get_sessions(subject=subject) or [None]:
            if session_label and session not in session_label:
                continue
            where = {"subject": subject, "session": session, "datatype": "anat"}

            def get(contrast: str, where: dict[str, Any] = where) -> list[Path]:
                hits = layout.get(**where, **contrast_query(contrast))
                return sorted(Path(h.path) for h in hits if "space" not in h.get_entities())

            if get(target):
                continue
            paths = {c: get(c) for c in sources}
            name = f"sub-{subject}" + (f"_ses-{session}" if session else "")
            lacking = [c for c, p in paths.items() if not p]
            if lacking:
                warnings.append(f"{name} has no {target} to synthesise it from: it lacks "
                                f"{', '.join(lacking)}.")  # fmt: skip
                continue
            found.append(SynthesisInputs(subject, session, {c: p[0] for c, p in paths.items()}))
    return found, warnings


_RUN_CONTRASTS = {"FLAIR": "flair", "T2w": "t2w"}  # suffix -> the RunInputs field


def synthetic_conditioning(
    runs: list[RunInputs],
    sessions: list[SynthesisInputs],
    target: str | None,
    conditioning: tuple[str, ...],
) -> dict[str, SynthesisInputs]:
    """The runs (by key) whose fill takes the ``--synthesize`` target as a conditioning
    contrast: the fill's model is conditioned on it (``conditioning``, BIDS suffixes), the
    run has no such image of its own, and its session is synthesised."""
    field = _RUN_CONTRASTS.get(target or "")
    if field is None or target not in conditioning:
        return {}
    by_session = {(s.subject, s.session): s for s in sessions}
    return {
        run.key: by_session[(run.subject, run.session)]
        for run in runs
        if run.mask is not None
        and getattr(run, field) is None
        and (run.subject, run.session) in by_session
    }
