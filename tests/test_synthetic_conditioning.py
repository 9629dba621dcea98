"""A synthetic FLAIR conditions a FLAIR-conditioned fill (issue 15 parts 1 and 3): with
``--synthesize FLAIR``, a session without a FLAIR gets one from a tiny real cWDM, the
tiny real FLAIR-conditioned fill model takes it as its FLAIR channel, and the sidecar,
the report and the citation say it was synthetic. A T1w-only model is left as it was."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import lesion_mask, make_lesioned, save, write_description
from official_validator import validator_errors
from tiny_models import cwdm_flair_model, flair_fill_model

from bidsfill.bids.discovery import RunInputs, SynthesisInputs, synthetic_conditioning
from bidsfill.cli.run import run
from bidsfill.io.nifti import raw_data

SYNTHETIC_URI = "bids::sub-01/anat/sub-01_desc-synthetic_FLAIR.nii.gz"


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    return {
        "cwdm": cwdm_flair_model(folder),
        "flair": flair_fill_model(folder / "tinyflair"),
        "t1w": flair_fill_model(folder / "tinyt1w", contrasts=()),
    }


def _dataset(root: Path, t2w_in_lesion: float | None = None, t2w: bool = True) -> Path:
    """sub-01: T1w, lesion mask and T2w, no FLAIR; ``t2w_in_lesion`` changes the T2w
    inside the lesion only."""
    write_description(root)
    anat = root / "sub-01" / "anat"
    t1 = make_lesioned(1)
    save(t1, anat / "sub-01_T1w.nii.gz")
    save(lesion_mask(), anat / "sub-01_label-lesion_roi.nii.gz", np.uint8)
    if t2w:
        other = np.where(t1 > 0, 250.0 - t1, 0).astype(np.float32)
        if t2w_in_lesion is not None:
            other[lesion_mask()] = t2w_in_lesion
        save(other, anat / "sub-01_T2w.nii.gz", np.float32)
    (root / ".bidsignore").write_text("*_roi.nii.gz\n")
    return root


def _bidsfill(out: Path, bids: Path, models: dict[str, Path], fill_model: str = "flair") -> int:
    plugin = out.parent / "linear.yml"
    plugin.write_text("plugin: Linear\nplugin_args: {}\n")
    return run([str(bids), str(out), "participant", "-w", str(out.parent / f"{out.name}-work"),
                "--skip-bids-validation", "--skip-segmentation", "--method", "pseudo3d",
                "--model", str(models[fill_model]), "--steps", "2", "--device", "cpu",
                "--seed", "5", "--use-plugin", str(plugin), "--synthesize", "FLAIR",
                "--synthesis-model", str(models["cwdm"])])  # fmt: skip


def _read(out: Path, name: str) -> np.ndarray:
    return raw_data(nib.load(str(out / "sub-01" / "anat" / name)))


@pytest.mark.slow
def test_synthetic_flair_conditions_the_fill(tmp_path, models):
    bids, out = _dataset(tmp_path / "bids"), tmp_path / "out"
    assert _bidsfill(out, bids, models) == 0  # not refused: the FLAIR will be synthesised
    meta = json.loads((out / "sub-01" / "anat" / "sub-01_desc-filled_T1w.json").read_text())
    assert meta["ConditioningImages"] == [SYNTHETIC_URI]
    assert meta["SyntheticConditioning"] == ["FLAIR"]
    assert "ConditioningFallback" not in meta
    # cWDM writes on its first source's grid, the T1w's: the align node passes it as it is.
    info = json.loads(next((tmp_path / "out-work").rglob("align_mask/mask_info.json")).read_text())
    assert info["ReferenceAlignment"] == {"FLAIR": "same-grid"}
    html = (out / "sub-01.html").read_text()
    assert "Synthetic conditioning" in html and SYNTHETIC_URI in html
    assert "The FLAIR that conditioned this fill was synthesised" in html  # also a warning
    assert '<section id="synthetic">' in html
    citation = (out / "logs" / "CITATION.md").read_text()
    assert "conditioned on a synthetic one" in citation and "Friedrich" in citation
    assert validator_errors(out) == []

    # The synthetic FLAIR is what the network was given: a T2w that differs inside the
    # lesion only (the fill model never sees a T2w) gives another synthetic FLAIR there,
    # and another fill with the same seed; the same inputs give the same fill.
    mask = lesion_mask()
    other, out2 = _dataset(tmp_path / "bids2", t2w_in_lesion=60.0), tmp_path / "out2"
    assert _bidsfill(out2, other, models) == 0
    name = "sub-01_desc-synthetic_FLAIR.nii.gz"
    assert not np.allclose(_read(out, name)[mask], _read(out2, name)[mask])
    filled, filled2 = (_read(o, "sub-01_desc-filled_T1w.nii.gz") for o in (out, out2))
    assert np.array_equal(filled[~mask], filled2[~mask])
    assert not np.array_equal(filled[mask], filled2[mask])
    out3 = tmp_path / "out3"
    assert _bidsfill(out3, bids, models) == 0
    assert np.array_equal(_read(out3, "sub-01_desc-filled_T1w.nii.gz"), filled)


@pytest.mark.slow
def test_a_t1w_only_model_is_left_as_it_was(tmp_path, models):
    bids, out = _dataset(tmp_path / "bids"), tmp_path / "out"
    assert _bidsfill(out, bids, models, fill_model="t1w") == 0
    meta = json.loads((out / "sub-01" / "anat" / "sub-01_desc-filled_T1w.json").read_text())
    assert meta["ConditioningImages"] == [] and "SyntheticConditioning" not in meta
    assert (out / "sub-01" / "anat" / "sub-01_desc-synthetic_FLAIR.nii.gz").is_file()
    assert not list((tmp_path / "out-work").rglob("merge_references"))
    assert "Synthetic conditioning" not in (out / "sub-01.html").read_text()


def test_a_flair_model_is_still_refused_when_no_flair_can_be_synthesised(tmp_path, models,
                                                                       capsys):  # fmt: skip
    bids, out = _dataset(tmp_path / "bids", t2w=False), tmp_path / "out"  # cWDM needs a T2w
    assert _bidsfill(out, bids, models) == 64
    assert "conditioned on a FLAIR" in capsys.readouterr().err
    assert not list(out.rglob("*_desc-filled_T1w.nii.gz"))


def test_which_runs_take_the_synthetic_contrast():
    def runs(**kw) -> RunInputs:
        return RunInputs(t1w=Path(f"sub-{kw.get('subject', '01')}_T1w.nii.gz"),
                         subject=kw.get("subject", "01"), session=None, mask=Path("m.nii.gz"),
                         mask_source="raw", flair=kw.get("flair"))  # fmt: skip

    plain, has_flair, other = runs(), runs(flair=Path("f.nii.gz")), runs(subject="02")
    sessions = [SynthesisInputs("01", None, {"T1w": Path("t1"), "T2w": Path("t2")})]
    got = synthetic_conditioning([plain, has_flair, other], sessions, "FLAIR", ("FLAIR",))
    assert list(got) == [plain.key] and got[plain.key] is sessions[0]
    assert synthetic_conditioning([plain], sessions, "FLAIR", ()) == {}  # T1w-only model
    assert synthetic_conditioning([plain], sessions, "FLAIR", ("T2w",)) == {}
    assert synthetic_conditioning([plain], sessions, None, ("FLAIR",)) == {}
