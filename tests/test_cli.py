"""Command line: exit codes and one-sentence messages for every bad input."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from conftest import lesion_mask, save, write_description

from bidsfill.cli.run import run


def _run(capsys, *args):
    code = run([str(a) for a in args])
    err = capsys.readouterr().err
    return code, err


def test_version(capsys):
    assert run(["--version"]) == 0
    assert "bidsfill" in capsys.readouterr().out


def test_unknown_level_is_17(tiny_bids, tmp_path, capsys):
    code, err = _run(capsys, tiny_bids, tmp_path / "out", "session")
    assert code == 17
    assert "Unknown analysis level" in err and "Traceback" not in err


def test_usage_error_is_64(tiny_bids, tmp_path, capsys):
    code, err = _run(capsys, tiny_bids, tmp_path / "out", "participant", "--nprocs", "zero")
    assert code == 64
    code, err = _run(capsys, tmp_path / "missing", tmp_path / "out", "participant")
    assert code == 64 and "does not exist" in err


@pytest.mark.parametrize("where", ["same", "inside_out", "inside_work"])
def test_output_or_work_inside_input_is_64(tiny_bids, tmp_path, capsys, where):
    out = {"same": tiny_bids, "inside_out": tiny_bids / "derivatives" / "x"}.get(
        where, tmp_path / "o"
    )
    args = [tiny_bids, out, "participant"]
    if where == "inside_work":
        args += ["-w", tiny_bids / "work"]
    code, err = _run(capsys, *args)
    assert code == 64
    assert "must not" in err
    assert not (tiny_bids / "derivatives").exists() and not (tiny_bids / "work").exists()


def test_not_a_dataset_is_16(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, err = _run(
        capsys, tmp_path / "empty", tmp_path / "out", "participant", "--skip-bids-validation"
    )
    assert code == 16 and "dataset_description.json" in err


def test_unknown_participant_is_18(tiny_bids, tmp_path, capsys):
    code, err = _run(capsys, tiny_bids, tmp_path / "out", "participant", "--participant-label", "sub-99",
                     "--skip-bids-validation")  # fmt: skip
    assert code == 18 and "sub-99" in err


def test_filter_matching_nothing_is_18(tiny_bids, tmp_path, capsys):
    filt = tmp_path / "filter.json"
    filt.write_text(json.dumps({"t1w": {"acquisition": "nope"}}))
    code, err = _run(capsys, tiny_bids, tmp_path / "out", "participant", "--bids-filter-file", filt,
                     "--skip-bids-validation")  # fmt: skip
    assert code == 18


def test_bad_filter_file_is_64(tiny_bids, tmp_path, capsys):
    filt = tmp_path / "filter.json"
    filt.write_text("{not json")
    code, err = _run(capsys, tiny_bids, tmp_path / "out", "participant", "--bids-filter-file", filt)
    assert code == 64 and "not valid JSON" in err


def test_no_mask_anywhere_is_66(tiny_bids, tmp_path, capsys):
    code, err = _run(capsys, tiny_bids, tmp_path / "out", "participant", "--participant-label", "03",
                     "--skip-bids-validation")  # fmt: skip
    assert code == 66 and "lesion mask" in err


def _bad_t1w(tiny_bids, data, dtype=np.float32, raw=None):
    path = tiny_bids / "sub-01" / "ses-1" / "anat" / "sub-01_ses-1_T1w.nii.gz"
    if raw is not None:
        path.write_bytes(raw)
    else:
        save(data, path, dtype)
    return path


@pytest.mark.parametrize(
    "kind,needle",
    [("4d", "3D volume"), ("nan", "NaN"), ("unreadable", "could not be read")],
)
def test_bad_t1w_is_16(tiny_bids, tmp_path, capsys, kind, needle):
    if kind == "4d":
        _bad_t1w(tiny_bids, np.ones((24, 28, 24, 3)))
    elif kind == "nan":
        data = np.ones((24, 28, 24), np.float32)
        data[3, 3, 3] = np.nan
        _bad_t1w(tiny_bids, data)
    else:
        _bad_t1w(tiny_bids, None, raw=b"this is not a nifti file")
    code, err = _run(capsys, tiny_bids, tmp_path / "out", "participant", "--participant-label", "01",
                     "--skip-bids-validation")  # fmt: skip
    assert code == 16, err
    assert needle in err and "Traceback" not in err
    assert not (tmp_path / "out" / "sub-01").exists()


def test_two_candidate_masks_is_16(tiny_bids, tmp_path, capsys):
    deriv = tmp_path / "more"
    write_description(deriv, derivative=True)
    save(
        lesion_mask(),
        deriv / "sub-01" / "ses-1" / "anat" / "sub-01_ses-1_label-lesion_mask.nii.gz",
        np.uint8,
    )
    code, err = _run(capsys, tiny_bids, tmp_path / "out", "participant", "--participant-label", "01",
                     "--derivatives", deriv, "--skip-bids-validation")  # fmt: skip
    assert code == 16 and "more than one candidate lesion mask" in err


def test_group_without_outputs_is_66(tiny_bids, tmp_path, capsys):
    code, err = _run(capsys, tiny_bids, tmp_path / "out", "group")
    assert code == 66 and "participant level first" in err


def test_mask_without_overlap_is_16(tiny_bids, tmp_path, capsys):
    far = np.diag([2.0, 2.0, 2.0, 1.0])
    far[:3, 3] = 5000
    roi = tiny_bids / "sub-01" / "ses-1" / "anat" / "sub-01_ses-1_label-lesion_roi.nii.gz"
    save(lesion_mask(), roi, np.uint8, affine=far)
    code, err = _run(capsys, tiny_bids, tmp_path / "out", "participant", "--participant-label", "01",
                     "--skip-bids-validation")  # fmt: skip
    assert code == 16 and "does not overlap" in err and "Traceback" not in err
    assert nib.load(str(roi)).affine[0, 3] == 5000
