"""Classical fillers (nawm, ring, nonlocal, fsl) on a small tissue phantom."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from bidsfill.fill import FillError, available_methods, fill_image

ZOOMS = (1.0, 1.0, 1.0)
WM, GM, CSF, LESION = 0.8, 0.5, 0.2, 0.35
RANDOM_METHODS = ["nawm", "ring"]
CLASSICAL = ["nawm", "ring", "nonlocal"]


def _radius(shape: tuple[int, int, int], centre) -> np.ndarray:
    grid = np.indices(shape, dtype=np.float32)
    return np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)))


@pytest.fixture(scope="module")
def phantom() -> dict[str, np.ndarray]:
    """32^3: WM ball, GM shell, CSF shell, two hypointense lesions in the WM, noise."""
    shape = (32, 32, 32)
    r = _radius(shape, (15.5, 15.5, 15.5))
    truth = np.zeros(shape, np.float32)
    truth[r < 14] = CSF
    truth[r < 12] = GM
    truth[r < 9] = WM
    truth += np.random.default_rng(7).normal(0, 0.02, shape).astype(np.float32) * (r < 14)
    mask = (_radius(shape, (11.5, 15.5, 15.5)) < 2.6) | (_radius(shape, (20, 16, 15)) < 2.2)
    image = truth.copy()
    image[mask] = LESION + np.random.default_rng(8).normal(0, 0.02, mask.sum())
    return {"image": image, "truth": truth, "mask": mask, "wm": (r < 9) & ~mask}


def test_methods_registered():
    assert {"nawm", "ring", "nonlocal", "fsl"} <= set(available_methods())


@pytest.mark.parametrize("method", CLASSICAL)
def test_fill_changes_only_mask_voxels(phantom, method):
    out = fill_image(phantom["image"], phantom["mask"], method=method, zooms=ZOOMS, seed=0)
    mask = phantom["mask"]
    assert out.filled.dtype == np.float32
    np.testing.assert_array_equal(out.filled[~mask], phantom["image"][~mask])
    assert np.all(out.filled[mask] != phantom["image"][mask])
    assert np.all(np.isfinite(out.filled))
    assert out.params  # every filler records what it did


@pytest.mark.parametrize("method", CLASSICAL)
def test_same_seed_is_bit_identical(phantom, method):
    a = fill_image(phantom["image"], phantom["mask"], method=method, zooms=ZOOMS, seed=3)
    b = fill_image(phantom["image"], phantom["mask"], method=method, zooms=ZOOMS, seed=3)
    np.testing.assert_array_equal(a.filled, b.filled)


@pytest.mark.parametrize("method", RANDOM_METHODS)
def test_different_seed_differs(phantom, method):
    a = fill_image(phantom["image"], phantom["mask"], method=method, zooms=ZOOMS, seed=1)
    b = fill_image(phantom["image"], phantom["mask"], method=method, zooms=ZOOMS, seed=2)
    assert not np.array_equal(a.filled[phantom["mask"]], b.filled[phantom["mask"]])


@pytest.mark.parametrize("method", CLASSICAL)
@pytest.mark.parametrize("given_wm", [False, True])
def test_fill_looks_like_white_matter(phantom, method, given_wm):
    params = {"wm_mask": phantom["wm"]} if given_wm else {}
    out = fill_image(
        phantom["image"], phantom["mask"], method=method, zooms=ZOOMS, seed=0, **params
    )
    values = out.filled[phantom["mask"]]
    assert abs(values.mean() - WM) < 0.05
    assert abs(values.mean() - LESION) > 0.3
    # Texture, not a constant, and no wider than the tissue's own spread.
    assert np.unique(values).size > values.size // 2
    assert values.std() < 0.06


def test_nawm_records_ring_and_wm_source(phantom):
    out = fill_image(phantom["image"], phantom["mask"], method="nawm", zooms=ZOOMS, seed=0)
    assert out.params["n_lesions"] == 2
    assert out.params["wm_mask"] == "multi-otsu"
    assert out.params["ring_mm"] == 2.0
    given = fill_image(
        phantom["image"], phantom["mask"], method="nawm", zooms=ZOOMS, seed=0, wm_mask=phantom["wm"]
    )
    assert given.params["wm_mask"] == "given"


def test_nawm_grows_ring_when_too_little_wm(phantom):
    out = fill_image(
        phantom["image"], phantom["mask"], method="nawm", zooms=ZOOMS, seed=0, min_ring_voxels=400
    )
    assert out.params["n_rings_grown"] == 2


def test_ring_ignores_darker_neighbours():
    """A lesion at the WM/CSF edge: ANTs' rule keeps only ring voxels >= lesion mean."""
    image = np.full((16, 16, 16), WM, np.float32)
    image[:, :, :8] = CSF * 0.5  # darker than the lesion
    mask = np.zeros(image.shape, bool)
    mask[6:10, 6:10, 7:10] = True
    image[mask] = LESION
    out = fill_image(image, mask, method="ring", zooms=ZOOMS, seed=0)
    np.testing.assert_allclose(out.filled[mask], WM)


def test_wrong_wm_mask_shape_raises(phantom):
    with pytest.raises(FillError, match="WM mask shape"):
        fill_image(
            phantom["image"],
            phantom["mask"],
            method="nawm",
            zooms=ZOOMS,
            seed=0,
            wm_mask=np.ones((4, 4, 4), bool),
        )


def test_nonlocal_reproduces_periodic_texture_better_than_constant():
    shape = (32, 32, 32)
    x = np.indices(shape)[0].astype(np.float32)
    # A sawtooth (each phase a distinct value): a sampled sine repeats values within a
    # period, so a one-plane partial patch at the hole's pole cannot tell phases apart.
    truth = 0.3 + 0.5 * (x % 6) / 6
    truth += np.random.default_rng(0).normal(0, 0.01, shape).astype(np.float32)
    mask = _radius(shape, (15.5, 15.5, 15.5)) < 4.5
    image = truth.copy()
    image[mask] = 0.0
    out = fill_image(image, mask, method="nonlocal", zooms=ZOOMS, seed=0)
    ring = (_radius(shape, (15.5, 15.5, 15.5)) < 6.5) & ~mask
    mae_nonlocal = np.abs(out.filled[mask] - truth[mask]).mean()
    mae_constant = np.abs(truth[ring].mean() - truth[mask]).mean()
    assert mae_nonlocal < 0.25 * mae_constant
    assert out.params["patch_radius"] == 1 and out.params["n_layers"] >= 3


def test_nonlocal_lesion_at_volume_edge():
    image = np.random.default_rng(0).normal(0.6, 0.02, (16, 16, 16)).astype(np.float32)
    mask = np.zeros(image.shape, bool)
    mask[:3, :4, 5:9] = True
    out = fill_image(image, mask, method="nonlocal", zooms=ZOOMS, seed=0)
    assert abs(out.filled[mask].mean() - 0.6) < 0.03


def test_nonlocal_rejects_full_mask():
    image = np.ones((8, 8, 8), np.float32)
    with pytest.raises(FillError, match="whole image"):
        fill_image(image, np.ones(image.shape, bool), method="nonlocal", zooms=ZOOMS, seed=0)


@pytest.mark.skipif(shutil.which("lesion_filling") is not None, reason="FSL is installed")
def test_fsl_without_fsl_raises_clear_error(phantom):
    with pytest.raises(FillError, match=r"lesion_filling is not on PATH.*--method nawm"):
        fill_image(phantom["image"], phantom["mask"], method="fsl", zooms=ZOOMS, seed=0)


@pytest.mark.skipif(shutil.which("lesion_filling") is None, reason="FSL is not installed")
def test_fsl_fills_like_nawm(phantom):
    out = fill_image(phantom["image"], phantom["mask"], method="fsl", zooms=ZOOMS, seed=0)
    assert abs(out.filled[phantom["mask"]].mean() - WM) < 0.08


def test_fsl_command_lines(tmp_path):
    from bidsfill.fill.fsl import lesion_filling_command
    from bidsfill.segment.tissues import fast_command

    cmd = lesion_filling_command(tmp_path / "t1w.nii.gz", tmp_path / "les.nii.gz",
                                 tmp_path / "out.nii.gz", tmp_path / "wm.nii.gz")  # fmt: skip
    assert cmd == ["lesion_filling", "-i", str(tmp_path / "t1w.nii.gz"), "-l",
                   str(tmp_path / "les.nii.gz"), "-o", str(tmp_path / "out.nii.gz"), "-w",
                   str(tmp_path / "wm.nii.gz")]  # fmt: skip
    assert "-w" not in lesion_filling_command("a", "b", "c")
    assert fast_command("brain.nii.gz", "/t/fast") == ["fast", "-n", "3", "-t", "1", "-o",
                                                      "/t/fast", "brain.nii.gz"]  # fmt: skip


def test_fsl_failure_is_a_fill_error(phantom, tmp_path, monkeypatch):
    """A lesion_filling that fails (here a real program on PATH that exits 1 with a
    message on stderr) ends as one FillError with FSL's last line."""
    if shutil.which("lesion_filling"):
        pytest.skip("FSL is installed")
    fake = tmp_path / "bin" / "lesion_filling"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'Image Exception: cannot open file' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    with pytest.raises(FillError, match=r"lesion_filling failed \(exit 1\): Image Exception"):
        fill_image(phantom["image"], phantom["mask"], method="fsl", zooms=ZOOMS, seed=0)
