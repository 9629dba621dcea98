"""Every error a user can cause: one sentence, the BIDS exit code, no traceback (issue 13).

Each test gives the CLI one bad input or option on the tiny datasets of ``conftest`` and
checks the exit code, a phrase of the sentence, and that nothing ran (or was written)
when the error can be seen before the workflow starts.
"""

from __future__ import annotations

import errno
import json
import os
import shutil

import nibabel as nib
import numpy as np
import pytest
from conftest import SHAPE, lesion_mask, save
from scipy import ndimage

from bidsfill.cli.run import run
from bidsfill.io.nifti import load_mask

ONE = ["--participant-label", "01", "--session-label", "1", "--skip-bids-validation"]


def _run(capsys, *args):
    code = run([str(a) for a in args])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def _anat(root):
    return root / "sub-01" / "ses-1" / "anat"


def _roi(root):
    return _anat(root) / "sub-01_ses-1_label-lesion_roi.nii.gz"


def _t1w(root):
    return _anat(root) / "sub-01_ses-1_T1w.nii.gz"


def _nothing_ran(out):
    return not (out / "sub-01").exists()


# --- (A) paths ---------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["output", "work", "output_under_file"])
def test_directory_that_is_a_file_is_64(tiny_bids, tmp_path, capsys, which):
    afile = tmp_path / "afile"
    afile.write_text("not a directory")
    out, work = tmp_path / "out", tmp_path / "work"
    if which == "output":
        out = afile
    elif which == "work":
        work = afile
    else:
        out = afile / "out"
    code, err = _run(capsys, tiny_bids, out, "participant", "-w", work, *ONE)
    assert code == 64, err
    assert "is a file" in err and str(afile) in err
    assert afile.read_text() == "not a directory"


def test_unwritable_output_is_64(tiny_bids, tmp_path, capsys, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    # As root (containers, CI) chmod cannot make a directory unwritable: ask os.access.
    monkeypatch.setattr(
        os, "access", lambda p, mode, **kw: False if p == locked else real_access(p, mode, **kw)
    )
    code, err = _run(capsys, tiny_bids, locked / "out", "participant", "-w", tmp_path / "w", *ONE)
    assert code == 64, err
    assert "output directory" in err and "not writable" in err
    assert not (locked / "out").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through chmod 555")
def test_unwritable_work_dir_by_permissions_is_64(tiny_bids, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        code, err = _run(capsys, tiny_bids, tmp_path / "out", "participant", "-w",
                         locked / "work", *ONE)  # fmt: skip
    finally:
        locked.chmod(0o755)
    assert code == 64 and "work directory" in err and "not writable" in err


@pytest.mark.parametrize(
    "errno_,reason,code",
    [(errno.EACCES, "Permission denied", 64), (errno.ENOSPC, "No space left on device", 1)],
)
def test_failed_write_is_one_sentence(tiny_bids, tmp_path, capsys, monkeypatch, errno_, reason,
                                      code):  # fmt: skip
    import bidsfill.bids.derivatives as derivatives

    def refuse(out_dir, *args, **kwargs):
        raise OSError(errno_, reason, str(out_dir / "dataset_description.json"))

    monkeypatch.setattr(derivatives, "write_dataset_description", refuse)
    got, err = _run(capsys, tiny_bids, tmp_path / "out", "participant", "-w", tmp_path / "w",
                    "--method", "nawm", *ONE)  # fmt: skip
    assert got == code, err
    assert "Cannot write" in err and reason in err and "dataset_description.json" in err


# --- (A) BIDS filter file and dataset_description.json -----------------------------------


@pytest.mark.parametrize("value", ['"acq-mprage"', "[1, 2]", "null"])
def test_filter_value_not_an_object_is_64(tiny_bids, tmp_path, capsys, value):
    filt = tmp_path / "filter.json"
    filt.write_text(json.dumps({"t1w": json.loads(value)}))
    code, err = _run(capsys, tiny_bids, tmp_path / "out", "participant",
                     "--bids-filter-file", filt, *ONE)  # fmt: skip
    assert code == 64, err
    assert "'t1w' must be an object" in err


@pytest.mark.parametrize("query", ["t1w", "roi"])
def test_unknown_filter_entity_is_64(tiny_bids, tmp_path, capsys, query):
    filt = tmp_path / "filter.json"
    filt.write_text(json.dumps({query: {"acq": "mprage"}}))
    code, err = _run(capsys, tiny_bids, tmp_path / "out", "participant",
                     "--bids-filter-file", filt, *ONE)  # fmt: skip
    assert code == 64, err
    assert "'acq'" in err and "entity" in err and "'acquisition'" in err


@pytest.mark.parametrize("skip", [True, False])
@pytest.mark.parametrize(
    "text,needle",
    [("{not json", "not valid JSON"), ("[1, 2]", "JSON object"), ('"a string"', "JSON object")],
)
def test_invalid_dataset_description_is_16(tiny_bids, tmp_path, capsys, text, needle, skip):
    (tiny_bids / "dataset_description.json").write_text(text)
    args = ["--participant-label", "01"] + (["--skip-bids-validation"] if skip else [])
    code, err = _run(capsys, tiny_bids, tmp_path / "out", "participant", *args)
    assert code == 16, err
    assert "dataset_description.json" in err and needle in err


def test_invalid_derivatives_description_is_16(tiny_bids, tmp_path, capsys):
    (tmp_path / "lesions" / "dataset_description.json").write_text("[]")
    code, err = _run(capsys, tiny_bids, tmp_path / "out", "participant", "--participant-label",
                     "02", "--derivatives", tmp_path / "lesions", "--skip-bids-validation")  # fmt: skip
    assert code == 16, err
    assert "JSON object" in err and "lesions" in err


# --- (A) a node that fails ---------------------------------------------------------------


def test_failed_node_names_subject_node_and_message(tiny_bids, tmp_path, capsys, monkeypatch):
    import bidsfill.interfaces.masks as masks

    def boom(*args, **kwargs):
        raise ValueError("synthetic alignment failure")

    monkeypatch.setattr(masks, "align_mask", boom)  # Linear plugin: runs in this process
    code, err = _run(capsys, tiny_bids, tmp_path / "out", "participant", "-w", tmp_path / "w",
                     "--method", "nawm", "--nprocs", "1", *ONE)  # fmt: skip
    assert code == 1, err
    line = err.strip().splitlines()[-1]
    assert "sub-01" in line and "align_mask" in line
    assert "synthetic alignment failure" in line
    assert "crash files are in" in line
    assert "Exception raised while executing" not in line and "Re-raising" not in line


# --- (A) checked before the workflow starts ----------------------------------------------


def _model_copy(tmp_path):
    from bidsfill.diffusion.weights import default_model_path

    src = default_model_path("pseudo3d")
    dst = tmp_path / "models" / "mine.safetensors"
    dst.parent.mkdir()
    shutil.copy(src, dst)
    shutil.copy(src.with_suffix(".json"), dst.with_suffix(".json"))
    return dst


@pytest.mark.parametrize("fault,needle", [("sha256", "sha256"), ("card", "no model card")])
def test_bad_model_stops_before_the_workflow(tiny_bids, tmp_path, capsys, fault, needle):
    model = _model_copy(tmp_path)
    card = model.with_suffix(".json")
    if fault == "sha256":
        card.write_text(json.dumps({**json.loads(card.read_text()), "sha256": "0" * 64}))
    else:
        card.unlink()
    out = tmp_path / "out"
    code, err = _run(capsys, tiny_bids, out, "participant", "-w", tmp_path / "w",
                     "--model", model, *ONE)  # fmt: skip
    assert code == 64, err
    assert needle in err and "mine.safetensors" in err
    assert _nothing_ran(out)


@pytest.mark.parametrize("option,needle", [
    (("--method", "repaint", "--antithetic"), "--antithetic needs"),
    (("--method", "repaint", "--edge-taper", "3"), "--edge-taper needs"),
    (("--steps", "5000"), "--steps must be between"),
])  # fmt: skip
def test_sampling_the_model_cannot_take_stops_before_the_workflow(tiny_bids, tmp_path, capsys,
                                                                  option, needle):
    out = tmp_path / "out"
    code, err = _run(capsys, tiny_bids, out, "participant", "-w", tmp_path / "w", *option,
                     *ONE)  # fmt: skip
    assert code == 64, err
    assert needle in err and "Traceback" not in err
    assert _nothing_ran(out)


def test_method_without_weights_is_66(tiny_bids, tmp_path, capsys, monkeypatch):
    # an install without bundled weights (every method ships them; issue 17)
    monkeypatch.setattr("bidsfill.diffusion.weights.default_model_path", lambda method: None)
    out = tmp_path / "out"
    code, err = _run(capsys, tiny_bids, out, "participant", "-w", tmp_path / "w",
                     "--method", "slicewise", *ONE)  # fmt: skip
    assert code == 66, err
    assert "No trained weights" in err and _nothing_ran(out)


def test_cuda_without_gpu_is_64(tiny_bids, tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    out = tmp_path / "out"
    code, err = _run(capsys, tiny_bids, out, "participant", "-w", tmp_path / "w",
                     "--device", "cuda", *ONE)  # fmt: skip
    assert code == 64, err
    assert "no CUDA GPU" in err and _nothing_ran(out)


def test_mask_covering_the_whole_volume_is_16(tiny_bids, tmp_path, capsys):
    save(np.ones(SHAPE), _roi(tiny_bids), np.uint8)
    out = tmp_path / "out"
    code, err = _run(capsys, tiny_bids, out, "participant", "-w", tmp_path / "w",
                     "--method", "nawm", *ONE)  # fmt: skip
    assert code == 16, err
    assert "whole volume" in err and _nothing_ran(out)


def _set_sform(path, rows):
    """Rewrite ``path`` with this sform (code 1) and no qform, as a broken header would be."""
    img = nib.load(str(path))
    header = img.header.copy()
    header["qform_code"] = 0
    header["sform_code"] = 1
    for name, row in zip(("srow_x", "srow_y", "srow_z"), rows, strict=True):
        header[name] = row
    nib.save(nib.Nifti1Image(np.asanyarray(img.dataobj), None, header), str(path))


@pytest.mark.parametrize("kind", ["zero", "singular"])
def test_zero_or_singular_t1w_affine_is_named(tiny_bids, tmp_path, capsys, kind):
    rows = [[0, 0, 0, 0]] * 3 if kind == "zero" else [[2, 0, 0, 0], [0, 2, 0, 0], [0, 0, 0, 0]]
    _set_sform(_t1w(tiny_bids), rows)
    out = tmp_path / "out"
    code, err = _run(capsys, tiny_bids, out, "participant", "-w", tmp_path / "w",
                     "--method", "nawm", *ONE)  # fmt: skip
    assert code == 16, err
    assert f"{kind} affine" in err and "sub-01_ses-1_T1w.nii.gz" in err
    assert _nothing_ran(out)


def test_help_shows_the_new_options(capsys):
    assert run(["--help"]) == 0
    out = capsys.readouterr().out
    assert "--mask-threshold" in out and "--allow-large-masks" in out and "20%" in out


# --- (B) a non-binary mask ---------------------------------------------------------------


def _probability_map():
    """A lesion probability map saved as uint8 0..255, as segmentation tools export it."""
    smooth = ndimage.gaussian_filter(lesion_mask().astype(np.float32), 1.0)
    return np.round(smooth / smooth.max() * 255)


def test_nonbinary_mask_is_refused_with_its_range(tiny_bids, tmp_path, capsys):
    save(_probability_map(), _roi(tiny_bids), np.uint8)
    out = tmp_path / "out"
    code, err = _run(capsys, tiny_bids, out, "participant", "-w", tmp_path / "w",
                     "--method", "nawm", *ONE)  # fmt: skip
    assert code == 16, err
    assert "not binary" in err and "values 0 to 255" in err and "--mask-threshold" in err
    assert _nothing_ran(out)


def test_mask_threshold_binarises(tiny_bids, tmp_path, capsys):
    prob = _probability_map()
    save(prob, _roi(tiny_bids), np.uint8)
    out = tmp_path / "out"
    code, err = _run(capsys, tiny_bids, out, "participant", "-w", tmp_path / "w",
                     "--method", "nawm", "--nprocs", "1", "--mask-threshold", "128", *ONE)  # fmt: skip
    assert code == 0, err
    (written,) = out.glob("sub-01/**/*label-lesion_mask.nii.gz")
    assert np.array_equal(np.asarray(nib.load(str(written)).dataobj) > 0, prob >= 128)


@pytest.mark.parametrize("value", ["0", "-1", "nan", "x"])
def test_bad_mask_threshold_is_64(tiny_bids, tmp_path, capsys, value):
    code = run([str(tiny_bids), str(tmp_path / "out"), "participant", f"--mask-threshold={value}"])
    assert code == 64
    assert "--mask-threshold" in capsys.readouterr().err


@pytest.mark.parametrize("high", [1, 255])
def test_zero_one_and_zero_255_masks_stay_binary(tmp_path, high):
    path = save(lesion_mask() * high, tmp_path / "m.nii.gz", np.uint8)
    mask, warnings = load_mask(path)
    assert warnings == []
    assert np.array_equal(mask.data > 0, lesion_mask())


# --- (B) runaway dilation and huge masks -------------------------------------------------


def test_dilate_is_bounded(tiny_bids, tmp_path, capsys):
    code = run([str(tiny_bids), str(tmp_path / "out"), "participant", "--dilate", "60"])
    assert code == 64
    assert "--dilate 60 is too large" in capsys.readouterr().err


def test_large_dilated_fill_needs_confirmation(tiny_bids, tmp_path, capsys):
    out = tmp_path / "out"
    args = [tiny_bids, out, "participant", "-w", tmp_path / "w", "--method", "nawm",
            "--nprocs", "1", "--dilate", "4", *ONE]  # fmt: skip
    code, err = _run(capsys, *args)
    assert code == 64, err
    assert "--dilate 4" in err and "--allow-large-masks" in err and "limit is 20%" in err
    assert _nothing_ran(out)
    code, err = _run(capsys, *args, "--allow-large-masks")
    assert code == 0, err


def test_inverted_mask_is_16(tiny_bids, tmp_path, capsys):
    save(~lesion_mask(), _roi(tiny_bids), np.uint8)
    out = tmp_path / "out"
    code, err = _run(capsys, tiny_bids, out, "participant", "-w", tmp_path / "w",
                     "--method", "nawm", *ONE)  # fmt: skip
    assert code == 16, err
    assert "inverted" in err and "--allow-large-masks" in err and _nothing_ran(out)


# --- (B) --model --------------------------------------------------------------------------


def test_model_with_classical_method_is_64(tiny_bids, tmp_path, capsys):
    model = _model_copy(tmp_path)
    code, err = _run(capsys, tiny_bids, tmp_path / "out", "participant", "--method", "nawm",
                     "--model", model, *ONE)  # fmt: skip
    assert code == 64, err
    assert "--model" in err and "nawm" in err


@pytest.mark.parametrize("exists", [True, False])
def test_non_safetensors_model_is_refused_by_its_name(tiny_bids, tmp_path, capsys, exists):
    evil = tmp_path / "evil.pt"
    if exists:
        evil.write_bytes(b"\x80\x04pickled")
    code = run([str(tiny_bids), str(tmp_path / "out"), "participant", "--model", str(evil)])
    err = capsys.readouterr().err
    assert code == 64
    assert "evil.pt" in err and "evil.safetensors" not in err and ".safetensors" in err


def test_unknown_entity_in_a_t1w_name_is_16_before_any_node(tiny_bids, tmp_path, capsys):
    """With --skip-bids-validation a T1w may carry an entity pybids does not know; its
    derivatives could not be named, so the run stops at once (it used to fail in the last
    node, after the fill)."""
    anat = _anat(tiny_bids)
    _t1w(tiny_bids).rename(anat / "sub-01_ses-1_foo-bar_T1w.nii.gz")
    _roi(tiny_bids).rename(anat / "sub-01_ses-1_foo-bar_label-lesion_roi.nii.gz")
    out = tmp_path / "out"
    code, err = _run(capsys, tiny_bids, out, "participant", "-w", tmp_path / "w", *ONE,
                     "--method", "nawm")  # fmt: skip
    assert code == 16, err
    assert "cannot name derivatives" in err and "foo-bar" in err
    assert _nothing_ran(out)
