"""Lesion-mask synthesis: kinds, placement in white matter, volumes, seeds, real masks."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from bidsfill.lesions import (
    RealMask,
    find_real_masks,
    lesion_sites,
    sample_lesion_mask,
    warp_real_mask,
)
from bidsfill.train.masks import MaskGenerator

ZOOMS = (2.0, 2.0, 2.0)


def _brain(shape=(32, 32, 32)):
    """WM probability of a spherical brain: ventricles in the middle, WM shell, GM rind."""
    grid = np.indices(shape).astype(np.float32)
    centre = (np.array(shape) - 1) / 2.0
    r = np.sqrt(((grid - centre[:, None, None, None]) ** 2).sum(0)) * ZOOMS[0]  # mm
    wm = np.clip((27.0 - r) / 2.0, 0, 1) * np.clip((r - 5.0) / 2.0, 0, 1)
    brain = r < 31.0
    csf = (r < 5.0).astype(np.float32)
    return wm.astype(np.float32), brain, csf


@pytest.fixture(scope="module")
def sites():
    wm, brain, csf = _brain()
    return lesion_sites(wm, ZOOMS, brain_mask=brain, csf_prob=csf)


def test_sites_split_white_matter(sites):
    assert sites.periventricular.any() and sites.juxtacortical.any() and sites.deep.any()
    assert not (sites.periventricular & sites.juxtacortical).any()
    assert not (sites.periventricular & sites.deep).any()
    for region in (sites.periventricular, sites.juxtacortical, sites.deep):
        assert (sites.wm_prob[region] >= 0.5).all()


@pytest.mark.parametrize("kind", ["ms", "tumour", "cavity", "random", "mixed"])
def test_each_kind_is_seeded_and_non_empty(sites, kind):
    a = sample_lesion_mask(sites, ZOOMS, np.random.default_rng(3), kind=kind)
    b = sample_lesion_mask(sites, ZOOMS, np.random.default_rng(3), kind=kind)
    c = sample_lesion_mask(sites, ZOOMS, np.random.default_rng(4), kind=kind)
    assert a.dtype == bool and a.shape == sites.wm.shape and a.any()
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert (a <= sites.brain).all()


def test_ms_lesions_stay_in_white_matter_with_bounded_volume(sites):
    mask = sample_lesion_mask(
        sites, ZOOMS, np.random.default_rng(0), kind="ms", n_lesions=6, volume_ml=(0.05, 0.5)
    )
    assert (sites.wm_prob[mask] >= 0.3).all()
    labels, n = ndimage.label(mask)
    assert 1 <= n <= 6
    total_ml = mask.sum() * np.prod(ZOOMS) / 1000.0
    assert total_ml <= 6 * 0.5 * 1.5  # elastic deformation changes volume a little


def test_ms_location_weights_pick_the_region(sites):
    only_pv = {"periventricular": 1.0, "juxtacortical": 0.0, "deep": 0.0}
    mask = sample_lesion_mask(
        sites,
        ZOOMS,
        np.random.default_rng(1),
        kind="ms",
        n_lesions=4,
        volume_ml=(0.03, 0.1),
        location_weights=only_pv,
    )
    dist = ndimage.distance_transform_edt(~sites.periventricular, sampling=ZOOMS)
    labels, n = ndimage.label(mask)
    for index in range(1, n + 1):  # every lesion touches or sits next to the PV band
        assert dist[labels == index].min() <= 4.0


def test_bigger_kinds_are_bigger(sites):
    rng = np.random.default_rng(0)
    ms = np.mean(
        [sample_lesion_mask(sites, ZOOMS, rng, kind="ms", n_lesions=1).sum() for _ in range(3)]
    )
    tumour = np.mean([sample_lesion_mask(sites, ZOOMS, rng, kind="tumour").sum() for _ in range(3)])
    assert tumour > ms


def test_unknown_kind_raises(sites):
    with pytest.raises(ValueError, match="kind"):
        sample_lesion_mask(sites, ZOOMS, np.random.default_rng(0), kind="stroke")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Unknown"):
        MaskGenerator({"stroke": 1.0})
    with pytest.raises(ValueError, match="real"):
        MaskGenerator({"real": 1.0})


def test_generator_caches_sites_and_is_seeded():
    wm, brain, _ = _brain()
    gen = MaskGenerator({"ms": 1.0, "random": 1.0})
    a = gen(wm, ZOOMS, np.random.default_rng(7), key="sub-01", brain_mask=brain)
    assert "sub-01" in gen._sites
    b = MaskGenerator({"ms": 1.0, "random": 1.0})(
        wm, ZOOMS, np.random.default_rng(7), brain_mask=brain
    )
    assert np.array_equal(a, b) and a.any()


def _blob_image(shape, centre):
    grid = np.indices(shape).astype(np.float32)
    r = np.sqrt(((grid - np.asarray(centre, np.float32)[:, None, None, None]) ** 2).sum(0))
    img = np.where(r < 10, 100.0, 0.0) + np.where(r < 5, -60.0, 0.0)
    # texture that moves with the blob, so the rigid fit has one answer
    img += 20.0 * np.sin((grid[0] - centre[0]) / 3.0) * (r < 10)
    return ndimage.gaussian_filter(img, 1.0).astype(np.float32)


def test_real_mask_found_and_warped_by_registration(tmp_path):
    shape = (32, 32, 32)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    ref = _blob_image(shape, (16, 16, 16))
    target = _blob_image(shape, (18, 15, 16))  # the healthy brain sits 2 voxels away
    lesion = np.zeros(shape, bool)
    lesion[20:23, 15:18, 14:17] = True
    nib.Nifti1Image(ref, affine).to_filename(tmp_path / "sub-p1_T1w.nii.gz")
    nib.Nifti1Image(lesion.astype(np.uint8), affine).to_filename(
        tmp_path / "sub-p1_label-lesion_roi.nii.gz"
    )
    nib.Nifti1Image(lesion.astype(np.uint8), affine).to_filename(
        tmp_path / "mni_lesion_mask.nii.gz"
    )
    found = find_real_masks(tmp_path)
    assert (
        RealMask(tmp_path / "sub-p1_label-lesion_roi.nii.gz", tmp_path / "sub-p1_T1w.nii.gz")
        in found
    )
    assert RealMask(tmp_path / "mni_lesion_mask.nii.gz", None) in found

    paired = next(r for r in found if r.reference is not None)
    warped = warp_real_mask(paired, target, affine, seed=0, transform="Rigid")
    expected = np.roll(np.roll(lesion, 2, axis=0), -1, axis=1)
    dice = 2 * (warped & expected).sum() / (warped.sum() + expected.sum())
    assert dice > 0.6, dice
