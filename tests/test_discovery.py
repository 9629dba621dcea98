"""Discovery with real pybids: sessions, runs, raw vs derivative masks, filters."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import lesion_mask, make_lesioned, save

from bidsfill.bids.discovery import discover, load_layout
from bidsfill.exit_codes import BidsfillExit


def test_sessions_raw_and_derivative_masks(tiny_bids, tmp_path):
    layout = load_layout(tiny_bids, validate=True)
    runs, warnings = discover(layout, derivatives=[tmp_path / "lesions"])
    by_name = {r.t1w.name: r for r in runs}
    assert set(by_name) == {"sub-01_ses-1_T1w.nii.gz", "sub-01_ses-2_T1w.nii.gz",
                            "sub-02_T1w.nii.gz", "sub-03_T1w.nii.gz"}  # fmt: skip
    assert by_name["sub-01_ses-2_T1w.nii.gz"].mask.name == "sub-01_ses-2_label-lesion_roi.nii.gz"
    assert by_name["sub-01_ses-1_T1w.nii.gz"].mask_source == "raw"
    assert by_name["sub-02_T1w.nii.gz"].mask.name == "sub-02_desc-lesion_mask.nii.gz"
    assert by_name["sub-02_T1w.nii.gz"].mask_source.startswith("derivatives:")
    assert by_name["sub-03_T1w.nii.gz"].mask is None
    assert any("sub-03_T1w.nii.gz has no lesion mask" in w for w in warnings)


def test_participant_and_session_filters(tiny_bids):
    layout = load_layout(tiny_bids, validate=False)
    runs, _ = discover(layout, participant_label=["01"], session_label=["2"])
    assert [r.t1w.name for r in runs] == ["sub-01_ses-2_T1w.nii.gz"]


def test_runs_match_run_specific_masks(tiny_bids):
    anat = tiny_bids / "sub-02" / "anat"
    (anat / "sub-02_T1w.nii.gz").rename(anat / "sub-02_run-1_T1w.nii.gz")
    save(make_lesioned(9), anat / "sub-02_run-2_T1w.nii.gz")
    save(lesion_mask(), anat / "sub-02_run-1_label-lesion_roi.nii.gz", np.uint8)
    save(lesion_mask(), anat / "sub-02_run-2_label-lesion_roi.nii.gz", np.uint8)
    runs, _ = discover(load_layout(tiny_bids, validate=True), participant_label=["02"])
    assert {r.t1w.name: r.mask.name for r in runs} == {
        "sub-02_run-1_T1w.nii.gz": "sub-02_run-1_label-lesion_roi.nii.gz",
        "sub-02_run-2_T1w.nii.gz": "sub-02_run-2_label-lesion_roi.nii.gz",
    }


def test_flair_of_the_session_is_found(tiny_bids):
    save(make_lesioned(5), tiny_bids / "sub-01" / "ses-1" / "anat" / "sub-01_ses-1_FLAIR.nii.gz")
    runs, _ = discover(load_layout(tiny_bids, validate=True), participant_label=["01"])
    flairs = {r.t1w.name: r.flair for r in runs}
    assert flairs["sub-01_ses-1_T1w.nii.gz"].name == "sub-01_ses-1_FLAIR.nii.gz"
    assert flairs["sub-01_ses-2_T1w.nii.gz"] is None


def test_bids_filter_on_t1w(tiny_bids, tmp_path):
    anat = tiny_bids / "sub-02" / "anat"
    save(make_lesioned(8), anat / "sub-02_acq-fast_T1w.nii.gz")
    runs, _ = discover(load_layout(tiny_bids, validate=False), participant_label=["02"],
                       derivatives=[tmp_path / "lesions"],
                       bids_filters={"t1w": {"acquisition": "fast"}})  # fmt: skip
    assert [r.t1w.name for r in runs] == ["sub-02_acq-fast_T1w.nii.gz"]
    assert runs[0].mask is not None  # an acq-less mask applies to every acquisition


def test_invalid_file_name_is_refused_when_validating(tiny_bids):
    save(make_lesioned(1), tiny_bids / "sub-01" / "anat" / "sub-01_foo-bar_T1w.nii.gz")
    with pytest.raises(BidsfillExit) as exc:
        load_layout(tiny_bids, validate=True)
    assert exc.value.code == 16
    load_layout(tiny_bids, validate=False)


def test_training_scans_find_the_chosen_t1w(tiny_bids, caplog):
    """bidsfill-train's discovery (BIDS layer): the chosen subjects' T1w, sorted; with
    --flair a T1w without a FLAIR beside it is skipped, and none at all is an error."""
    from bidsfill.bids.training import training_scans

    scans = training_scans(tiny_bids, ["sub-01", "03"])
    assert [s.name for s in scans] == ["sub-01_ses-1_T1w", "sub-01_ses-2_T1w", "sub-03_T1w"]
    assert all(s.path.exists() and s.dataset == tiny_bids.resolve() for s in scans)
    assert len(training_scans(tiny_bids)) == 4
    with pytest.raises(ValueError, match="No T1w images found"):
        training_scans(tiny_bids, ["99"])
    with pytest.raises(ValueError, match="No T1w image with a FLAIR"):
        training_scans(tiny_bids, ["01"], flair=True)
    assert "no FLAIR beside it" in caplog.text
