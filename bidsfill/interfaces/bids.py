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

from bidsfill.bids.derivatives import bids_uri, linked_dataset_name
from bidsfill.bids.outputs import (
    OUTPUTS,
    RunRecord,
    output_path,
    read_run_summary,
    source_entities,
    write_run,
)


class _WriteRunDerivativesInputSpec(BaseInterfaceInputSpec):
    output_dir = Directory(mandatory=True, desc="root of the derivatives dataset")
    bids_dir = Directory(exists=True, mandatory=True, desc="root of the raw dataset")
    source_file = File(exists=True, mandatory=True, desc="the raw T1w")
    mask_source = File(exists=True, mandatory=True, desc="the lesion mask as found")
    mask_origin = traits.Str("raw", usedefault=True, desc="raw or derivatives:<path>")
    references = traits.List(File(exists=True), desc="the session's FLAIR/T2w as found")
    reference_suffixes = traits.List(traits.Str, desc="BIDS suffix of each reference")
    synthetic = File(
        exists=True,
        desc="a synthetic image (--synthesize) in the output "
        "dataset, conditioning the fill in place of the session's own",
    )
    synthetic_suffix = traits.Str(desc="BIDS suffix of the synthetic image")
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
    """Copy a run's results into the derivatives dataset, one file per row of ``OUTPUTS``.

    The summary it returns is read back from the written files, as ``--reports-only``
    reads it, so the reports see one schema (``bidsfill.bids.outputs.RunSummary``).
    """

    input_spec = _WriteRunDerivativesInputSpec
    output_spec = _WriteRunDerivativesOutputSpec

    def _run_interface(self, runtime):
        inp = self.inputs
        out_dir = Path(inp.output_dir)
        if inp.mask_origin.startswith("derivatives:"):
            # Named as the output's DatasetLinks name that dataset (deriv0, deriv1, ...).
            root = inp.mask_origin.split(":", 1)[1]
            mask_uri = bids_uri(inp.mask_source, root, linked_dataset_name(out_dir, root))
        else:
            mask_uri = bids_uri(inp.mask_source, inp.bids_dir)
        mask_info = json.loads(Path(inp.mask_info).read_text())
        segmentation = {
            desc: json.loads(Path(info).read_text())
            for desc, info in (("orig", inp.seg_info_orig), ("filled", inp.seg_info_filled))
            if isdefined(info)
        }
        uris = {s: bids_uri(p, inp.bids_dir) for s, p in zip(inp.reference_suffixes or [],
                                                            inp.references or [], strict=True)}  # fmt: skip
        synthetic: tuple[str, ...] = ()
        if isdefined(inp.synthetic) and isdefined(inp.synthetic_suffix):
            # A derivative of this very dataset: its BIDS URI has an empty dataset name.
            uris[inp.synthetic_suffix] = bids_uri(inp.synthetic, out_dir, "")
            synthetic = (inp.synthetic_suffix,)
        run = RunRecord(
            skull_stripped=self._skull_stripped(),
            fill=json.loads(Path(inp.fill_info).read_text()),
            mask=mask_info,
            segmentation=segmentation,
            uris={**uris, "raw": bids_uri(inp.source_file, inp.bids_dir), "lesion": mask_uri},
            synthetic=synthetic,
        )
        entities = source_entities(inp.source_file, inp.bids_dir)
        written = write_run(out_dir, entities, run, {row.key: self._image(row) for row in OUTPUTS})
        summary = read_run_summary(
            out_dir,
            out_dir / output_path("filled", entities, ".json"),
            warnings=mask_info.get("Warnings", []),
            bids_dir=inp.bids_dir,
        )
        out_summary = Path(runtime.cwd) / "run_summary.json"
        out_summary.write_text(json.dumps(summary.to_dict(), indent=2, default=str))
        self._results["out_files"] = [str(p) for p in written]
        self._results["out_summary"] = str(out_summary)
        return runtime

    def _image(self, row) -> str | None:
        """The input file of one row of the outputs table (None when undefined)."""
        value = getattr(self.inputs, row.input)
        if not isdefined(value) or not value:
            return None
        return value[row.index] if row.index is not None else value

    def _skull_stripped(self) -> bool:
        if isdefined(self.inputs.skull_stripped):
            return bool(self.inputs.skull_stripped)
        # No brain-mask node (--skip-segmentation): the same test, without the mask.
        from bidsfill.io.nifti import load_image
        from bidsfill.segment import looks_skull_stripped

        t1w = load_image(self.inputs.source_file)
        return looks_skull_stripped(t1w.data, t1w.affine)
