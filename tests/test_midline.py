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


def _plane_and_image(tmp_path):
    """A LAS-oriented image, bright on the right of a known tilted plane and dark on its
    left (judged at each voxel centre), with that plane."""
    import nibabel as nib

    n = np.array([np.cos(np.radians(9)), np.sin(np.radians(9)), np.sin(np.radians(5))])
    plane = MidPlane(tuple(n / np.linalg.norm(n)), 3.0)
    affine = np.diag([-2.0, 2.0, 2.0, 1.0])  # LAS: load_ras flips the first axis
    affine[:3, 3] = [24.0, -27.0, -23.0]
    ijk = np.indices((24, 28, 24)).reshape(3, -1)
    world = affine[:3, :3] @ ijk + affine[:3, 3:]
    side = (np.asarray(plane.normal) @ world - plane.offset).reshape(24, 28, 24)
    image = np.where(side > 0, 100.0, 20.0).astype(np.float32)
    path = tmp_path / "t1w.nii.gz"
    nib.save(nib.Nifti1Image(image, affine), str(path))
    return plane, path


def test_report_draws_the_plane_where_it_cuts_the_slice(tmp_path):
    """The cyan line of the report's axial and coronal views lies on the plane: in every
    pixel row it is within one voxel of where the step image (rendered by the report's own
    tile renderer, bright right of the plane) changes from dark to bright."""
    from PIL import Image

    from bidsfill.report.midplane import PLANE_RGB, midplane_figure, ras_affine
    from bidsfill.report.render import load_ras, render_tile

    plane, path = _plane_and_image(tmp_path)
    vol = load_ras(path)
    box = tuple(slice(0, s) for s in vol.data.shape)
    centre = (12, 14, 12)
    out = midplane_figure(vol, ras_affine(path), plane.to_dict(), centre, (0, 120), box,
                          tmp_path / "plane.png", px_per_mm=3)  # fmt: skip
    rgb = np.asarray(Image.open(out).convert("RGB"))
    x0 = 0
    for axis in (2, 1):  # axial, coronal: composed left to right, 4 px apart
        step = render_tile(vol.data, vol.zooms, axis, centre[axis], vrange=(0, 120), px_per_mm=3)
        height, width = step.shape[:2]
        tile = rgb[:height, x0 : x0 + width]
        rows, cols = np.nonzero((tile == PLANE_RGB).all(axis=2))
        assert len(set(rows)) > 0.8 * height  # one pixel a row, but under the text label
        errors = []
        for r, c in zip(rows, cols, strict=True):
            edge = np.nonzero(step[r, :, 0] > 128)[0].min()  # the bright side is the right
            errors.append(c - edge)
        assert np.abs(errors).max() <= 6, (axis, errors)  # 6 px = one 2 mm voxel
        # The voxel edges scatter about the plane; on average they sit on it (a 1 mm
        # error in the plane would move the line 3 px).
        assert abs(np.mean(errors)) < 1.5, (axis, np.mean(errors))
        x0 += width + 4


def test_report_draws_the_plane_of_a_symmetry_fill(tmp_path, tiny_bids):
    """A filled T1w whose sidecar has a MidSagittalPlane gets the plane figure, with its
    angle and offset in the caption; one without gets none."""
    import json

    from PIL import Image
    from report_outputs import write_outputs

    from bidsfill.report.midplane import PLANE_RGB
    from bidsfill.report.rebuild import summary_from_outputs
    from bidsfill.report.run_section import run_section

    out = tmp_path / "out"
    sidecars = write_outputs(tiny_bids, out, [tmp_path / "lesions"], method="pseudo3d")
    with_plane, without = sidecars[0], sidecars[1]
    meta = json.loads(with_plane.read_text())
    plane = MidPlane((np.cos(np.radians(8)), np.sin(np.radians(8)), 0.0), 2.5)
    with_plane.write_text(json.dumps({**meta, "MidSagittalPlane": plane.to_dict()}))
    section = run_section(summary_from_outputs(out, with_plane), out, out / "figures")
    figure = next(p for p in section.figures if p.name.endswith("_desc-midplane_T1w.png"))
    assert (np.asarray(Image.open(figure).convert("RGB")) == PLANE_RGB).all(axis=2).any()
    assert "Mid-sagittal plane" in section.html and figure.name in section.html
    assert "tilted 8.0° " in section.html and "offset 2.5 mm" in section.html
    plain = run_section(summary_from_outputs(out, without), out, out / "figures")
    assert not any("midplane" in p.name for p in plain.figures)
    assert "Mid-sagittal plane" not in plain.html
