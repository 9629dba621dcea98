"""The held-out MS and glioma patients as coarse scans, to decide on what the default does
with 1.6-2 mm data without looking at the scorecard.

    python benchmarks/make_coarse_patients.py [--out runs/coarse-patients]

Writes a small BIDS dataset: each patient's T1w blurred to the point spread of the
coarser voxel (a Gaussian of FWHM equal to the new voxel size, less the 1 mm already
there) and resampled onto a grid of that voxel size (linear), its lesion mask
nearest-neighbour. sub-ms07 and sub-ms26 get 1.6 mm voxels, sub-ms19 and sub-tcgadu7294
2 mm (the voxel sizes of two held-out scorecard scans, which are not used here).
``bench_correction_gate.py --dataset runs/coarse-patients`` fills them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.processing import resample_to_output
from scipy import ndimage

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "multicontrast"
VOXELS = {"ms07": 1.6, "ms26": 1.6, "ms19": 2.0, "tcgadu7294": 2.0}


def coarse(img: nib.Nifti1Image, mm: float, order: int) -> nib.Nifti1Image:
    data = np.asarray(img.dataobj, dtype=np.float32)
    if order:
        zooms = np.asarray(img.header.get_zooms()[:3], float)
        sigma = np.sqrt(np.maximum(mm**2 - zooms**2, 0.0)) / 2.3548 / zooms
        data = ndimage.gaussian_filter(data, sigma)
    out = resample_to_output(nib.Nifti1Image(data, img.affine), (mm,) * 3, order=order)
    data = np.asarray(out.dataobj)
    dtype = np.float32 if order else np.uint8
    return nib.Nifti1Image(np.clip(data, 0, None).astype(dtype), out.affine)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "coarse-patients")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "dataset_description.json").write_text(json.dumps({
        "Name": "bidsfill held-out patients at coarse resolution", "BIDSVersion": "1.9.0",
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "benchmarks/make_coarse_patients.py"}],
    }, indent=2))  # fmt: skip
    for sub, mm in VOXELS.items():
        anat = args.out / f"sub-{sub}" / "anat"
        anat.mkdir(parents=True, exist_ok=True)
        for suffix, order in (("T1w", 1), ("label-lesion_roi", 0)):
            src = DATA / f"sub-{sub}" / "anat" / f"sub-{sub}_{suffix}.nii.gz"
            img = coarse(nib.load(src), mm, order)
            nib.save(img, anat / src.name)
        print(f"sub-{sub}: {mm} mm, {img.shape}")


if __name__ == "__main__":
    main()
