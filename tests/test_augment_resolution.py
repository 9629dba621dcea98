"""Resolution randomisation: a training region given a coarser acquisition and brought back
to 1 mm the way the fill brings a coarse scan's crop to the model's grid."""

from __future__ import annotations

import numpy as np

from bidsfill.train.augment import AugmentConfig, Augmenter, coarse_acquisition


def _region() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    image = 100 + 20 * rng.standard_normal((32, 32, 16)).astype(np.float32)
    mask = np.zeros(image.shape, bool)
    mask[10:18, 12:20, 5:10] = True
    return image, mask


def test_one_mm_is_left_as_it_is_and_a_coarse_axis_loses_its_fine_detail():
    image, _ = _region()
    assert np.array_equal(coarse_acquisition(image, np.ones(3)), image)
    stripes = np.zeros((32, 32, 16), np.float32)
    stripes[::2] = 100.0  # alternates along x only
    coarse = coarse_acquisition(stripes, np.array([2.0, 1.0, 1.0]))
    assert coarse.shape == stripes.shape
    assert np.ptp(coarse[8:24, 16, 8]) < 0.1 * np.ptp(stripes[8:24, 16, 8])  # x: gone
    ramp = np.broadcast_to(np.arange(32, dtype=np.float32)[None, :, None], (32, 32, 16))
    kept = coarse_acquisition(ramp, np.array([2.0, 1.0, 1.0]))
    assert np.allclose(kept[:, 2:-2], ramp[:, 2:-2], atol=1e-4)  # y at 1 mm: untouched


def test_masks_come_back_blocky_and_binary():
    _, mask = _region()
    coarse = coarse_acquisition(mask, np.array([2.0, 2.0, 1.6]), order=0)
    assert set(np.unique(coarse)) <= {0.0, 1.0}
    assert abs(int(coarse.sum()) - int(mask.sum())) < 0.5 * mask.sum()


def test_the_augmenter_blurs_only_when_asked_and_stays_deterministic():
    image, mask = _region()
    plain = Augmenter(AugmentConfig(p_spatial=0, p_elastic=0, p_flip=0, p_lowres=0.0))
    coarse = Augmenter(AugmentConfig(p_spatial=0, p_elastic=0, p_flip=0, p_lowres=1.0))
    a, _, _ = plain(image, mask, seed=5)
    b, b_mask, _ = coarse(image, mask, seed=5)
    again, again_mask, _ = coarse(image, mask, seed=5)
    assert np.array_equal(b, again) and np.array_equal(b_mask, again_mask)

    def roughness(x: np.ndarray) -> float:
        return float(sum(np.abs(np.diff(x, axis=k)).mean() for k in range(3)))

    assert roughness(b) < 0.8 * roughness(a)
    assert b_mask.sum() >= 2
