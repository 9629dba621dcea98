"""I/O invariants: exact header/dtype/bytes outside the mask; mask alignment with antspyx."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from conftest import lesion_mask, make_lesioned, phantom, save
from nibabel.processing import resample_from_to

from bidsfill.io.align import align_mask, dilate_mask
from bidsfill.io.nifti import InputError, load_image, load_mask, raw_data, to_raw, write_like


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32])
def test_write_like_keeps_header_dtype_and_outside_bytes(tmp_path, dtype):
    src = save(
        make_lesioned(0) * (2.5 if dtype == np.float32 else 1), tmp_path / "in.nii.gz", dtype
    )
    ref = nib.load(str(src))
    mask = lesion_mask()
    values = ref.get_fdata() + 1000.0  # out of range for uint8: must clip, not wrap
    out = write_like(ref, tmp_path / "out.nii.gz", values=values, inside=mask)
    new = nib.load(str(out))
    assert new.header.binaryblock == ref.header.binaryblock
    assert new.get_data_dtype() == ref.get_data_dtype()
    assert np.array_equal(new.affine, ref.affine)
    assert np.array_equal(raw_data(new)[~mask], raw_data(ref)[~mask])
    if dtype == np.uint8:
        assert (raw_data(new)[mask] == 255).all()
    else:
        assert np.allclose(new.get_fdata()[mask], values[mask], atol=0.5)


def test_write_like_keeps_scaling(tmp_path):
    img = nib.Nifti1Image((phantom(1)).astype(np.int16), np.diag([1.5, 1.5, 2, 1]))
    img.header.set_slope_inter(0.5, 3.0)
    nib.save(img, str(tmp_path / "s.nii.gz"))
    ref = nib.load(str(tmp_path / "s.nii.gz"))
    mask = lesion_mask()
    vals = ref.get_fdata()
    vals[mask] = 42.0
    new = nib.load(str(write_like(ref, tmp_path / "o.nii.gz", values=vals, inside=mask)))
    assert (new.dataobj.slope, new.dataobj.inter) == (0.5, 3.0)
    assert np.allclose(new.get_fdata()[mask], 42.0)
    assert np.array_equal(raw_data(new)[~mask], raw_data(ref)[~mask])
    assert to_raw(ref, np.array([42.0])).dtype == np.int16


def test_nonbinary_mask_is_thresholded_with_warning(tmp_path):
    prob = lesion_mask().astype(np.float32) * 0.7 + 0.2
    mask, warnings = load_mask(save(prob, tmp_path / "m.nii.gz", np.float32), threshold=0.5)
    assert set(np.unique(mask.data)) <= {0.0, 1.0}
    assert mask.data.sum() == lesion_mask().sum()
    assert warnings and "thresholded at 0.5" in warnings[0]


def test_unreadable_and_missing(tmp_path):
    (tmp_path / "bad.nii.gz").write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(InputError, match="could not be read"):
        load_image(tmp_path / "bad.nii.gz")
    with pytest.raises(InputError, match="does not exist"):
        load_image(tmp_path / "none.nii.gz")


def test_dilate_grows_by_n_voxels():
    mask = np.zeros((9, 9, 9), bool)
    mask[4, 4, 4] = True
    assert dilate_mask(mask, 0).sum() == 1
    assert dilate_mask(mask, 1).sum() == 7
    assert dilate_mask(mask, 2).sum() == 25


def test_mask_on_other_grid_is_resampled(tmp_path):
    t1w = load_image(save(make_lesioned(0), tmp_path / "t1w.nii.gz"))
    fine = resample_from_to(
        nib.Nifti1Image(lesion_mask().astype(np.float32), t1w.affine),
        ((48, 56, 48), np.diag([1.0, 1.0, 1.0, 1.0]) @ np.eye(4)),
        order=0,
    )
    mask, _ = load_mask(
        save(np.asarray(fine.dataobj), tmp_path / "m.nii.gz", np.uint8, fine.affine)
    )
    aligned = align_mask(t1w, mask)
    assert aligned.method == "resampled"
    truth = lesion_mask()
    dice = 2 * (aligned.mask & truth).sum() / (aligned.mask.sum() + truth.sum())
    assert dice > 0.8


@pytest.mark.slow
def test_mask_on_flair_grid_follows_registration(tmp_path):
    """A FLAIR sharing the mask's grid is registered to the T1w and the mask follows."""
    t1w_data = make_lesioned(0)
    t1w = load_image(save(t1w_data, tmp_path / "t1w.nii.gz"))
    # The FLAIR grid: 2.5 mm voxels, shifted by 3 mm, with the scanner's world coordinates
    # off by a further 4 mm (head moved between scans), so only registration recovers it.
    moved = np.diag([2.5, 2.5, 2.5, 1.0])
    moved[:3, 3] = [3.0, -2.0, 1.0]
    flair_grid = ((20, 23, 20), moved)
    shifted = t1w.affine.copy()
    shifted[:3, 3] += [4.0, 0.0, 0.0]
    flair_img = resample_from_to(nib.Nifti1Image(100.0 - t1w_data, shifted), flair_grid, order=1)
    mask_img = resample_from_to(nib.Nifti1Image(lesion_mask().astype(np.float32), shifted),
                                flair_grid, order=0)  # fmt: skip
    flair = load_image(
        save(np.asarray(flair_img.dataobj), tmp_path / "flair.nii.gz", np.float32, moved)
    )
    mask, _ = load_mask(save(np.asarray(mask_img.dataobj), tmp_path / "m.nii.gz", np.uint8, moved))
    aligned = align_mask(t1w, mask, references=[("FLAIR", flair)], seed=1)
    assert aligned.method == "registered:FLAIR"
    truth = lesion_mask()
    dice = 2 * (aligned.mask & truth).sum() / (aligned.mask.sum() + truth.sum())
    naive = align_mask(t1w, mask).mask  # world-coordinate resampling ignores the 4 mm shift
    naive_dice = 2 * (naive & truth).sum() / (naive.sum() + truth.sum())
    assert dice > 0.6 and dice > naive_dice


def test_fill_image_reorients_to_ras_and_back():
    """Fillers see RAS arrays (third axis axial) whatever the storage orientation."""
    from bidsfill.fill.base import _REGISTRY, fill_image

    seen = {}

    def probe(image, mask, *, zooms, seed, **params):
        from bidsfill.fill.base import FillResult

        seen["zooms"], seen["image"] = zooms, image
        return FillResult(filled=image + 1.0)

    _REGISTRY["_probe"] = probe
    try:
        data = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
        mask = np.zeros(data.shape, bool)
        mask[1, 2, 3] = True
        lps_like = np.array([[0, 0, -2.0, 0], [-1.0, 0, 0, 0], [0, 3.0, 0, 0], [0, 0, 0, 1]])
        result = fill_image(data, mask, method="_probe", zooms=(1.0, 3.0, 2.0), affine=lps_like)
        assert seen["zooms"] == (2.0, 1.0, 3.0)
        assert seen["image"].shape == (6, 4, 5)
        assert result.filled[1, 2, 3] == data[1, 2, 3] + 1.0
        assert np.array_equal(result.filled[~mask], data[~mask])
    finally:
        del _REGISTRY["_probe"]


@pytest.mark.parametrize("method", ["nawm", "ring", "nonlocal"])
def test_classical_fillers_on_fortran_ordered_arrays(method):
    """nibabel returns Fortran-ordered arrays; every filler must work on them."""
    from bidsfill.fill import fill_image

    image = np.asfortranarray(make_lesioned(0))
    mask = np.asfortranarray(lesion_mask())
    result = fill_image(image, mask, method=method, zooms=(2.0, 2.0, 2.0), seed=0)
    assert np.array_equal(result.filled[~mask], image[~mask])
    assert result.filled[mask].mean() > image[mask].mean() + 20  # lesions (40) -> WM (~100)
