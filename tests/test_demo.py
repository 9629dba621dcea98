"""The demo dataset: valid BIDS, lesions in WM and darker than WM, truth equal elsewhere."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from bids import BIDSLayout
from bids_validator import BIDSValidator
from scipy import ndimage

from bidsfill.cli.demo import main
from bidsfill.demo import make_demo_dataset


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_demo_dataset(tmp_path_factory.mktemp("demo"), seed=0, downsample=2)


def _data(path):
    return np.asarray(nib.load(str(path)).dataobj)


def test_raw_dataset_is_valid_bids(demo):
    layout = BIDSLayout(str(demo.bids), validate=True)
    assert len(layout.get(suffix="T1w", extension=".nii.gz")) == 3
    assert len(layout.get(suffix="FLAIR", extension=".nii.gz")) == 1
    assert layout.get_subjects() == ["01", "02"] and layout.get_sessions() == ["1", "2"]
    # The fMRIPrep-style roi masks are not in the BIDS schema yet; .bidsignore lists them
    # and every other file passes the validator's rules.
    validator = BIDSValidator()
    for path in demo.bids.rglob("*"):
        rel = "/" + path.relative_to(demo.bids).as_posix()
        if path.is_file() and "derivatives" not in rel and "_roi." not in rel:
            assert validator.is_bids(rel) or path.name in {"README", ".bidsignore"}, rel
    assert "*_roi.nii.gz" in (demo.bids / ".bidsignore").read_text()
    unvalidated = BIDSLayout(str(demo.bids), validate=False)
    assert len(unvalidated.get(suffix="roi", extension=".nii.gz")) == 2


def test_derivative_datasets(demo):
    for root in (demo.lesions, demo.truth):
        desc = json.loads((root / "dataset_description.json").read_text())
        assert (
            desc["DatasetType"] == "derivative"
            and desc["GeneratedBy"][0]["Name"] == "bidsfill-demo"
        )
    lesions = BIDSLayout(str(demo.lesions), validate=False, is_derivative=True)
    masks = lesions.get(subject="02", desc="lesion", suffix="mask", extension=".nii.gz")
    assert len(masks) == 1
    flair = next(im for im in demo.images if im.flair is not None)
    mask_img, flair_img, t1_img = (
        nib.load(str(p)) for p in (masks[0].path, flair.flair, flair.t1w)
    )
    assert mask_img.shape == flair_img.shape and np.allclose(mask_img.affine, flair_img.affine)
    assert mask_img.shape != t1_img.shape  # the app must register the FLAIR to the T1w
    truth = BIDSLayout(str(demo.truth), validate=False, is_derivative=True)
    assert len(truth.get(desc="truth", suffix="T1w", extension=".nii.gz")) == 3


def test_images_dtypes_lesions_and_truth(demo):
    assert len(demo.images) == 3
    for im in demo.images:
        lesioned, truth, mask = _data(im.t1w), _data(im.truth), _data(im.truth_mask) > 0
        expected = np.uint8 if im.subject == "02" else np.int16
        assert lesioned.dtype == expected and truth.dtype == expected
        assert mask.any()
        # Outside the lesions the lesioned image is the truth, bit for bit.
        assert np.array_equal(lesioned[~mask], truth[~mask])
        # Lesions sit in white matter (the brightest tissue of the truth) ...
        brain = truth > 0.3 * truth.max()
        assert np.median(truth[mask]) > np.percentile(truth[brain], 50)
        # ... and are darker than the white matter right around them.
        ring = ndimage.binary_dilation(mask, iterations=2) & ~mask & brain
        assert lesioned[mask].astype(float).mean() < 0.85 * np.median(truth[ring])
        if im.session is not None:
            assert im.mask.name.endswith("_label-lesion_roi.nii.gz")
            assert np.array_equal(_data(im.mask) > 0, mask)


@pytest.mark.slow
def test_seeded(demo, tmp_path):
    again = make_demo_dataset(tmp_path / "again", seed=0, downsample=2)
    other = make_demo_dataset(tmp_path / "other", seed=1, downsample=2)
    for a, b, c in zip(demo.images, again.images, other.images, strict=True):
        assert np.array_equal(_data(a.t1w), _data(b.t1w))
        assert np.array_equal(_data(a.truth_mask), _data(b.truth_mask))
        assert not np.array_equal(_data(a.t1w), _data(c.t1w))


def test_cli_refuses_existing_and_bad_args(tmp_path, capsys):
    (tmp_path / "bids").mkdir()
    assert main([str(tmp_path)]) == 64
    assert "already exists" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path), "--seed", "x"])
    assert exc.value.code == 64
