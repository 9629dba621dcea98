"""Tissue segmentation (Atropos via antspyx here) and brain-mask estimation."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from scipy import ndimage

from bidsfill.segment import (
    LABELS,
    Segmentation,
    estimate_brain_mask,
    looks_skull_stripped,
    segment_tissues,
)

# Realistic voxel size so that the phantoms have brain-like volumes in mL.
AFFINE = np.diag([6.0, 6.0, 6.0, 1.0])


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


def _synthetic_head(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A T1w head with a known brain, built from the MNI152 2009 template (nilearn wheel).

    Around the skull-stripped template brain: CSF (3 mm), dark skull (6 mm), bright scalp
    fat (6 mm), skin (2 mm) and a soft-tissue neck. The head is then moved into a subject's
    scanner space by a known affine (rotation, shift, anisotropic scale) plus a smooth
    displacement of about 3 mm, sampled on a 1.6 mm grid, and given a bias field and Rician
    noise in scanner units. The template's brain mask goes through the same mapping, so the
    true brain is known.

    Returns:
        ``(image, affine, brain)``: float32 intensities, voxel-to-world, true brain mask.
    """
    from nilearn.datasets import load_mni152_brain_mask, load_mni152_template
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(seed)
    tpl = load_mni152_template(resolution=2)
    brain = np.asarray(load_mni152_brain_mask(resolution=2).dataobj) > 0
    t1 = np.clip(np.asarray(tpl.get_fdata(), np.float32), 0, None) * brain
    t1 /= float(np.percentile(t1[brain], 95))  # WM near 1
    pad = 12  # template voxels (24 mm) of room for the skull, scalp and neck
    t1, brain = np.pad(t1, pad), np.pad(brain, pad)
    tpl_affine = tpl.affine.copy()
    tpl_affine[:3, 3] -= tpl_affine[:3, :3] @ np.full(3, pad)

    out = ndimage.distance_transform_edt(~brain, sampling=2.0)  # mm outside the brain
    head = t1.copy()
    for (lo, hi), value in {(0, 3): 0.25, (3, 9): 0.06, (9, 15): 0.95, (15, 17): 0.5}.items():
        head[(out > lo) & (out <= hi)] = value  # CSF, skull, scalp fat, skin
    i, j, k = np.indices(brain.shape)
    z0 = int(np.nonzero(brain.any((0, 1)))[0][0])
    ci, cj = (float(np.mean(c)) for c in np.nonzero(brain[..., z0 + 5]))
    neck = (((i - ci) / 24) ** 2 + ((j - cj) / 26) ** 2 <= 1) & (k < z0 + 12) & (out > 3)
    head[neck & (head < 0.1)] = 0.45

    to_subject = np.eye(4)
    to_subject[:3, :3] = Rotation.from_euler("xyz", [10, -6, 8], degrees=True).as_matrix()
    to_subject[:3, :3] = to_subject[:3, :3] @ np.diag([0.94, 1.04, 0.9])
    to_subject[:3, 3] = [6.0, -10.0, 14.0]
    zoom = 1.6
    shape = tuple(int(round(s * 2.0 / zoom)) for s in head.shape)
    affine = np.diag([zoom, zoom, zoom, 1.0])
    centre = to_subject @ tpl_affine @ np.r_[np.array(head.shape) / 2.0, 1.0]
    affine[:3, 3] = centre[:3] - zoom * np.array(shape) / 2.0
    scan_to_tpl = np.linalg.inv(tpl_affine) @ np.linalg.inv(to_subject) @ affine
    grid = np.indices(shape, dtype=np.float32).reshape(3, -1)
    coords = (scan_to_tpl[:3, :3] @ grid + scan_to_tpl[:3, 3:]).reshape(3, *shape)
    disp = np.stack([ndimage.gaussian_filter(rng.normal(size=shape), 8.0) for _ in range(3)])
    coords += (disp * 1.5 / disp.std()).astype(np.float32)  # 1.5 template voxels = 3 mm
    image = ndimage.map_coordinates(head, coords, order=1)
    truth = ndimage.map_coordinates(brain.astype(np.float32), coords, order=1) > 0.5

    x = np.indices(shape) / np.array(shape)[:, None, None, None]
    bias = 1.0 + 0.15 * np.sin(2.0 * x[0] + 1.0) * np.cos(1.5 * x[2])
    noise = rng.normal(0.0, 0.02, (2, *shape))
    image = np.sqrt((image * bias + noise[0]) ** 2 + noise[1] ** 2)
    return (600.0 * image).astype(np.float32), affine, truth


@pytest.mark.slow
def test_brain_mask_on_synthetic_head():
    image, affine, truth = _synthetic_head()
    head = ndimage.binary_fill_holes(image > 0.1 * 600.0)
    assert not looks_skull_stripped(image, affine)

    mask, stripped = estimate_brain_mask(image, affine, seed=0)
    assert not stripped
    voxel_ml = float(abs(np.linalg.det(affine[:3, :3]))) / 1000
    brain_ml, head_ml = truth.sum() * voxel_ml, head.sum() * voxel_ml
    assert head_ml > 1.8 * brain_ml  # the image is a head, not a brain
    # A brain, not the head: within 15% of the true brain volume ...
    assert abs(mask.sum() * voxel_ml - brain_ml) < 0.15 * brain_ml
    # ... and where the brain is: the template mask put in scanner space without the
    # registration scores 0.80 here.
    assert _dice(mask, truth) > 0.9
    assert (mask & head).sum() / mask.sum() > 0.97  # inside the head
    # Brain tissue is brighter than the skull/CSF ring just outside the mask.
    shell = ndimage.binary_dilation(mask, iterations=3) & ~mask & head
    assert image[mask].mean() > 1.2 * image[shell].mean()


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
