"""Lesion appearance: hypointense relative to local WM, soft edges, only inside the mask."""

from __future__ import annotations

import numpy as np
import pytest

from bidsfill.evaluate.simulate import apply_lesions, lesion_weights


def _scene():
    rng = np.random.default_rng(0)
    image = np.full((24, 24, 24), 50.0, np.float32)  # GM-like background
    image[4:20, 4:20, 4:20] = 100.0  # WM block
    image[4:20, 4:20, 12:20] = 140.0  # brighter WM on one side (bias field)
    image += rng.normal(0, 1, image.shape).astype(np.float32)
    wm = np.zeros(image.shape, np.float32)
    wm[4:20, 4:20, 4:20] = 1.0
    mask = np.zeros(image.shape, bool)
    mask[8:12, 8:12, 6:10] = True  # lesion in the 100-level WM
    mask[8:12, 8:12, 14:18] = True  # lesion in the 140-level WM
    mask[16, 16, 16] = True  # one-voxel lesion
    return image, wm, mask


def test_only_inside_mask_and_darker():
    image, wm, mask = _scene()
    out = apply_lesions(image, mask, wm, np.random.default_rng(1), contrast=0.4, edge_sigma=1.0)
    assert out.dtype == np.float32
    assert np.array_equal(out[~mask], image[~mask])
    assert (out[mask] <= image[mask]).all()
    assert out[mask].mean() < 0.8 * image[mask].mean()


def test_contrast_is_relative_to_local_white_matter():
    image, wm, mask = _scene()
    out = apply_lesions(
        image, mask, wm, np.random.default_rng(1), contrast=0.4, edge_sigma=0.0, heterogeneity=0.0
    )
    # Hard edges, no texture: each core is exactly 60 % of its own neighbourhood's WM.
    assert np.median(out[8:12, 8:12, 6:10]) == pytest.approx(60.0, abs=1.0)
    assert np.median(out[8:12, 8:12, 14:18]) == pytest.approx(84.0, abs=1.5)
    assert out[16, 16, 16] == pytest.approx(0.6 * 140.0, abs=2.0)


def test_soft_edges_and_seed():
    image, wm, mask = _scene()
    w = lesion_weights(mask, edge_sigma=1.0)
    assert w.min() == 0.0 and w.max() == pytest.approx(1.0)
    assert w[16, 16, 16] == pytest.approx(1.0)  # a one-voxel lesion still reaches full strength
    assert w[8, 8, 6] < w[9, 9, 7] < 1.0 + 1e-6  # corner weaker than the inside
    assert (w[~mask] == 0).all()
    a = apply_lesions(image, mask, wm, np.random.default_rng(5), contrast=(0.2, 0.5))
    b = apply_lesions(image, mask, wm, np.random.default_rng(5), contrast=(0.2, 0.5))
    c = apply_lesions(image, mask, wm, np.random.default_rng(6), contrast=(0.2, 0.5))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_bad_arguments():
    image, wm, mask = _scene()
    with pytest.raises(ValueError, match="contrast"):
        apply_lesions(image, mask, wm, np.random.default_rng(0), contrast=1.5)
    with pytest.raises(ValueError, match="shape"):
        apply_lesions(image, mask[:-1], wm, np.random.default_rng(0))
    empty = np.zeros_like(mask)
    assert np.array_equal(apply_lesions(image, empty, wm, np.random.default_rng(0)), image)
