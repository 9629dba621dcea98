"""``bidsfill --synthesize`` end to end (issue 15 part 3): a tiny real cWDM model, a
generated dataset, the written derivative, its sidecar and the official validator."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import lesion_mask, make_lesioned, phantom, save, write_description
from official_validator import validator_errors
from tiny_models import cwdm_flair_model

from bidsfill.cli.run import run
from bidsfill.diffusion.weights import file_sha256
from bidsfill.synthesis.model import installed_synthesis_model


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return cwdm_flair_model(tmp_path_factory.mktemp("m"))


def _dataset(root: Path, missing: str = "FLAIR") -> Path:
    """Two subjects with T1w, T2w and FLAIR, except that sub-01 lacks ``missing``."""
    write_description(root)
    (root / "participants.tsv").write_text("participant_id\nsub-01\nsub-02\n")
    for sub in ("01", "02"):
        anat = root / f"sub-{sub}" / "anat"
        t1 = make_lesioned(int(sub))
        images = {
            "T1w": (t1, np.int16),
            "T2w": (np.where(t1 > 0, 250.0 - t1, 0).astype(np.float32), np.float32),
            "FLAIR": (np.where(phantom(2) > 0, 200.0 - phantom(2), 0).astype(np.float32), np.float32),
        }
        for contrast, (data, dtype) in images.items():
            if not (sub == "01" and contrast == missing):
                save(data, anat / f"sub-{sub}_{contrast}.nii.gz", dtype)
        save(lesion_mask(), anat / f"sub-{sub}_label-lesion_roi.nii.gz", np.uint8)
    (root / ".bidsignore").write_text("*_roi.nii.gz\n")
    return root


def _bidsfill(tmp_path: Path, bids: Path, out: Path, *extra) -> int:
    plugin = tmp_path / "linear.yml"
    plugin.write_text("plugin: Linear\nplugin_args: {}\n")
    return run([str(bids), str(out), "participant", "-w", str(tmp_path / "work"),
                "--skip-bids-validation", "--skip-segmentation", "--method", "ring",
                "--seed", "2", "--device", "cpu", "--use-plugin", str(plugin),
                *map(str, extra)])  # fmt: skip


@pytest.mark.slow
def test_synthesize_writes_valid_derivatives(tmp_path, tiny_model):
    bids, out = _dataset(tmp_path / "bids"), tmp_path / "out"
    assert _bidsfill(tmp_path, bids, out, "--synthesize", "FLAIR",
                     "--synthesis-model", tiny_model) == 0  # fmt: skip
    synthetic = out / "sub-01" / "anat" / "sub-01_desc-synthetic_FLAIR.nii.gz"
    assert synthetic.is_file()
    assert not (out / "sub-02" / "anat" / "sub-02_desc-synthetic_FLAIR.nii.gz").exists()  # has one
    t1 = nib.load(bids / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    img = nib.load(synthetic)
    assert img.shape == t1.shape
    np.testing.assert_allclose(img.affine, t1.affine, atol=1e-5)
    data = img.get_fdata()
    assert np.isfinite(data).all() and data.max() > 0 and data.max() <= 400.0 + 1e-3
    meta = json.loads(synthetic.with_name("sub-01_desc-synthetic_FLAIR.json").read_text())
    assert meta["Sources"] == ["bids:raw:sub-01/anat/sub-01_T1w.nii.gz",
                               "bids:raw:sub-01/anat/sub-01_T2w.nii.gz"]  # fmt: skip
    assert meta["Synthetic"] is True
    assert meta["SynthesisModel"]["Name"] == "tiny-cwdm-flair"
    assert meta["SynthesisModel"]["Sha256"] == file_sha256(tiny_model)
    assert (out / "sub-01" / "anat" / "sub-01_desc-filled_T1w.nii.gz").is_file()  # fill too
    assert validator_errors(out) == []


@pytest.mark.slow
def test_report_shows_the_synthetic_beside_its_sources(tmp_path, tiny_model):
    """sub-01's report has the synthetic FLAIR, framed and labelled as synthetic with its
    model, above its T1w and T2w on the same axial slices; sub-02 (has a FLAIR) has none."""
    import re

    from PIL import Image

    from bidsfill.report.figures import box_around
    from bidsfill.report.render import load_ras, render_tile, window
    from bidsfill.report.synthesis import SYNTHETIC_RGB

    bids, out = _dataset(tmp_path / "bids"), tmp_path / "out"
    assert _bidsfill(tmp_path, bids, out, "--synthesize", "FLAIR",
                     "--synthesis-model", tiny_model) == 0  # fmt: skip
    html = (out / "sub-01.html").read_text()
    section = html[html.index('<section id="synthetic">') :]
    section = section[: section.index("</section>")]
    assert "Synthetic contrasts" in section and "SYNTHETIC FLAIR" in section
    assert "tiny-cwdm-flair" in section and "not an acquired image" in section
    assert "bids:raw:sub-01/anat/sub-01_T1w.nii.gz" in section
    assert 'src="sub-01/figures/sub-01_desc-synthetic_FLAIR.png"' in section
    slices = [int(k) for k in re.search(r"same axial slices ([\d, ]+)\.", section)[1].split(", ")]
    assert len(slices) == 3
    assert '<section id="synthetic">' not in (out / "sub-02.html").read_text()

    # Rows: the synthetic FLAIR, then the T1w and the T2w, each on the same slices.
    rgb = np.asarray(Image.open(out / "sub-01" / "figures" / "sub-01_desc-synthetic_FLAIR.png"))
    anat = bids / "sub-01" / "anat"
    rows = [load_ras(out / "sub-01" / "anat" / "sub-01_desc-synthetic_FLAIR.nii.gz"),
            load_ras(anat / "sub-01_T1w.nii.gz"), load_ras(anat / "sub-01_T2w.nii.gz")]  # fmt: skip
    # Cropped to the images' foreground with 4 mm to spare, its longest side 150 px.
    box = box_around(np.any([v.data > 0 for v in rows], axis=0), rows[0].zooms, margin_mm=4.0)
    scale = 150 / max((b.stop - b.start) * z for b, z in zip(box, rows[0].zooms, strict=True))
    for r, vol in enumerate(rows):
        for c, k in enumerate(slices):
            tile = render_tile(vol.data, vol.zooms, 2, k, vrange=window(vol.data), box=box,
                               px_per_mm=max(1.0, scale))  # fmt: skip
            h, w = tile.shape[:2]
            shown = rgb[r * (h + 4) : r * (h + 4) + h, c * (w + 4) : c * (w + 4) + w]
            # Below the label and inside the frame the figure is that slice of that image.
            assert np.array_equal(shown[20:-2, 2:-2], tile[20:-2, 2:-2]), (r, c)
            framed = (shown[:, :2] == SYNTHETIC_RGB).all(axis=2).all()
            assert framed == (r == 0)
    # --reports-only reads it all from the output dataset, so it draws the same section.
    (out / "sub-01.html").unlink()
    assert _bidsfill(tmp_path, bids, out, "--reports-only") == 0
    assert section in (out / "sub-01.html").read_text()


@pytest.mark.parametrize("target", ["FLAIR", "T2w", "T1w"])
def test_a_target_without_a_model_is_refused_in_one_sentence(tmp_path, capsys, monkeypatch, target):
    # every target has a shipped model now: take the lookup's answer of an install without it
    import bidsfill.synthesis.model

    monkeypatch.setattr(bidsfill.synthesis.model, "installed_synthesis_model", lambda _t: None)
    bids = _dataset(tmp_path / "bids", missing=target)
    assert _bidsfill(tmp_path, bids, tmp_path / "out", "--synthesize", target) == 64
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"No synthesis model for {target} is installed" in err and err.count(". ") == 0
    assert not (tmp_path / "out").exists()


def test_a_model_for_another_target_is_refused(tmp_path, capsys, tiny_model):
    bids = _dataset(tmp_path / "bids")
    code = _bidsfill(tmp_path, bids, tmp_path / "out", "--synthesize", "T2w",
                     "--synthesis-model", tiny_model)  # fmt: skip
    assert code == 64
    assert "writes FLAIR, not T2w" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("target", ["FLAIR", "T2w", "T1w"])
def test_the_installed_model_is_the_default(tmp_path, target):
    path = installed_synthesis_model(target)
    assert path is not None, f"the shipped cwdm-{target.lower()} model is missing"
    bids, out = _dataset(tmp_path / "bids", missing=target), tmp_path / "out"
    assert _bidsfill(tmp_path, bids, out, "--synthesize", target) == 0
    anat = out / "sub-01" / "anat"
    meta = json.loads((anat / f"sub-01_desc-synthetic_{target}.json").read_text())
    assert meta["SynthesisModel"] == {**meta["SynthesisModel"], "Name": f"cwdm-{target.lower()}",
                                      "Sha256": file_sha256(path)}  # fmt: skip
    assert not list((out / "sub-02").rglob("*desc-synthetic*"))  # it has the contrast


def test_bidsfill_train_task_synthesize(tmp_path):
    from bidsfill.cli.train import main as train_main

    bids = tmp_path / "bids"
    write_description(bids)
    (bids / "participants.tsv").write_text("participant_id\tlicence\nsub-01\tCC0\nsub-02\tCC0\n"
                                           "sub-03\tCC-BY\nsub-04\tCC0\n")  # fmt: skip
    for k in (1, 2, 3, 4):
        anat = bids / f"sub-0{k}" / "anat"
        t1 = phantom(k)
        save(t1, anat / f"sub-0{k}_T1w.nii.gz")
        save(np.where(t1 > 0, 250.0 - t1, 0), anat / f"sub-0{k}_T2w.nii.gz", np.float32)
        if k != 4:  # sub-04 has no FLAIR: not used
            save(np.where(t1 > 0, 200.0 - t1, 0), anat / f"sub-0{k}_FLAIR.nii.gz", np.float32)
    export = tmp_path / "cwdm-flair-test.safetensors"
    code = train_main(["--task", "synthesize", "--target", "FLAIR", "--sources", "T1w", "T2w",
                       "--bids-dir", str(bids), "--val-participant-label", "03",
                       "--run-dir", str(tmp_path / "run"), "--steps", "3", "--channels", "8", "16",
                       "--norm-groups", "4", "--patch", "16", "16", "16", "--batch-size", "1",
                       "--export", str(export)])  # fmt: skip
    assert code == 0
    card = json.loads(export.with_suffix(".json").read_text())
    assert card["task"] == "synthesize" and card["training"]["steps"] == 3
    assert [d["name"] for d in card["training"]["training_data"]] == [
        "sub-01_FLAIR",
        "sub-02_FLAIR",
    ]
    assert card["training"]["held_out"] == [{"participant": "sub-03", "licence": "CC-BY"}]
    assert "Little data" in card["training"]["note"]
    assert train_main(["--task", "synthesize", "--target", "FLAIR", "--sources", "FLAIR",
                       "--bids-dir", str(bids)]) == 64  # fmt: skip
