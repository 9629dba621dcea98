"""Shared fixtures: tiny seeded BIDS datasets written into tmp_path."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

SHAPE = (24, 28, 24)


def phantom(seed: int = 0, shape=SHAPE) -> np.ndarray:
    """A brain-like phantom: CSF core, WM shell, GM rind, background 0, plus noise."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape).astype(np.float32)
    centre = (np.array(shape, dtype=np.float32) - 1) / 2
    r = np.sqrt((((grid.T - centre) / (centre * 0.85)) ** 2).sum(-1)).T
    img = np.zeros(shape, np.float32)
    img[r < 1.0] = 60.0  # GM
    img[r < 0.8] = 100.0  # WM
    img[r < 0.25] = 25.0  # CSF
    img[r < 1.0] += rng.normal(0, 3, size=int((r < 1.0).sum()))
    return img


def lesion_mask(shape=SHAPE, centres=((12, 9, 12), (8, 18, 12)), radius=2.2) -> np.ndarray:
    grid = np.indices(shape).astype(np.float32)
    mask = np.zeros(shape, bool)
    for c in centres:
        mask |= np.sqrt(((grid.T - np.array(c)) ** 2).sum(-1)).T <= radius
    return mask


def save(data: np.ndarray, path: Path, dtype=np.int16, affine=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(
        np.asarray(data).astype(dtype), np.diag([2.0, 2.0, 2.0, 1.0]) if affine is None else affine
    )
    img.header.set_xyzt_units("mm")
    nib.save(img, str(path))
    return path


def write_description(root: Path, derivative: bool = False) -> None:
    root.mkdir(parents=True, exist_ok=True)
    desc = {"Name": root.name, "BIDSVersion": "1.9.0"}
    if derivative:
        desc.update(DatasetType="derivative", GeneratedBy=[{"Name": "manual"}])
    (root / "dataset_description.json").write_text(json.dumps(desc))


def make_lesioned(seed: int) -> np.ndarray:
    img = phantom(seed)
    img[lesion_mask()] = 40.0
    return img


@pytest.fixture
def tiny_bids(tmp_path) -> Path:
    """sub-01 (ses-1, ses-2; raw roi masks), sub-02 (mask in derivatives), sub-03 (no mask)."""
    root = tmp_path / "bids"
    write_description(root)
    (root / "participants.tsv").write_text("participant_id\nsub-01\nsub-02\nsub-03\n")
    for ses in ("1", "2"):
        anat = root / "sub-01" / f"ses-{ses}" / "anat"
        save(make_lesioned(int(ses)), anat / f"sub-01_ses-{ses}_T1w.nii.gz")
        save(lesion_mask(), anat / f"sub-01_ses-{ses}_label-lesion_roi.nii.gz", np.uint8)
    save(make_lesioned(3), root / "sub-02" / "anat" / "sub-02_T1w.nii.gz", np.uint8)
    save(make_lesioned(4), root / "sub-03" / "anat" / "sub-03_T1w.nii.gz")
    deriv = tmp_path / "lesions"
    write_description(deriv, derivative=True)
    save(lesion_mask(), deriv / "sub-02" / "anat" / "sub-02_desc-lesion_mask.nii.gz", np.uint8)
    return root


def tree_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }
