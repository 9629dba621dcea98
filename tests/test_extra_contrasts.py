"""Extra contrasts as conditioning, end to end (issue 15 part 1): the align node brings a
session's FLAIR onto the T1w grid with the transform it computes for the mask, the fill
gives it to a model whose card lists it, the sidecar names it; without it the app falls
back to the shipped T1w-only model or, for a user's --model, refuses before any node."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import lesion_mask, make_lesioned, phantom, save, write_description
from nibabel.processing import resample_from_to
from tiny_models import flair_fill_model

from bidsfill.cli.run import run
from bidsfill.diffusion.weights import default_model_path
from bidsfill.io.nifti import raw_data

FLAIR_URI = "bids:raw:sub-01/anat/sub-01_FLAIR.nii.gz"


@pytest.fixture(scope="module")
def flair_model(tmp_path_factory) -> Path:
    return flair_fill_model(tmp_path_factory.mktemp("model") / "tinyflair")


def _flair(lesion_value: float = 180.0) -> np.ndarray:
    """A FLAIR-like image of the T1w's phantom: tissue contrast inverted, lesions bright."""
    img = np.where(phantom(1) > 0, 200.0 - phantom(1), 0.0).astype(np.float32)
    img[lesion_mask()] = lesion_value
    return img


def _dataset(root: Path, flair: np.ndarray | None) -> Path:
    write_description(root)
    anat = root / "sub-01" / "anat"
    save(make_lesioned(1), anat / "sub-01_T1w.nii.gz")
    save(lesion_mask(), anat / "sub-01_label-lesion_roi.nii.gz", np.uint8)
    if flair is not None:
        save(flair, anat / "sub-01_FLAIR.nii.gz", np.float32)
    return root


def _bidsfill(tmp_path: Path, bids: Path, out: Path, *extra) -> int:
    plugin = tmp_path / "linear.yml"
    plugin.write_text("plugin: Linear\nplugin_args: {}\n")
    return run([str(bids), str(out), "participant", "-w", str(out.parent / f"{out.name}-work"),
                "--skip-bids-validation", "--skip-segmentation", "--method", "pseudo3d",
                "--steps", "2", "--device", "cpu", "--seed", "5", "--use-plugin", str(plugin),
                *map(str, extra)])  # fmt: skip


def _outputs(out: Path, bids: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    anat = out / "sub-01" / "anat"
    filled = raw_data(nib.load(str(anat / "sub-01_desc-filled_T1w.nii.gz")))
    original = raw_data(nib.load(str(bids / "sub-01" / "anat" / "sub-01_T1w.nii.gz")))
    mask = np.asarray(nib.load(str(anat / "sub-01_label-lesion_mask.nii.gz")).dataobj) > 0
    assert np.array_equal(filled[~mask], original[~mask]), "a voxel outside the mask moved"
    return filled, mask, json.loads((anat / "sub-01_desc-filled_T1w.json").read_text())


@pytest.mark.slow
def test_flair_conditioned_model_end_to_end(tmp_path, flair_model, capsys):
    """T1w + FLAIR with a FLAIR model: the FLAIR reaches the network and is named."""
    bids = _dataset(tmp_path / "bids", _flair())
    out = tmp_path / "out"
    assert _bidsfill(tmp_path, bids, out, "--model", flair_model) == 0
    filled, mask, meta = _outputs(out, bids)
    assert meta["ConditioningImages"] == [FLAIR_URI]
    assert "ConditioningFallback" not in meta
    # The same run with a FLAIR that differs only inside the lesion, same seed: the fill
    # differs, so the FLAIR was an input of the network.
    other = _dataset(tmp_path / "bids2", _flair(lesion_value=60.0))
    out2 = tmp_path / "out2"
    assert _bidsfill(tmp_path, other, out2, "--model", flair_model) == 0
    filled2, _, meta2 = _outputs(out2, other)
    assert meta2["ConditioningImages"] == [FLAIR_URI]
    assert not np.array_equal(filled[mask], filled2[mask])
    # ... and the same FLAIR gives the same fill (so the difference is the FLAIR's).
    out3 = tmp_path / "out3"
    assert _bidsfill(tmp_path, bids, out3, "--model", flair_model) == 0
    assert np.array_equal(_outputs(out3, bids)[0], filled)


def test_user_model_needing_a_missing_flair_is_refused(tmp_path, flair_model, capsys):
    bids = _dataset(tmp_path / "bids", None)
    out = tmp_path / "out"
    assert _bidsfill(tmp_path, bids, out, "--model", flair_model) == 64
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "conditioned on a FLAIR" in err[0] and "sub-01_T1w" in err[0]
    assert not list(out.rglob("*_desc-filled_T1w.nii.gz"))


@pytest.mark.slow
def test_t1w_only_dataset_runs_with_the_shipped_model(tmp_path):
    if default_model_path("pseudo3d") is None:
        pytest.skip("no shipped pseudo3d weights")
    bids = _dataset(tmp_path / "bids", None)
    out = tmp_path / "out"
    assert _bidsfill(tmp_path, bids, out) == 0
    _, _, meta = _outputs(out, bids)
    assert meta["ConditioningImages"] == [] and "ConditioningFallback" not in meta


@pytest.mark.slow
def test_missing_contrast_falls_back_to_the_t1w_only_model(tmp_path, flair_model):
    """Past the command line's check (the library, a workflow built by hand), a model
    needing a contrast the session lacks is replaced by the shipped T1w-only model; the
    sidecar and the report's warnings say so."""
    if default_model_path("pseudo3d") is None:
        pytest.skip("no shipped pseudo3d weights")
    from bidsfill.bids.discovery import discover, load_layout
    from bidsfill.workflows.base import init_fill_run_wf, model_contrasts

    assert model_contrasts("pseudo3d", flair_model) == ("FLAIR",)
    bids = _dataset(tmp_path / "bids", None)
    runs, _ = discover(load_layout(bids, validate=False))
    out = tmp_path / "out"
    wf = init_fill_run_wf(run=runs[0], bids_dir=bids, output_dir=out, method="pseudo3d",
                          seed=5, fill_params={"model": str(flair_model), "steps": 2,
                                               "device": "cpu"},
                          segment=False, conditioning=("FLAIR",))  # fmt: skip
    wf.base_dir = str(tmp_path / "work")
    graph = wf.run(plugin="Linear")
    _, _, meta = _outputs(out, bids)
    assert meta["ConditioningImages"] == []
    sentence = meta["ConditioningFallback"]
    assert "tinyflair.safetensors is conditioned on a FLAIR" in sentence
    assert "T1w-only shipped pseudo3d model" in sentence
    ds_run = next(n for n in graph.nodes() if n.name == "ds_run")
    summary = json.loads(Path(ds_run.result.outputs.out_summary).read_text())
    assert sentence in summary["mask"]["Warnings"]


def test_align_node_resamples_the_flair_with_the_mask_transform(tmp_path):
    """The mask is on the FLAIR grid: the align node registers the FLAIR once, and the
    FLAIR it puts on the T1w grid is the FLAIR moved by that very transform; a T2w on the
    T1w grid is passed as it is."""
    import ants

    from bidsfill.interfaces.masks import AlignLesionMask

    t1w_data = make_lesioned(0)
    t1w_path = save(t1w_data, tmp_path / "t1w.nii.gz")
    t1w_affine = nib.load(str(t1w_path)).affine
    moved = np.diag([2.5, 2.5, 2.5, 1.0])
    moved[:3, 3] = [3.0, -2.0, 1.0]
    grid = ((20, 23, 20), moved)
    shifted = t1w_affine.copy()
    shifted[:3, 3] += [4.0, 0.0, 0.0]  # the head moved between the scans
    truth = np.where(t1w_data > 0, 200.0 - t1w_data, 0.0).astype(np.float32)
    flair_img = resample_from_to(nib.Nifti1Image(truth, shifted), grid, order=1)
    mask_img = resample_from_to(nib.Nifti1Image(lesion_mask().astype(np.float32), shifted),
                                grid, order=0)  # fmt: skip
    flair = save(np.asarray(flair_img.dataobj), tmp_path / "flair.nii.gz", np.float32, moved)
    mask = save(np.asarray(mask_img.dataobj), tmp_path / "mask.nii.gz", np.uint8, moved)
    t2w = save(truth * 0.5, tmp_path / "t2w.nii.gz", np.float32, t1w_affine)

    node = AlignLesionMask(t1w=str(t1w_path), mask=str(mask), seed=1,
                           references=[str(flair), str(t2w)],
                           reference_suffixes=["FLAIR", "T2w"], resample=["FLAIR", "T2w"])  # fmt: skip
    (tmp_path / "node").mkdir()
    res = node.run(cwd=str(tmp_path / "node")).outputs
    info = json.loads(Path(res.out_info).read_text())
    assert info["MaskAlignment"] == "registered:FLAIR"
    assert info["ReferenceAlignment"] == {"FLAIR": "registered-with-mask", "T2w": "same-grid"}
    assert res.out_reference_suffixes == ["FLAIR", "T2w"]
    on_t1w = {s: nib.load(p) for s, p in zip(res.out_reference_suffixes, res.out_references,
                                              strict=True)}  # fmt: skip
    for img in on_t1w.values():
        assert img.shape == t1w_data.shape and np.allclose(img.affine, t1w_affine)
    # Exactly the FLAIR moved by the transform the node kept (and the mask followed).
    assert res.out_transforms
    by_hand = ants.apply_transforms(
        fixed=ants.image_read(str(t1w_path)), moving=ants.image_read(str(flair)),
        transformlist=list(res.out_transforms), interpolator="linear",
    ).numpy()  # fmt: skip
    assert np.allclose(on_t1w["FLAIR"].get_fdata(), by_hand, atol=1e-3)
    # ... and that transform undoes the head's movement, which world coordinates miss.
    naive = resample_from_to(flair_img, (t1w_data.shape, t1w_affine), order=1).get_fdata()
    err = np.abs(on_t1w["FLAIR"].get_fdata() - truth).mean()
    assert err < 0.7 * np.abs(naive - truth).mean()
    assert np.array_equal(on_t1w["T2w"].get_fdata(), truth * 0.5)


def test_align_node_registers_a_flair_on_its_own_grid(tmp_path):
    """Mask on the T1w grid, FLAIR on another: the FLAIR alone is registered (lesion left
    out of the cost function) and resampled; nothing is resampled when not asked for."""
    from bidsfill.interfaces.masks import AlignLesionMask

    t1w_data = make_lesioned(0)
    t1w_path = save(t1w_data, tmp_path / "t1w.nii.gz")
    affine = nib.load(str(t1w_path)).affine
    mask = save(lesion_mask(), tmp_path / "mask.nii.gz", np.uint8)
    moved = np.diag([2.5, 2.5, 2.5, 1.0])
    moved[:3, 3] = [3.0, -2.0, 1.0]
    truth = np.where(t1w_data > 0, 200.0 - t1w_data, 0.0).astype(np.float32)
    flair_img = resample_from_to(nib.Nifti1Image(truth, affine), ((20, 23, 20), moved), order=1)
    flair = save(np.asarray(flair_img.dataobj), tmp_path / "flair.nii.gz", np.float32, moved)
    kwargs = {"t1w": str(t1w_path), "mask": str(mask), "references": [str(flair)],
              "reference_suffixes": ["FLAIR"], "seed": 1}  # fmt: skip
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
    plain = AlignLesionMask(**kwargs).run(cwd=str(tmp_path / "a")).outputs
    assert plain.out_references == [] and "ReferenceAlignment" not in json.loads(
        Path(plain.out_info).read_text()
    )
    res = AlignLesionMask(**kwargs, resample=["FLAIR"]).run(cwd=str(tmp_path / "b")).outputs
    assert json.loads(Path(res.out_info).read_text())["ReferenceAlignment"] == {
        "FLAIR": "registered"
    }
    got = nib.load(res.out_references[0]).get_fdata()
    assert np.corrcoef(got.ravel(), truth.ravel())[0, 1] > 0.9


def test_training_pairs_t1w_with_t2w(tmp_path, caplog):
    """``bidsfill-train --t2w`` (as --flair): each T1w with its session's T2w as the
    "t2w" channel; a T1w without one is skipped."""
    from bidsfill.bids.training import training_scans
    from bidsfill.cli.train import build_parser

    root = _dataset(tmp_path / "bids", _flair())
    save(_flair(), root / "sub-01" / "anat" / "sub-01_T2w.nii.gz", np.float32)
    save(make_lesioned(2), root / "sub-02" / "anat" / "sub-02_T1w.nii.gz")
    scans = training_scans(root, t2w=True)
    assert [s.name for s in scans] == ["sub-01_T1w"]
    assert scans[0].extras["t2w"].name == "sub-01_T2w.nii.gz"
    assert "no T2w beside it" in caplog.text
    both = training_scans(root, flair=True, t2w=True)
    assert set(both[0].extras) == {"flair", "t2w"}
    assert build_parser().parse_args(["--run-dir", "r", "--t2w", "--flair"]).t2w is True


def test_training_scans_of_patients_know_their_lesions(tmp_path):
    """A patient's own lesion mask comes with its T1w; a contrast-enhanced T1w is not a
    T1w to train on."""
    from bidsfill.bids.training import training_scans

    root = _dataset(tmp_path / "bids", _flair())
    save(make_lesioned(1), root / "sub-01" / "anat" / "sub-01_ce-gadolinium_T1w.nii.gz")
    save(make_lesioned(2), root / "sub-02" / "anat" / "sub-02_T1w.nii.gz")
    scans = training_scans(root)
    assert [s.name for s in scans] == ["sub-01_T1w", "sub-02_T1w"]
    assert scans[0].lesion.name == "sub-01_label-lesion_roi.nii.gz"
    assert scans[1].lesion is None


def test_training_masks_avoid_the_patients_own_lesions(tmp_path):
    """Drawn masks never touch the patient's real lesions (grown by 2 voxels), so the
    truth under a training mask is healthy tissue; the FLAIR channel shows a bright
    lesion inside the mask, as a patient's would."""
    from bidsfill.diffusion.card import Preprocessing
    from bidsfill.train.dataset import InpaintingDataset, load_volume
    from bidsfill.train.masks import MaskGenerator

    root = _dataset(tmp_path / "bids", _flair())
    anat = root / "sub-01" / "anat"
    vol = load_volume(anat / "sub-01_T1w.nii.gz", "sub-01", cache_dir=tmp_path / "cache",
                      extras={"flair": anat / "sub-01_FLAIR.nii.gz"},
                      lesion=anat / "sub-01_label-lesion_roi.nii.gz")  # fmt: skip
    own = lesion_mask()
    assert vol.lesion[own].all() and vol.lesion.sum() > own.sum()  # grown
    assert (vol.wm[vol.lesion] == 0).all()
    # the phantom's white matter and head (its registered priors are only roughly right and
    # differ between machines: a registered brain reaching into the background put a tumour
    # there on CI), the white matter under the lesions too: the draw itself must keep masks
    # off them
    vol = dataclasses.replace(vol, wm=(phantom(1) > 90).astype(np.float32), brain=phantom(1) > 0)
    prep = Preprocessing(patch_size=(16, 16, 4), extras=("flair",)).to_dict()
    ds = InpaintingDataset([vol], arch="pseudo3d", config={}, preprocessing=prep,
                           masks=MaskGenerator({"ms": 0.5, "tumour": 0.5}),
                           region=(20, 20, 8), seed=1)  # fmt: skip
    for index in range(12):
        # the draw behind example `index` (no mask bank): one key from (seed, index)
        _, crop, mask = ds._draw(int(np.random.default_rng([1, index]).integers(2**62)))
        assert not (crop.inner(mask) & vol.lesion[crop.slices]).any()
        image, region_mask, extras = ds.region_example(index)
        assert np.array_equal(region_mask, mask)
        plain = crop.extract(vol.extras["flair"])
        assert np.array_equal(extras["flair"][~region_mask], plain[~region_mask])
        assert (plain[region_mask] > 0).all()  # in the head
        inside = extras["flair"][region_mask]
        assert (inside >= plain[region_mask]).all() and (inside > plain[region_mask]).any()


def test_scorecard_hands_the_flair_to_a_contrast_filler(tmp_path, caplog):
    """``FillerSpec(contrasts=True)`` gives the case's FLAIR to the fill: without it a
    FLAIR model's fill falls back to the T1w-only default, with it the model fills."""
    from bidsfill.train.scorecard import FillerSpec, score_cases
    from bidsfill.train.validation import ValidationCase

    model = flair_fill_model(tmp_path / "tiny")
    vol = _volume_with_flair(tmp_path)
    case = ValidationCase("sub-01#0", vol, lesion_mask() & (vol.image > 0))
    params = {"model": str(model), "device": "cpu", "steps": 1}
    for contrasts in (False, True):
        caplog.clear()
        (row,) = score_cases([case], [FillerSpec("m", "pseudo3d", params, contrasts=contrasts)],
                             tissues=False)  # fmt: skip
        assert np.isfinite(row["brats_psnr_01"])
        fell_back = "which this session does not have" in caplog.text
        assert fell_back is not contrasts, caplog.text


def _volume_with_flair(tmp_path: Path):
    from bidsfill.train.dataset import load_volume

    root = _dataset(tmp_path / "bids", _flair())
    anat = root / "sub-01" / "anat"
    return load_volume(anat / "sub-01_T1w.nii.gz", "sub-01", cache_dir=tmp_path / "cache",
                       extras={"flair": anat / "sub-01_FLAIR.nii.gz"})  # fmt: skip


def test_scorecard_masks_leave_a_patients_own_lesions_out(tmp_path):
    """Scored masks on a patient cover healthy tissue only: the truth there is known."""
    from bidsfill.train.dataset import load_volume
    from bidsfill.train.scorecard import make_scorecard_cases

    root = _dataset(tmp_path / "bids", _flair())
    anat = root / "sub-01" / "anat"
    vol = load_volume(anat / "sub-01_T1w.nii.gz", "sub-01", cache_dir=tmp_path / "cache",
                      lesion=anat / "sub-01_label-lesion_roi.nii.gz")  # fmt: skip
    # white matter under the lesions too, so the generator would draw masks over them
    vol = dataclasses.replace(vol, wm=(phantom(1) > 90).astype(np.float32))
    cases = make_scorecard_cases([vol], ["tumour", "random", "tumour", "ms"], real_masks=None)
    assert len(cases) >= 3 and all(not (c.mask & vol.lesion).any() for c in cases)
