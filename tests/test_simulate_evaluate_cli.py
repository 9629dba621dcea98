"""bidsfill-simulate and bidsfill-evaluate: outputs, validity, exit codes."""

from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest
from bids import BIDSLayout
from conftest import phantom, save, write_description

from bidsfill.cli.evaluate import main as evaluate_main
from bidsfill.cli.simulate import main as simulate_main


@pytest.fixture
def healthy(tmp_path):
    root = tmp_path / "healthy"
    write_description(root)
    (root / "participants.tsv").write_text("participant_id\nsub-01\n")
    save((phantom(0) * 5).clip(0), root / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    return root


def _data(path):
    return np.asarray(nib.load(str(path)).dataobj)


def test_simulate_writes_valid_bids_and_truth(healthy, tmp_path):
    out = tmp_path / "lesioned"
    args = [
        str(healthy),
        str(out),
        "--n-lesions",
        "2",
        "--volume-ml",
        "0.02",
        "0.06",
        "--contrast",
        "0.4",
        "0.4",
        "--seed",
        "3",
    ]
    assert simulate_main(args) == 0
    layout = BIDSLayout(str(out), validate=True)
    assert len(layout.get(suffix="T1w", extension=".nii.gz")) == 1
    anat = out / "sub-01" / "anat"
    lesioned, mask = (
        _data(anat / "sub-01_T1w.nii.gz"),
        _data(anat / "sub-01_label-lesion_roi.nii.gz") > 0,
    )
    truth_anat = out / "derivatives" / "truth" / "sub-01" / "anat"
    truth = _data(truth_anat / "sub-01_desc-truth_T1w.nii.gz")
    original = _data(healthy / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    assert lesioned.dtype == original.dtype == truth.dtype
    assert np.array_equal(truth, original) and mask.any()
    assert np.array_equal(lesioned[~mask], original[~mask])
    assert lesioned[mask].mean() < 0.85 * original[mask].mean()
    assert np.array_equal(_data(truth_anat / "sub-01_label-lesion_mask.nii.gz") > 0, mask)
    desc = json.loads((out / "derivatives" / "truth" / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative"
    # Seeded: the same command gives the same lesions.
    again = tmp_path / "again"
    assert simulate_main([*args[:1], str(again), *args[2:]]) == 0
    assert np.array_equal(_data(again / "sub-01" / "anat" / "sub-01_T1w.nii.gz"), lesioned)


def test_simulate_exit_codes(healthy, tmp_path, capsys):
    assert simulate_main([str(tmp_path / "nope"), str(tmp_path / "o")]) == 66
    assert "does not exist" in capsys.readouterr().err
    assert simulate_main([str(healthy), str(healthy / "inside")]) == 64
    assert simulate_main([str(healthy), str(tmp_path / "o"), "--contrast", "0.6", "0.2"]) == 64
    assert (
        simulate_main([str(healthy), str(tmp_path / "o"), "--real-masks", str(tmp_path / "x")])
        == 66
    )
    with pytest.raises(SystemExit) as exc:
        simulate_main([str(healthy)])
    assert exc.value.code == 64
    err = capsys.readouterr().err
    assert "Traceback" not in err


def _fake_output(tmp_path):
    """A truth dataset and a bidsfill-like output with one image filled perfectly."""
    truth_dir, out_dir = tmp_path / "truth", tmp_path / "out"
    truth = phantom(1)
    mask = np.zeros(truth.shape, np.uint8)
    mask[10:14, 8:12, 10:14] = 1
    for ses, filled in (("1", truth), ("2", np.where(mask > 0, 0, truth))):
        rel = f"sub-01/ses-{ses}/anat/sub-01_ses-{ses}"
        save(truth, truth_dir / f"{rel}_desc-truth_T1w.nii.gz", np.float32)
        save(mask, truth_dir / f"{rel}_label-lesion_mask.nii.gz", np.uint8)
        save(filled, out_dir / f"{rel}_desc-filled_T1w.nii.gz", np.float32)
        save(mask, out_dir / f"{rel}_label-lesion_mask.nii.gz", np.uint8)
    return truth_dir, out_dir


def test_evaluate_single_files(tmp_path):
    truth_dir, out_dir = _fake_output(tmp_path)
    rel = "sub-01/ses-2/anat/sub-01_ses-2"
    out_json = tmp_path / "m.json"
    code = evaluate_main(
        [
            "--truth",
            str(truth_dir / f"{rel}_desc-truth_T1w.nii.gz"),
            "--filled",
            str(out_dir / f"{rel}_desc-filled_T1w.nii.gz"),
            "--mask",
            str(truth_dir / f"{rel}_label-lesion_mask.nii.gz"),
            "--json",
            str(out_json),
            "--no-tissues",
        ]
    )
    assert code == 0
    result = json.loads(out_json.read_text())
    for key in (
        "brats_ssim",
        "brats_mse",
        "brats_psnr",
        "brats_psnr_01",
        "ssim3d",
        "mae",
        "band_mse",
    ):
        assert key in result
    assert result["brats_ssim"] < 0.2 and result["brats_mse"] > 0.1


def test_evaluate_dataset_mode(tmp_path):
    truth_dir, out_dir = _fake_output(tmp_path)
    tsv, summary = tmp_path / "scores.tsv", tmp_path / "summary.json"
    code = evaluate_main(
        [
            "--truth",
            str(truth_dir),
            "--filled",
            str(out_dir),
            "--tsv",
            str(tsv),
            "--json",
            str(summary),
            "--no-tissues",
        ]
    )
    assert code == 0
    rows = list(csv.DictReader(tsv.open(), delimiter="\t"))
    assert [r["session"] for r in rows] == ["1", "2"]
    assert float(rows[0]["brats_ssim"]) == pytest.approx(1.0) and rows[0]["brats_psnr"] == "inf"
    assert float(rows[1]["brats_ssim"]) < 0.2
    data = json.loads(summary.read_text())
    assert data["n_images"] == 2 and data["brats_mse"]["n"] == 2


def test_evaluate_exit_codes(tmp_path, capsys):
    truth_dir, out_dir = _fake_output(tmp_path)
    some_file = next(truth_dir.rglob("*_T1w.nii.gz"))
    assert (
        evaluate_main(
            [
                "--truth",
                str(tmp_path / "nope.nii.gz"),
                "--filled",
                str(some_file),
                "--mask",
                str(some_file),
            ]
        )
        == 66
    )
    assert evaluate_main(["--truth", str(some_file), "--filled", str(some_file)]) == 64
    assert evaluate_main(["--truth", str(truth_dir), "--filled", str(some_file)]) == 64
    assert (
        evaluate_main(
            ["--truth", str(truth_dir), "--filled", str(tmp_path), "--tsv", str(tmp_path / "x.tsv")]
        )
        == 66
    )
    with pytest.raises(SystemExit) as exc:
        evaluate_main(["--filled", str(some_file)])
    assert exc.value.code == 64
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.slow
def test_bidsfill_runs_on_a_simulated_dataset_and_is_scored(healthy, tmp_path):
    from bidsfill.cli.run import run

    lesioned, out = tmp_path / "lesioned", tmp_path / "out"
    assert (
        simulate_main(
            [str(healthy), str(lesioned), "--n-lesions", "2", "--volume-ml", "0.02", "0.06"]
        )
        == 0
    )
    code = run(
        [
            str(lesioned),
            str(out),
            "participant",
            "--method",
            "ring",
            "--nprocs",
            "1",
            "-w",
            str(tmp_path / "work"),
        ]
    )
    assert code == 0
    tsv = tmp_path / "scores.tsv"
    assert (
        evaluate_main(
            [
                "--truth",
                str(lesioned / "derivatives" / "truth"),
                "--filled",
                str(out),
                "--tsv",
                str(tsv),
                "--no-tissues",
            ]
        )
        == 0
    )
    (row,) = list(csv.DictReader(tsv.open(), delimiter="\t"))
    assert 0.5 < float(row["brats_ssim"]) <= 1.0
