"""The mid-sagittal plane is estimated, not assumed (issue 15, Santorum et al.)."""

from __future__ import annotations

import numpy as np
import pytest

from bidsfill.io.resample import warp_from_world
from bidsfill.segment.midline import (
    MidPlane,
    estimate_midplane,
    mirror_about,
    plane_of_reflection,
)


def _rigid(yaw_deg: float, pitch_deg: float, shift: tuple[float, float, float]) -> np.ndarray:
    a, b = np.radians(yaw_deg), np.radians(pitch_deg)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    out = np.eye(4)
    out[:3, :3] = rz @ ry
    out[:3, 3] = shift
    return out


def test_plane_of_an_exact_reflection_is_recovered():
    n = np.array([0.96, 0.2, -0.1])
    n /= np.linalg.norm(n)
    plane = MidPlane(tuple(n), 7.5)
    back = plane_of_reflection(plane.reflection())
    assert np.allclose(back.normal, n) and back.offset == pytest.approx(7.5)
    assert np.allclose(plane.reflection() @ plane.reflection(), np.eye(4))
    assert plane.angle_deg == pytest.approx(np.degrees(np.arccos(n[0])))


def test_mirror_about_reflects_across_the_plane():
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-31.0, -31.0, -31.0]
    image = np.zeros((32, 32, 32), np.float32)
    image[5:9, 14:18, 14:18] = 1.0  # a cube left of x = 0 (world x from -21 to -15)
    mirrored = mirror_about(image, affine, MidPlane((1.0, 0.0, 0.0), 0.0), order=0)
    # voxel i sits at x = -31 + 2 i: x -> -x is i -> 31 - i
    assert np.array_equal(mirrored, image[::-1])
    shifted = mirror_about(image, affine, MidPlane((1.0, 0.0, 0.0), 4.0), order=0)
    assert np.array_equal(np.argwhere(shifted)[:, 0].min(), 31 - 8 + 4)  # x -> 8 - x


@pytest.mark.slow
def test_midplane_of_a_rotated_and_shifted_brain_within_1_degree_and_1_mm():
    """The MNI152 template, moved by a known rigid transform (8 deg yaw, 5 deg pitch,
    6/-4/3 mm), on its own grid: the estimate follows the known plane within 1 deg and
    1 mm (at the brain's centre)."""
    from nilearn.datasets import load_mni152_template

    tpl = load_mni152_template(resolution=2)
    image, affine = np.asarray(tpl.dataobj, np.float32), tpl.affine
    before = estimate_midplane(image, affine)
    assert before.angle_deg < 3.0 and abs(before.offset) < 3.0  # MNI is near-symmetric

    move = _rigid(8.0, 5.0, (6.0, -4.0, 3.0))
    moved = warp_from_world(image, affine, image.shape, affine, np.linalg.inv(move))
    n = move[:3, :3] @ np.asarray(before.normal)
    expected = MidPlane(tuple(n), before.offset + float(n @ move[:3, 3]))
    after = estimate_midplane(moved, affine)
    angle = np.degrees(np.arccos(np.clip(abs(np.dot(after.normal, expected.normal)), 0, 1)))
    centre = move @ np.array([0.0, -18.0, 18.0, 1.0])  # the moved brain's middle
    assert angle < 1.0, (after, expected)
    assert abs(after.distance(centre[:3]) - expected.distance(centre[:3])) < 1.0
    assert after.to_dict()["TiltDegrees"] == pytest.approx(after.angle_deg, abs=1e-3)


def _mirror_model(tmp_path):
    import torch

    from bidsfill.diffusion.architectures import build_network
    from bidsfill.diffusion.card import default_preprocessing
    from bidsfill.diffusion.schedules import NoiseSchedule
    from bidsfill.diffusion.weights import save_weights

    cfg = {"in_channels": 4, "out_channels": 1, "channels": [8, 16], "norm_num_groups": 4}
    torch.manual_seed(0)
    net = build_network("pseudo3d", **cfg)
    for p in net.parameters():
        p.data.normal_(0, 0.05)
    pre = default_preprocessing("pseudo3d")
    pre["extras"] = ["mirror"]
    card = {"architecture": "pseudo3d", "config": cfg, "preprocessing": pre,
            "schedule": NoiseSchedule(20, "cosine", "sample").to_dict()}  # fmt: skip
    return save_weights(net, card, tmp_path / "mirror")


@pytest.mark.slow
def test_symmetry_channel_is_the_scan_reflected_about_its_own_midline(tmp_path):
    """A mirror-conditioned model gets the scan reflected about its estimated plane, the
    sidecar parameters record the plane, and training builds the same channel."""
    from nilearn.datasets import load_mni152_template

    from bidsfill.diffusion.conditioning import mirror_lr
    from bidsfill.fill.base import fill_image
    from bidsfill.train.dataset import TrainVolume, rescaled, with_mirror

    tpl = load_mni152_template(resolution=2)
    image, affine = np.asarray(tpl.dataobj, np.float32), tpl.affine
    moved = warp_from_world(image, affine, image.shape, affine,
                            np.linalg.inv(_rigid(10.0, 0.0, (8.0, 0.0, 0.0))))  # fmt: skip
    mask = np.zeros(moved.shape, bool)
    mask[30:36, 50:56, 40:44] = True
    model = _mirror_model(tmp_path)
    kwargs = {"method": "pseudo3d", "zooms": (2.0, 2.0, 2.0), "seed": 0, "model": str(model),
              "steps": 1, "n_samples": 1, "device": "cpu"}  # fmt: skip
    out = fill_image(moved, mask, affine=affine, **kwargs)
    plane = out.params["MidSagittalPlane"]
    assert plane["TiltDegrees"] == pytest.approx(10.0, abs=1.5)
    assert np.array_equal(out.filled[~mask], moved[~mask])
    centred = fill_image(moved, mask, extra_images={"mirror": mirror_lr(moved)}, **kwargs)
    assert "MidSagittalPlane" not in centred.params
    assert not np.allclose(out.filled[mask], centred.filled[mask])  # the channel is used
    # Training: the same reflection, carried through an intensity rescale.
    vol = TrainVolume("x", moved, affine, (2.0, 2.0, 2.0), moved * 0, moved > 0)
    train = with_mirror(vol)
    reflected = mirror_about(moved, affine, MidPlane(tuple(plane["Normal"]), plane["OffsetMM"]))
    inside = moved > 0
    assert np.abs(train.extras["mirror"] - reflected)[inside].mean() < 0.02 * moved[inside].mean()
    scaled = rescaled(train, 2.0)
    assert np.allclose(scaled.extras["mirror"], np.where(train.extras["mirror"] > 0,
                                                         2 * train.extras["mirror"], 0))  # fmt: skip


def test_report_summary_names_the_plane():
    from bidsfill.report.run_section import _summary_rows

    meta = {"Method": "pseudo3d", "ModelName": "m", "MidSagittalPlane":
            MidPlane((np.cos(np.radians(8)), np.sin(np.radians(8)), 0.0), 2.5).to_dict()}  # fmt: skip
    rows = dict(_summary_rows({"filled": meta}))
    assert rows["Mid-sagittal plane"].startswith("tilt 8.0") and "offset 2.5 mm" in rows[
        "Mid-sagittal plane"]  # fmt: skip
    assert "Mid-sagittal plane" not in dict(_summary_rows({"filled": {"Method": "nawm"}}))
