"""A bidsfill output dataset written directly (no workflow run), for the report tests.

The files are named by the outputs table the writer uses and their sidecars have the keys
it writes, so the reports are built from the same inputs as after a real run, in a
fraction of the time.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import nibabel as nib
import numpy as np
from conftest import lesion_mask, phantom

from bidsfill.bids.derivatives import write_dataset_description
from bidsfill.bids.outputs import output_path, source_entities

CLASSES = ("GM", "WM", "CSF")


def _tissues(image: np.ndarray) -> np.ndarray:
    dseg = np.zeros(image.shape, np.uint8)
    dseg[image > 10] = 3
    dseg[image > 45] = 1
    dseg[image > 80] = 2
    return dseg


def _put(data: np.ndarray, ref: nib.Nifti1Image, path: Path, meta: dict, dtype=None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(np.asarray(data, dtype or ref.get_data_dtype()), ref.affine, ref.header)
    nib.save(img, str(path))
    path.with_name(path.name.replace(".nii.gz", ".json")).write_text(json.dumps(meta))


def _output(out: Path, entities: dict, key: str) -> Path:
    return out / output_path(key, entities)


def write_outputs(bids: Path, out: Path, derivatives: list[Path], method: str = "nawm",
                  with_std: bool = False) -> list[Path]:  # fmt: skip
    """Write filled T1w, mask, dseg/probseg (+ fillstd) for every T1w in ``bids`` that has
    a lesion in the tiny dataset; return the filled sidecars."""
    out.mkdir(parents=True, exist_ok=True)
    write_dataset_description(out, bids, derivatives)
    rng = np.random.default_rng(0)
    sidecars = []
    for t1w in sorted(bids.glob("sub-0[12]/**/anat/*_T1w.nii.gz")):
        ref = nib.load(str(t1w))
        original = np.asarray(ref.dataobj, np.float32)
        mask = lesion_mask()
        filled = original.copy()
        filled[mask] = 100 + rng.normal(0, 3, int(mask.sum()))  # like the phantom's WM
        entities = source_entities(t1w, bids)
        path = partial(_output, out, entities)
        voxel_ml = float(np.prod(ref.header.get_zooms()[:3])) / 1000
        lesion = {"MaskAlignment": "same-grid", "Dilation": 0, "LesionCount": 2,
                  "LesionVolumeML": round(float(mask.sum()) * voxel_ml, 3)}  # fmt: skip
        raw_uri = f"bids:raw:{t1w.relative_to(bids).as_posix()}"
        meta = {"SkullStripped": True, "Sources": [raw_uri], "Method": method, "Seed": 7,
                "FillSeconds": 0.5, "Device": "cpu", "MethodParameters": {"ring_mm": 8.0},
                **lesion}  # fmt: skip
        if method == "pseudo3d":
            meta.update(ModelName="bidsfill-pseudo3d-test", ModelSHA256="ab" * 32,
                        Sampler="ddim", Steps=10, NSamples=3)  # fmt: skip
        _put(filled, ref, path("filled"), meta)
        mask_uri = f"bids:raw:{t1w.relative_to(bids).as_posix().replace('_T1w', '_label-lesion_roi')}"  # fmt: skip
        _put(mask, ref, path("mask"),
             {"Type": "Lesion", "RawSources": [mask_uri], **lesion}, np.uint8)  # fmt: skip
        if with_std:
            std = np.where(mask, rng.uniform(1, 5, mask.shape), 0)
            _put(std, ref, path("fillstd"), {}, np.float32)
        truth = phantom(0)
        for desc, image in (("orig", original), ("filled", filled)):
            dseg = _tissues(np.where(truth > 0, image, 0))
            vols = {c: round(float((dseg == i).sum()) * voxel_ml, 3)
                    for i, c in enumerate(CLASSES, start=1)}  # fmt: skip
            _put(dseg, ref, path(f"dseg_{desc}"),
                 {"Segmenter": "ants-atropos", "TissueVolumesML": vols}, np.uint8)  # fmt: skip
            for i, c in enumerate(CLASSES, start=1):
                _put((dseg == i).astype(np.float32), ref, path(f"probseg_{desc}_{c}"),
                     {"Segmenter": "ants-atropos"}, np.float32)  # fmt: skip
        sidecars.append(out / output_path("filled", entities, ".json"))
    return sidecars
