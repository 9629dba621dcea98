"""Nipype interface: put the lesion mask on the T1w grid (thin wrapper of io.align), and
the FLAIR/T2w the fill is conditioned on with it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)
from scipy import ndimage

from bidsfill.io.align import align_mask, dilate_mask
from bidsfill.io.nifti import load_image, load_mask, save_new


class _AlignLesionMaskInputSpec(BaseInterfaceInputSpec):
    t1w = File(exists=True, mandatory=True, desc="the T1w image")
    mask = File(exists=True, mandatory=True, desc="the lesion mask as found")
    references = InputMultiObject(File(exists=True), desc="same-session FLAIR/T2w images")
    reference_suffixes = traits.List(traits.Str, desc="BIDS suffix of each reference")
    dilate = traits.Int(0, usedefault=True, desc="grow the mask by this many voxels")
    mask_threshold = traits.Float(desc="binarise a non-binary mask: voxels >= this are lesion")
    seed = traits.Int(0, usedefault=True, desc="registration seed")
    resample = traits.List(
        traits.Str, desc="suffixes of references to put on the T1w grid (the fill's contrasts)"
    )


class _AlignLesionMaskOutputSpec(TraitedSpec):
    out_mask = File(exists=True, desc="binary lesion mask on the T1w grid (uint8)")
    out_info = File(exists=True, desc="JSON: alignment method, warnings, lesion count/volume")
    out_references = traits.List(File(exists=True), desc="references on the T1w grid (float32)")
    out_reference_suffixes = traits.List(traits.Str, desc="BIDS suffix of each out_reference")
    out_transforms = traits.List(File(exists=True), desc="reference-to-T1w transform files")


class AlignLesionMask(SimpleInterface):
    """Align (and optionally dilate) a lesion mask to its T1w."""

    input_spec = _AlignLesionMaskInputSpec
    output_spec = _AlignLesionMaskOutputSpec

    def _run_interface(self, runtime):
        t1w = load_image(self.inputs.t1w)
        threshold = self.inputs.mask_threshold if isdefined(self.inputs.mask_threshold) else None
        mask, warnings = load_mask(self.inputs.mask, threshold=threshold)
        refs = []
        suffixes = self.inputs.reference_suffixes or []
        for i, path in enumerate(self.inputs.references or []):
            suffix = suffixes[i] if i < len(suffixes) else "reference"
            refs.append((suffix, load_image(path, what=f"{suffix} image")))
        aligned = align_mask(
            t1w, mask, references=refs, seed=self.inputs.seed,
            resample=list(self.inputs.resample or []), transform_dir=Path(runtime.cwd),
        )  # fmt: skip
        data = dilate_mask(aligned.mask, self.inputs.dilate)
        warnings += aligned.warnings
        if self.inputs.dilate:
            warnings.append(f"The lesion mask was dilated by {self.inputs.dilate} voxel(s).")
        if not data.any():
            warnings.append("The lesion mask is empty; the T1w is copied through unchanged.")
        _, count = ndimage.label(data, structure=np.ones((3, 3, 3)))
        voxel_ml = float(np.prod(t1w.zooms)) / 1000.0
        out_mask = Path(runtime.cwd) / "lesion_mask.nii.gz"
        save_new(data.astype(np.uint8), t1w.img, out_mask, np.uint8)
        info = {
            "MaskAlignment": aligned.method,
            "LesionCount": int(count),
            "LesionVolumeML": round(float(data.sum()) * voxel_ml, 4),
            "Dilation": int(self.inputs.dilate),
            "Warnings": warnings,
        }
        if aligned.reference_alignment:
            info["ReferenceAlignment"] = aligned.reference_alignment
        out_refs = []
        for suffix, moved in aligned.references.items():
            path = Path(runtime.cwd) / f"{suffix}_on_T1w.nii.gz"
            save_new(moved.astype(np.float32), t1w.img, path, np.float32)
            out_refs.append(str(path))
        self._results["out_references"] = out_refs
        self._results["out_reference_suffixes"] = list(aligned.references)
        self._results["out_transforms"] = [str(p) for ps in aligned.transforms.values() for p in ps]
        out_info = Path(runtime.cwd) / "mask_info.json"
        out_info.write_text(json.dumps(info, indent=2))
        self._results["out_mask"] = str(out_mask)
        self._results["out_info"] = str(out_info)
        return runtime
