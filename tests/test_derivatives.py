"""The derivatives dataset of a real run: names from the outputs table, the official BIDS
validator, BIDS URIs that resolve through DatasetLinks, and one run-summary schema."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pytest
from conftest import lesion_mask, make_lesioned, save, write_description
from official_validator import validator_errors

from bidsfill.bids.outputs import OUTPUTS, output_path, source_entities
from bidsfill.cli.run import run
from bidsfill.report.rebuild import summary_from_outputs


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> dict[str, Path]:
    """Participant and group levels on two subjects: sub-01 has two runs with raw roi masks,
    sub-02's mask comes from a --derivatives dataset in a folder named ``lesions``."""
    tmp = tmp_path_factory.mktemp("derivatives")
    bids, deriv, out, work = tmp / "bids", tmp / "lesions", tmp / "out", tmp / "work"
    write_description(bids)
    (bids / "participants.tsv").write_text("participant_id\nsub-01\nsub-02\n")
    for k in (1, 2):
        anat = bids / "sub-01" / "ses-1" / "anat"
        save(make_lesioned(k), anat / f"sub-01_ses-1_run-{k}_T1w.nii.gz")
        save(lesion_mask(), anat / f"sub-01_ses-1_run-{k}_label-lesion_roi.nii.gz", np.uint8)
    (bids / ".bidsignore").write_text("*_roi.nii.gz\n")
    save(make_lesioned(3), bids / "sub-02" / "anat" / "sub-02_T1w.nii.gz")
    write_description(deriv, derivative=True)
    save(lesion_mask(), deriv / "sub-02" / "anat" / "sub-02_desc-lesion_mask.nii.gz", np.uint8)
    code = run([str(bids), str(out), "participant", "-w", str(work), "--derivatives",
                str(deriv), "--method", "ring", "--nprocs", "1", "--seed", "3"])  # fmt: skip
    assert code == 0
    assert run([str(bids), str(out), "group"]) == 0
    return {"bids": bids, "deriv": deriv, "out": out, "work": work}


def test_official_validator_finds_no_error(outputs):
    out = outputs["out"]
    # Everything the validator must skip is there, so the test covers .bidsignore.
    for path in ("sub-01/log", "sub-01/figures", "sub-01.html", "logs", "group_T1w.tsv"):
        assert (out / path).exists(), path
    assert validator_errors(out) == []


def _resolve(uri: str, out: Path) -> Path:
    """The file a ``bids:<dataset>:<path>`` URI names, through the output's DatasetLinks."""
    _, name, rel = uri.split(":", 2)
    if not name:
        return out / rel
    links = json.loads((out / "dataset_description.json").read_text())["DatasetLinks"]
    assert name in links, f"{uri}: no dataset {name!r} in DatasetLinks {sorted(links)}"
    return Path(unquote(urlparse(links[name]).path)) / rel


def test_bids_uris_resolve_through_dataset_links(outputs):
    out = outputs["out"]
    sidecars = sorted(out.glob("sub-*/**/anat/*.json"))
    assert sidecars
    for sidecar in sidecars:
        meta = json.loads(sidecar.read_text())
        for uri in meta.get("Sources", []) + meta.get("RawSources", []):
            assert _resolve(uri, out).is_file(), f"{sidecar.name}: {uri}"
    mask = json.loads((out / "sub-02" / "anat" / "sub-02_label-lesion_mask.json").read_text())
    # The --derivatives dataset is "deriv0" in DatasetLinks, whatever its folder is called.
    assert mask["RawSources"] == ["bids:deriv0:sub-02/anat/sub-02_desc-lesion_mask.nii.gz"]
    assert _resolve(mask["RawSources"][0], out).samefile(
        outputs["deriv"] / "sub-02" / "anat" / "sub-02_desc-lesion_mask.nii.gz"
    )


def test_the_report_summary_is_the_one_read_back_from_the_files(outputs):
    """The summary the workflow hands the report and the one ``--reports-only`` rebuilds
    are the same, but for the alignment warnings that only the run knows."""
    out = outputs["out"]
    written = sorted(outputs["work"].rglob("ds_run/run_summary.json"))
    assert len(written) == 3
    for path in written:
        summary = json.loads(path.read_text())
        sidecar = out / Path(summary["files"][0]).with_suffix("").with_suffix(".json")
        rebuilt = summary_from_outputs(out, sidecar)
        summary["mask"]["Warnings"] = []
        assert rebuilt == summary
        assert len(summary["files"]) == 10 and set(summary["segmentation"]) == {"orig", "filled"}
        assert summary["bids_dir"] == str(outputs["bids"].resolve())


def test_output_names_follow_the_source_entities(tmp_path):
    source = tmp_path / "sub-01" / "ses-2" / "anat" / "sub-01_ses-2_acq-mp2_run-02_T1w.nii.gz"
    entities = source_entities(source, tmp_path)
    stem = "sub-01/ses-2/anat/sub-01_ses-2_acq-mp2_run-02"
    names = {row.key: output_path(row, entities) for row in OUTPUTS}
    assert names["filled"] == f"{stem}_desc-filled_T1w.nii.gz"
    assert names["mask"] == f"{stem}_label-lesion_mask.nii.gz"
    assert names["probseg_orig_WM"] == f"{stem}_label-WM_desc-orig_probseg.nii.gz"
    assert output_path("dseg_filled", entities, ".json") == f"{stem}_desc-filled_dseg.json"
    assert len(set(names.values())) == len(OUTPUTS) == 11


def test_a_source_entity_the_names_cannot_hold_is_refused(tmp_path):
    """An entity pybids does not parse would be dropped from every output name; entities
    out of the BIDS order are put in order."""
    source = tmp_path / "sub-01" / "anat" / "sub-01_foo-bar_T1w.nii.gz"
    with pytest.raises(ValueError, match="cannot name derivatives"):
        source_entities(source, tmp_path)
    unordered = tmp_path / "sub-01" / "anat" / "sub-01_run-1_acq-x_T1w.nii.gz"
    name = output_path("mask", source_entities(unordered, tmp_path))
    assert name == "sub-01/anat/sub-01_acq-x_run-1_label-lesion_mask.nii.gz"
