"""The Nipype workflow: graph wiring, and real end-to-end runs on a tiny dataset."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import tree_hashes

from bidsfill.bids.discovery import discover, load_layout
from bidsfill.cli.run import run
from bidsfill.io.nifti import raw_data
from bidsfill.workflows.base import init_single_subject_wf


def test_subject_workflow_graph(tiny_bids, tmp_path):
    runs, _ = discover(load_layout(tiny_bids, validate=False), participant_label=["01"])
    wf = init_single_subject_wf(subject="01", runs=runs, bids_dir=tiny_bids,
                                output_dir=tmp_path / "out", log_dir=tmp_path / "log",
                                method="ring", seed=3)  # fmt: skip
    wf._create_flat_graph()
    names = {n.fullname.split(".")[-1] for n in wf._graph.nodes()}
    assert {"report", "merge_summaries"} <= names
    flat = wf._create_flat_graph()
    node_names = {n.name for n in flat.nodes()}
    assert {"align_mask", "brain_mask", "fill", "seg_orig", "seg_filled", "ds_run"} <= node_names
    fill = next(n for n in flat.nodes() if n.name == "fill")
    assert fill.inputs.method == "ring" and fill.inputs.seed == 3 and fill.inputs.use_gpu is False


def _bidsfill(bids, out, work, *extra):
    return run([str(bids), str(out), "participant", "-w", str(work), "--skip-bids-validation",
                *map(str, extra)])  # fmt: skip


@pytest.mark.slow
def test_end_to_end_invariants_and_resume(tiny_bids, tmp_path):
    before = tree_hashes(tiny_bids)
    out, work = tmp_path / "out", tmp_path / "work"
    deriv = tmp_path / "lesions"
    assert (
        _bidsfill(tiny_bids, out, work, "--derivatives", deriv, "--nprocs", "2", "--seed", "7") == 0
    )
    assert tree_hashes(tiny_bids) == before, "the input dataset was written to"

    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative" and desc["GeneratedBy"][0]["Name"] == "bidsfill"
    for src in (tiny_bids / "sub-01" / "ses-1" / "anat" / "sub-01_ses-1_T1w.nii.gz",
                tiny_bids / "sub-02" / "anat" / "sub-02_T1w.nii.gz"):  # fmt: skip
        stem = src.name.replace("_T1w.nii.gz", "")
        anat = out / src.parent.relative_to(tiny_bids)
        filled = nib.load(str(anat / f"{stem}_desc-filled_T1w.nii.gz"))
        mask = np.asarray(nib.load(str(anat / f"{stem}_label-lesion_mask.nii.gz")).dataobj) > 0
        original = nib.load(str(src))
        assert filled.header.binaryblock == original.header.binaryblock
        assert filled.get_data_dtype() == original.get_data_dtype()
        assert np.array_equal(raw_data(filled)[~mask], raw_data(original)[~mask])
        assert mask.any() and not np.array_equal(raw_data(filled)[mask], raw_data(original)[mask])
        meta = json.loads((anat / f"{stem}_desc-filled_T1w.json").read_text())
        assert meta["Method"] == "pseudo3d" and meta["Seed"] == 7 and "FillSeconds" in meta
        card = json.loads(
            (Path(__file__).parents[1] / "bidsfill/data/models/pseudo3d.json").read_text()
        )
        sampling = card["sampling"]  # the card's default sampling, used when none is given
        assert meta["NSamples"] == sampling["n_samples"] and meta["Steps"] == sampling["steps"]
        assert meta["Sources"][0].startswith("bids:raw:")
        for name in ("desc-orig_dseg", "desc-filled_dseg", "label-GM_desc-orig_probseg",
                     "label-WM_desc-filled_probseg", "label-CSF_desc-filled_probseg"):  # fmt: skip
            assert (anat / f"{stem}_{name}.nii.gz").exists()
            assert (anat / f"{stem}_{name}.json").exists()
        dseg = np.asarray(nib.load(str(anat / f"{stem}_desc-filled_dseg.nii.gz")).dataobj)
        assert set(np.unique(dseg)) <= {0, 1, 2, 3} and (dseg == 2).any()
    assert (out / "sub-01.html").exists() and (out / "sub-02.html").exists()
    logs = list((out / "sub-01" / "log").glob("*/bidsfill.toml"))
    assert logs and "method" in logs[0].read_text()
    assert not list(out.rglob("*.part"))

    # group level
    assert run([str(tiny_bids), str(out), "group"]) == 0
    table = (out / "group_T1w.tsv").read_text().splitlines()
    assert len(table) == 4 and "lesion_volume_ml" in table[0]

    # rerun with the same work dir: finished fill nodes are not recomputed
    fill_results = sorted(work.rglob("fill/result_fill.pklz"))
    assert len(fill_results) == 3
    stamps = [p.stat().st_mtime_ns for p in fill_results]
    assert (
        _bidsfill(tiny_bids, out, work, "--derivatives", deriv, "--nprocs", "1", "--seed", "7") == 0
    )
    assert [p.stat().st_mtime_ns for p in fill_results] == stamps

    # same seed, fresh work dir -> identical bytes; another seed -> a different fill
    out2 = tmp_path / "out2"
    assert _bidsfill(tiny_bids, out2, tmp_path / "w2", "--participant-label", "02",
                     "--derivatives", deriv, "--nprocs", "1", "--seed", "7") == 0  # fmt: skip
    name = Path("sub-02/anat/sub-02_desc-filled_T1w.nii.gz")
    assert (out2 / name).read_bytes() == (out / name).read_bytes()
    out3 = tmp_path / "out3"
    assert _bidsfill(tiny_bids, out3, tmp_path / "w3", "--participant-label", "02",
                     "--derivatives", deriv, "--nprocs", "1", "--seed", "8") == 0  # fmt: skip
    assert (out3 / name).read_bytes() != (out / name).read_bytes()


@pytest.mark.slow
def test_empty_mask_copies_input_through(tiny_bids, tmp_path):
    from conftest import save

    roi = tiny_bids / "sub-01" / "ses-1" / "anat" / "sub-01_ses-1_label-lesion_roi.nii.gz"
    save(np.zeros((24, 28, 24)), roi, np.uint8)
    out = tmp_path / "out"
    assert _bidsfill(tiny_bids, out, tmp_path / "w", "--participant-label", "01",
                     "--session-label", "1", "--nprocs", "1") == 0  # fmt: skip
    src = tiny_bids / "sub-01" / "ses-1" / "anat" / "sub-01_ses-1_T1w.nii.gz"
    filled = out / "sub-01" / "ses-1" / "anat" / "sub-01_ses-1_desc-filled_T1w.nii.gz"
    assert np.array_equal(raw_data(nib.load(str(filled))), raw_data(nib.load(str(src))))
    assert "empty" in (out / "sub-01.html").read_text()


@pytest.mark.slow
def test_failed_node_writes_text_crash_file_and_no_outputs(tiny_bids, tmp_path, capsys):
    """FSL is not installed here, so --method fsl fails inside the fill node."""
    import shutil

    if shutil.which("lesion_filling"):
        pytest.skip("FSL is installed; the fsl method would succeed")
    plugin = tmp_path / "plugin.yml"
    plugin.write_text("plugin: Linear\nplugin_args: {}\n")
    out = tmp_path / "out"
    code = run([str(tiny_bids), str(out), "participant", "-w", str(tmp_path / "w"),
                "--participant-label", "01", "--session-label", "1", "--method", "fsl",
                "--use-plugin", str(plugin), "--skip-bids-validation"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1
    assert "crash files are in" in err and "Traceback" not in err
    crashes = list((out / "sub-01" / "log").glob("*/crash-*.txt"))
    assert crashes and "lesion_filling is not on PATH" in crashes[0].read_text()
    assert not list(out.rglob("*_desc-filled_T1w.nii.gz"))


@pytest.mark.slow
def test_diffusion_run_records_provenance_and_std(tiny_bids, tmp_path):
    """The shipped pseudo3d weights through the CLI: sidecar provenance and desc-fillstd."""
    from bidsfill.diffusion.weights import default_model_path, file_sha256

    weights = default_model_path("pseudo3d")
    if weights is None:
        pytest.skip("no shipped pseudo3d weights")
    out = tmp_path / "out"
    code = _bidsfill(tiny_bids, out, tmp_path / "w", "--participant-label", "02",
                     "--derivatives", tmp_path / "lesions", "--method", "pseudo3d",
                     "--steps", "3", "--n-samples", "2", "--feather", "--device", "cpu",
                     "--nprocs", "1")  # fmt: skip
    assert code == 0
    anat = out / "sub-02" / "anat"
    meta = json.loads((anat / "sub-02_desc-filled_T1w.json").read_text())
    assert meta["Method"] == "pseudo3d" and meta["Device"] == "cpu"
    assert meta["Sampler"] == "ddim" and meta["Steps"] == 3 and meta["NSamples"] == 2
    assert meta["ModelSHA256"] == file_sha256(weights) and meta["Feather"] is True
    std = nib.load(str(anat / "sub-02_desc-fillstd_T1w.nii.gz")).get_fdata()
    mask = np.asarray(nib.load(str(anat / "sub-02_label-lesion_mask.nii.gz")).dataobj) > 0
    assert (std[mask] > 0).any() and not std[~mask].any()
    src = nib.load(str(tiny_bids / "sub-02" / "anat" / "sub-02_T1w.nii.gz"))
    filled = nib.load(str(anat / "sub-02_desc-filled_T1w.nii.gz"))
    assert np.array_equal(raw_data(filled)[~mask], raw_data(src)[~mask])
