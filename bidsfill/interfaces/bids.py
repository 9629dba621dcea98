"""Nipype interface: write every derivative of one T1w run at once.

All outputs of a run are written in one node, after every computation of the run has
finished, so a crash midway leaves no partial set of files that looks complete.
"""

from __future__ import annotations

import json
from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    Directory,
    File,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from bidsfill import __version__
from bidsfill.bids.derivatives import (
    bids_uri,
    derivative_dir,
    derivative_name,
    write_file,
    write_json,
)
from bidsfill.segment.tissues import LABELS

_CLASSES = tuple(LABELS)  # GM, WM, CSF: the BIDS dseg order


class _WriteRunDerivativesInputSpec(BaseInterfaceInputSpec):
    output_dir = Directory(mandatory=True, desc="root of the derivatives dataset")
    bids_dir = Directory(exists=True, mandatory=True, desc="root of the raw dataset")
    source_file = File(exists=True, mandatory=True, desc="the raw T1w")
    mask_source = File(exists=True, mandatory=True, desc="the lesion mask as found")
    mask_origin = traits.Str("raw", usedefault=True, desc="raw or derivatives:<path>")
    filled = File(exists=True, mandatory=True, desc="filled T1w")
    fill_std = File(desc="standard deviation map")
    mask = File(exists=True, mandatory=True, desc="mask used, T1w grid")
    mask_info = File(exists=True, mandatory=True, desc="alignment JSON")
    fill_info = File(exists=True, mandatory=True, desc="fill JSON")
    # The segmentations are left undefined with --skip-segmentation.
    dseg_orig = File(exists=True, desc="dseg of the original")
    dseg_filled = File(exists=True, desc="dseg of the filled image")
    probseg_orig = traits.List(File(exists=True), desc="GM/WM/CSF original")
    probseg_filled = traits.List(File(exists=True), desc="GM/WM/CSF filled")
    seg_info_orig = File(exists=True, desc="segmentation JSON, original")
    seg_info_filled = File(exists=True, desc="segmentation JSON, filled")
    skull_stripped = traits.Bool(desc="input looked skull-stripped (default: checked here)")


class _WriteRunDerivativesOutputSpec(TraitedSpec):
    out_files = traits.List(File(exists=True), desc="written files")
    out_summary = File(exists=True, desc="JSON summary of the run (for reports and group)")


class WriteRunDerivatives(SimpleInterface):
    """Copy a run's results into the derivatives dataset with BIDS names and sidecars."""

    input_spec = _WriteRunDerivativesInputSpec
    output_spec = _WriteRunDerivativesOutputSpec

    def _run_interface(self, runtime):
        inp = self.inputs
        out_dir = Path(inp.output_dir)
        src = inp.source_file
        anat = derivative_dir(out_dir, src)
        raw_uri = bids_uri(src, inp.bids_dir)
        if inp.mask_origin.startswith("derivatives:"):
            mask_root = inp.mask_origin.split(":", 1)[1]
            mask_uri = (
                f"bids:{Path(mask_root).name}:"
                + Path(inp.mask_source).resolve().relative_to(Path(mask_root).resolve()).as_posix()
            )
        else:
            mask_uri = bids_uri(inp.mask_source, inp.bids_dir)
        mask_info = json.loads(Path(inp.mask_info).read_text())
        fill_info = json.loads(Path(inp.fill_info).read_text())
        segmented = isdefined(inp.seg_info_orig) and isdefined(inp.seg_info_filled)
        seg = (
            {
                "orig": json.loads(Path(inp.seg_info_orig).read_text()),
                "filled": json.loads(Path(inp.seg_info_filled).read_text()),
            }
            if segmented
            else {}
        )
        if isdefined(inp.skull_stripped):
            skull_stripped = bool(inp.skull_stripped)
        else:  # no brain-mask node (--skip-segmentation): the same test, without the mask
            from bidsfill.io.nifti import load_image
            from bidsfill.segment import looks_skull_stripped

            t1w = load_image(src)
            skull_stripped = looks_skull_stripped(t1w.data, t1w.affine)
        written: list[str] = []

        def put(path, name, meta):
            dst = write_file(path, anat / name)
            write_json(meta, dst.with_name(name.replace(".nii.gz", ".json")))
            written.append(str(dst))
            return dst

        mask_name = derivative_name(src, label="lesion", suffix="mask")
        mask_uri_out = f"bids::{(anat / mask_name).relative_to(out_dir).as_posix()}"
        common = {"SkullStripped": bool(skull_stripped)}
        filled_meta = {
            **common,
            "Sources": [raw_uri, mask_uri_out],
            "BidsfillVersion": __version__,
            **fill_info,
            "MaskAlignment": mask_info["MaskAlignment"],
            "Dilation": mask_info["Dilation"],
            "LesionCount": mask_info["LesionCount"],
            "LesionVolumeML": mask_info["LesionVolumeML"],
        }
        put(inp.filled, derivative_name(src, desc="filled", suffix="T1w"), filled_meta)
        if isdefined(inp.fill_std) and inp.fill_std:
            put(
                inp.fill_std,
                derivative_name(src, desc="fillstd", suffix="T1w"),
                {**common, "Sources": [raw_uri, mask_uri_out], "Description":
                 "Voxelwise standard deviation of the independent diffusion fills."},
            )  # fmt: skip
        put(
            inp.mask,
            mask_name,
            {
                "Type": "Lesion",
                "Sources": [mask_uri, raw_uri],
                "RawSources": [mask_uri],
                "MaskAlignment": mask_info["MaskAlignment"],
                "Dilation": mask_info["Dilation"],
                "LesionCount": mask_info["LesionCount"],
                "LesionVolumeML": mask_info["LesionVolumeML"],
            },
        )
        segmentations = (
            (("orig", inp.dseg_orig, inp.probseg_orig),
             ("filled", inp.dseg_filled, inp.probseg_filled))
            if segmented
            else ()
        )  # fmt: skip
        for desc, dseg, probs in segmentations:
            image_uri = (
                raw_uri
                if desc == "orig"
                else "bids::"
                + (anat / derivative_name(src, desc="filled", suffix="T1w"))
                .relative_to(out_dir)
                .as_posix()
            )
            meta = {**common, "Sources": [image_uri], **seg[desc]}
            put(dseg, derivative_name(src, desc=desc, suffix="dseg"), meta)
            for name, prob in zip(_CLASSES, probs, strict=True):
                put(prob, derivative_name(src, label=name, desc=desc, suffix="probseg"),
                    {**common, "Sources": [image_uri], "Segmenter": seg[desc]["Segmenter"]})  # fmt: skip
        summary = {
            "bids_dir": str(Path(inp.bids_dir).resolve()),
            "source": str(Path(src).resolve().relative_to(Path(inp.bids_dir).resolve())),
            "mask_source": mask_uri,
            "filled": filled_meta,
            "mask": mask_info,
            "segmentation": seg,
            "files": [str(Path(f).relative_to(out_dir)) for f in written],
        }
        out_summary = Path(runtime.cwd) / "run_summary.json"
        out_summary.write_text(json.dumps(summary, indent=2, default=str))
        self._results["out_files"] = written
        self._results["out_summary"] = str(out_summary)
        return runtime
