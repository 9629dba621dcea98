"""Tissue segmentation (Atropos via antspyx here) and brain-mask estimation."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from bidsfill.segment import (
    LABELS,
    Segmentation,
    estimate_brain_mask,
    looks_skull_stripped,
    segment_tissues,
)

# Realistic voxel size so that the phantoms have brain-like volumes in mL.
AFFINE = np.diag([6.0, 6.0, 6.0, 1.0])
# shared/ lies beside the checkout (here and in CI) or inside it (a copied working tree);
# found from the repository, never from an absolute path of one machine.
_ROOT = Path(__file__).resolve().parents[1]
_HEAD01_REL = "data/healthy-t1w/sub-head01/anat/sub-head01_T1w.nii.gz"
HEAD01 = next(
    (p / _HEAD01_REL for p in (_ROOT / "shared", _ROOT.parent / "shared")
     if (p / _HEAD01_REL).exists()),
    _ROOT.parent / "shared" / _HEAD01_REL,
)  # fmt: skip


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * (a & b).sum() / max(a.sum() + b.sum(), 1)


@pytest.fixture(scope="module")
def phantom() -> dict[str, np.ndarray]:
    """32^3 brain: WM ball, GM shell, CSF shell (truth in BIDS labels), noise."""
    shape = (32, 32, 32)
    r = np.sqrt(((np.indices(shape) - 15.5) ** 2).sum(0))
    truth = np.zeros(shape, np.uint8)
    truth[r < 13] = LABELS["CSF"]
    truth[r < 11] = LABELS["GM"]
    truth[r < 7] = LABELS["WM"]
    means = {0: 0.0, LABELS["CSF"]: 0.25, LABELS["GM"]: 0.55, LABELS["WM"]: 0.85}
    image = np.vectorize(means.get)(truth).astype(np.float32)
    image += np.random.default_rng(0).normal(0, 0.04, shape).astype(np.float32) * (truth > 0)
    return {"image": image, "truth": truth, "brain": truth > 0}


@pytest.fixture(scope="module")
def segmentation(phantom) -> Segmentation:
    return segment_tissues(phantom["image"], AFFINE, brain_mask=phantom["brain"], seed=0)


@pytest.mark.skipif(shutil.which("fast") is not None, reason="FSL FAST would be used")
def test_atropos_is_used_without_fsl(segmentation):
    assert segmentation.segmenter == "ants-atropos"


def test_three_classes_in_bids_order(phantom, segmentation):
    dseg = segmentation.dseg
    assert dseg.dtype == np.uint8
    assert set(np.unique(dseg)) == {0, 1, 2, 3}
    assert not dseg[~phantom["brain"]].any()
    for name, label in LABELS.items():
        dice = _dice(dseg == label, phantom["truth"] == label)
        assert dice > 0.8, f"{name}: Dice {dice:.2f}"


def test_probseg_is_a_distribution_in_the_brain(phantom, segmentation):
    assert set(segmentation.probseg) == {"GM", "WM", "CSF"}
    stack = np.stack([segmentation.probseg[k] for k in ("GM", "WM", "CSF")])
    assert stack.dtype == np.float32
    assert stack.min() >= 0.0 and stack.max() <= 1.0
    np.testing.assert_allclose(stack.sum(0)[phantom["brain"]], 1.0, atol=1e-4)
    assert not stack[:, ~phantom["brain"]].any()
    # dseg is the argmax of probseg.
    np.testing.assert_array_equal(
        stack.argmax(0)[phantom["brain"]] + 1, segmentation.dseg[phantom["brain"]]
    )


def test_segmentation_is_deterministic(phantom, segmentation):
    again = segment_tissues(phantom["image"], AFFINE, brain_mask=phantom["brain"], seed=0)
    np.testing.assert_array_equal(again.dseg, segmentation.dseg)
    for name in LABELS:
        np.testing.assert_array_equal(again.probseg[name], segmentation.probseg[name])


def test_excluded_voxels_are_not_labelled(phantom):
    exclude = np.zeros(phantom["image"].shape, bool)
    exclude[14:18, 14:18, 14:18] = True
    seg = segment_tissues(
        phantom["image"], AFFINE, brain_mask=phantom["brain"], exclude_mask=exclude
    )
    assert not seg.dseg[exclude].any()
    assert _dice(seg.dseg == LABELS["WM"], (phantom["truth"] == LABELS["WM"]) & ~exclude) > 0.8


def test_bad_mask_shape_raises(phantom):
    with pytest.raises(ValueError, match="Brain mask shape"):
        segment_tissues(phantom["image"], AFFINE, brain_mask=np.ones((4, 4, 4), bool))


def test_brain_mask_of_skull_stripped_phantom(phantom):
    mask, stripped = estimate_brain_mask(phantom["image"], AFFINE)
    assert stripped
    assert _dice(mask, phantom["brain"]) > 0.98


def test_synthetic_head_is_not_skull_stripped(phantom):
    """Brain + dark skull gap + bright scalp shell: a head, not a stripped brain."""
    shape = phantom["image"].shape
    r = np.sqrt(((np.indices(shape) - 15.5) ** 2).sum(0))
    head = phantom["image"].copy()
    head[(r >= 13) & (r < 14)] = 0.05  # skull
    head[(r >= 14) & (r < 15.5)] = 0.9  # scalp fat
    assert looks_skull_stripped(phantom["image"], AFFINE)
    assert not looks_skull_stripped(head, AFFINE)


@pytest.mark.slow
def test_segment_mni_template_matches_its_tissue_maps():
    from nilearn.datasets import (
        load_mni152_brain_mask,
        load_mni152_template,
        load_mni152_wm_template,
    )

    tpl = load_mni152_template(resolution=2)
    brain = np.asarray(load_mni152_brain_mask(resolution=2).dataobj) > 0
    wm = np.asarray(load_mni152_wm_template(resolution=2).dataobj) > 0.5
    seg = segment_tissues(np.asarray(tpl.dataobj, np.float32), tpl.affine, brain_mask=brain)
    assert _dice(seg.dseg == LABELS["WM"], wm & brain) > 0.8


@pytest.mark.slow
@pytest.mark.skipif(not HEAD01.exists(), reason="sub-head01 is not available")
def test_brain_mask_on_real_head():
    import nibabel as nib

    img = nib.load(HEAD01)
    data = np.asarray(img.dataobj, dtype=np.float32)
    mask, stripped = estimate_brain_mask(data, img.affine, seed=0)
    assert not stripped
    voxel_ml = float(np.prod(img.header.get_zooms()[:3])) / 1000
    assert 1000 < mask.sum() * voxel_ml < 1800  # a brain, not the head (4.2 L)
    head = data > 0
    assert (mask & head).sum() / mask.sum() > 0.97  # inside the head
    # Brain tissue is brighter than the skull/CSF ring just outside the mask.
    from scipy import ndimage

    shell = ndimage.binary_dilation(mask, iterations=3) & ~mask & head
    assert data[mask].mean() > 1.2 * data[shell].mean()


def test_noisy_background_skull_stripped_is_recognised(phantom):
    """Noise in the background (simulated or exported scans) is still a stripped brain."""
    rng = np.random.default_rng(0)
    noisy = phantom["image"] + np.abs(rng.normal(0, 0.02, phantom["image"].shape)).astype(
        np.float32
    )
    mask, stripped = estimate_brain_mask(noisy, AFFINE)
    assert stripped
    assert _dice(mask, phantom["brain"]) > 0.95
    again, _ = estimate_brain_mask(noisy, AFFINE)
    np.testing.assert_array_equal(mask, again)
