"""Nipype interfaces: brain mask and GM/WM/CSF segmentation (thin wrappers of segment/)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from bidsfill.io.nifti import load_image, load_mask, save_new
from bidsfill.segment.tissues import LABELS

_CLASSES = tuple(LABELS)  # GM, WM, CSF: the BIDS dseg order


class _BrainMaskInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="T1w image")
    seed = traits.Int(0, usedefault=True, desc="seed of the MNI registration (heads only)")


class _BrainMaskOutputSpec(TraitedSpec):
    out_mask = File(exists=True, desc="brain mask (uint8)")
    skull_stripped = traits.Bool(desc="whether the input already looked skull-stripped")


class BrainMask(SimpleInterface):
    """Estimate the brain mask and whether the T1w is skull-stripped."""

    input_spec = _BrainMaskInputSpec
    output_spec = _BrainMaskOutputSpec

    def _run_interface(self, runtime):
        from bidsfill.segment import estimate_brain_mask

        t1w = load_image(self.inputs.in_file)
        mask, stripped = estimate_brain_mask(t1w.data, t1w.affine, seed=self.inputs.seed)
        out = Path(runtime.cwd) / "brain_mask.nii.gz"
        save_new(np.asarray(mask, dtype=np.uint8), t1w.img, out, np.uint8)
        self._results["out_mask"] = str(out)
        self._results["skull_stripped"] = bool(stripped)
        return runtime


class _SegmentTissuesInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="T1w image (original or filled)")
    brain_mask = File(exists=True, desc="brain mask")
    seed = traits.Int(0, usedefault=True, desc="segmentation seed")
    omp_nthreads = traits.Int(1, usedefault=True, nohash=True, desc="threads")


class _SegmentTissuesOutputSpec(TraitedSpec):
    out_dseg = File(exists=True, desc="dseg: 1 GM, 2 WM, 3 CSF")
    out_probseg = traits.List(File(exists=True), desc="GM, WM, CSF probability maps")
    out_info = File(exists=True, desc="JSON: segmenter and tissue volumes (ml)")


class SegmentTissues(SimpleInterface):
    """Three-class tissue segmentation with FSL FAST when on PATH, else ANTs Atropos."""

    input_spec = _SegmentTissuesInputSpec
    output_spec = _SegmentTissuesOutputSpec

    def _run_interface(self, runtime):
        from bidsfill.segment import segment_tissues

        t1w = load_image(self.inputs.in_file)
        brain = None
        if isdefined(self.inputs.brain_mask):
            brain = load_mask(self.inputs.brain_mask)[0].data > 0.5
        seg = segment_tissues(
            t1w.data,
            t1w.affine,
            brain_mask=brain,
            seed=self.inputs.seed,
            n_threads=self.inputs.omp_nthreads,
        )
        cwd = Path(runtime.cwd)
        save_new(seg.dseg.astype(np.uint8), t1w.img, cwd / "dseg.nii.gz", np.uint8)
        probs = []
        for name in _CLASSES:
            path = cwd / f"probseg_{name}.nii.gz"
            save_new(seg.probseg[name].astype(np.float32), t1w.img, path, np.float32)
            probs.append(str(path))
        voxel_ml = float(np.prod(t1w.zooms)) / 1000.0
        info = {
            "Segmenter": seg.segmenter,
            "TissueVolumesML": {
                name: round(float((seg.dseg == i + 1).sum()) * voxel_ml, 3)
                for i, name in enumerate(_CLASSES)
            },
        }
        (cwd / "seg_info.json").write_text(json.dumps(info, indent=2))
        self._results.update(
            out_dseg=str(cwd / "dseg.nii.gz"),
            out_probseg=probs,
            out_info=str(cwd / "seg_info.json"),
        )
        return runtime
