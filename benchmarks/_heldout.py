"""The default model's held-out scorecard cases, for the benchmarks that fill them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
#: Registrations and scored rows, shared with benchmarks/scorecard.py.
CACHE = ROOT / "runs" / "scorecard" / "cache"
#: Registrations and scored rows of the multi-contrast patients (compare_flair.py,
#: bench_flip.py, bench_correction_gate.py).
PATIENT_CACHE = ROOT / "runs" / "flair" / "cache"
#: The patient cases' masks, kept by the first run: registration differs between machines
#: (session 10 drew other masks than session 9 from a fresh cache), so without them a
#: decision made on one machine could not be checked on another.
PATIENT_MASKS = ROOT / "benchmarks" / "patient_masks.npz"
#: Patients neither trained on nor scored by the default: where its sampling is decided.
PATIENTS = ("ms07", "ms19", "ms26", "tcgadu7294")
#: benchmarks/scorecard.py's held-out subjects and mask kinds, in its order.
SCORECARD_SUBJECTS = ("ixi015", "fsconf01", "ds2748s61", "head01")
SCORECARD_KINDS = ("real-ms", "real-stroke", "ms", "tumour")


def held_out_cases(subjects: Sequence[str], kinds: Sequence[str], cache_dir: Path = CACHE) -> list:
    """The scorecard's cases of ``subjects`` x ``kinds``, placed exactly as the scorecard
    places them: a case's mask is drawn from a seed that depends on its scan's and kind's
    positions in the scorecard's lists, so the cases are made for the whole scorecard and
    then picked (drawing only the subset would give other masks than the scored ones)."""
    from bidsfill.bids.training import training_scans
    from bidsfill.train.scorecard import held_out_volumes, load_case_masks, make_scorecard_cases

    every_subject = sorted({*SCORECARD_SUBJECTS, *subjects})
    every_kind = [*SCORECARD_KINDS, *(k for k in kinds if k not in SCORECARD_KINDS)]
    scans = training_scans(DATA / "healthy-t1w", every_subject)
    volumes = held_out_volumes(scans, dict.fromkeys(every_subject), cache_dir)
    cases = make_scorecard_cases(volumes, every_kind, real_masks=DATA / "lesion-masks",
                                 frozen=load_case_masks(ROOT / "benchmarks" / "scorecard_masks.npz"))  # fmt: skip
    wanted_scans = {f"sub-{s}_T1w" for s in subjects}
    return [
        c for c in cases
        if c.name.split("#")[0] in wanted_scans and c.name.split("#")[1].split(":")[0] in kinds
    ]  # fmt: skip


def patient_cases(
    subjects: Sequence[str],
    kinds: Sequence[str],
    cache_dir: Path,
    masks_file: Path = PATIENT_MASKS,
    dataset: Path = DATA / "multicontrast",
) -> list:
    """One case per kind on each patient's T1w, in its healthy tissue (its own lesions
    cut out of every mask), placed as the scorecard places its cases; a case already in
    ``masks_file`` keeps its mask there, a new one is added to it. ``dataset``: another
    copy of the patients (``make_coarse_patients.py``), with its own masks file."""
    from bidsfill.bids.training import training_scans
    from bidsfill.train.scorecard import held_out_volumes, kept_scorecard_cases

    scans = training_scans(dataset, sorted(subjects))
    volumes = held_out_volumes(scans, dict.fromkeys(subjects), cache_dir)
    return kept_scorecard_cases(volumes, kinds, real_masks=DATA / "lesion-masks",
                                masks_file=masks_file)  # fmt: skip
