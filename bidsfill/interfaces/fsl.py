"""Nipype interface to FSL's ``lesion_filling`` (thin: arguments in, one file out)."""

from __future__ import annotations

import os

from nipype.interfaces.base import (
    CommandLine,
    CommandLineInputSpec,
    File,
    TraitedSpec,
    isdefined,
)

__all__ = ["FSLLesionFilling"]


class _FSLLesionFillingInputSpec(CommandLineInputSpec):
    in_file = File(exists=True, mandatory=True, argstr="-i %s", desc="T1w image to fill")
    lesion_mask = File(exists=True, mandatory=True, argstr="-l %s", desc="binary lesion mask")
    out_file = File(
        argstr="-o %s",
        genfile=True,
        hash_files=False,
        desc="filled image (default: <in_file>_filled.nii.gz in the working directory)",
    )
    wm_mask = File(exists=True, argstr="-w %s", desc="white-matter mask (optional)")


class _FSLLesionFillingOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="filled image")


class FSLLesionFilling(CommandLine):
    """Run ``lesion_filling -i T1w -l lesions -o out [-w wm]`` (FSL >= 5.0.8)."""

    _cmd = "lesion_filling"
    input_spec = _FSLLesionFillingInputSpec
    output_spec = _FSLLesionFillingOutputSpec

    def _gen_filename(self, name: str) -> str | None:
        if name != "out_file":
            return None
        if isdefined(self.inputs.out_file):
            return os.path.abspath(self.inputs.out_file)
        base = os.path.basename(self.inputs.in_file)
        for ext in (".nii.gz", ".nii"):
            if base.endswith(ext):
                base = base[: -len(ext)]
                break
        return os.path.abspath(f"{base}_filled.nii.gz")

    def _list_outputs(self) -> dict:
        return {"out_file": self._gen_filename("out_file")}
