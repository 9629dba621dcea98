"""End to end on the demo dataset (downsampled): participant then group, FLAIR-grid mask."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from conftest import tree_hashes
from official_validator import validator_errors

from bidsfill.cli.run import run
from bidsfill.demo import make_demo_dataset
from bidsfill.io.nifti import raw_data


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """The demo dataset through the participant and group levels."""
    tmp = tmp_path_factory.mktemp("demo_run")
    demo = make_demo_dataset(tmp / "demo", seed=0, downsample=2)
    before = tree_hashes(demo.bids)
    out = tmp / "out"
    code = run([str(demo.bids), str(out), "participant", "--derivatives", str(demo.lesions),
                "-w", str(tmp / "work"), "--nprocs", "2"])  # fmt: skip
    assert code == 0
    assert tree_hashes(demo.bids) == before
    assert run([str(demo.bids), str(out), "group"]) == 0
    return demo, out


@pytest.mark.slow
def test_demo_participant_and_group(demo_run):
    demo, out = demo_run
    rows = (out / "group_T1w.tsv").read_text().splitlines()
    assert len(rows) == 1 + len(demo.images)
    for image in demo.images:
        anat = out / image.t1w.parent.relative_to(demo.bids)
        stem = image.t1w.name.replace("_T1w.nii.gz", "")
        filled = nib.load(str(anat / f"{stem}_desc-filled_T1w.nii.gz"))
        mask = np.asarray(nib.load(str(anat / f"{stem}_label-lesion_mask.nii.gz")).dataobj) > 0
        original = nib.load(str(image.t1w))
        assert np.array_equal(raw_data(filled)[~mask], raw_data(original)[~mask])
        truth_mask = np.asarray(nib.load(str(image.truth_mask)).dataobj) > 0
        dice = 2 * (mask & truth_mask).sum() / (mask.sum() + truth_mask.sum())
        meta = json.loads((anat / f"{stem}_label-lesion_mask.json").read_text())
        if image.flair is not None:  # mask drawn on the FLAIR grid, brought over by registration
            assert meta["MaskAlignment"] == "registered:FLAIR"
            assert dice > 0.5
        else:
            assert meta["MaskAlignment"] == "same-grid" and dice == 1.0
        # the fill is closer to the lesion-free truth than the lesioned input is
        truth = nib.load(str(image.truth)).get_fdata()[mask]
        assert (
            np.abs(filled.get_fdata()[mask] - truth).mean()
            < np.abs(original.get_fdata()[mask] - truth).mean()
        )


@pytest.mark.slow
def test_demo_derivatives_pass_the_official_validator(demo_run):
    _, out = demo_run
    assert validator_errors(out) == []
