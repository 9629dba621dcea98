"""Nipype interface: the per-subject HTML report (thin wrapper of report.subject)."""

from __future__ import annotations

import json
from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    Directory,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from bidsfill.report.subject import write_subject_report


class _SubjectReportInputSpec(BaseInterfaceInputSpec):
    subject = traits.Str(mandatory=True, desc="subject label")
    output_dir = Directory(mandatory=True, desc="derivatives root")
    summaries = traits.List(File(exists=True), mandatory=True, desc="run summaries (JSON)")
    warnings = traits.List(traits.Str, desc="discovery warnings")
    log_dir = traits.Str("", usedefault=True, desc="log dir of this run")
    config_file = traits.Str("", usedefault=True, desc="config TOML of this run")
    synthetic = InputMultiObject(
        File(exists=True),
        desc="synthetic images written for the subject: the report, which finds them in "
        "the output dataset, waits for them",
    )


class _SubjectReportOutputSpec(TraitedSpec):
    out_report = File(exists=True, desc="sub-X.html")


class SubjectReport(SimpleInterface):
    """Write ``sub-X.html`` and its figures from the run summaries of one subject."""

    input_spec = _SubjectReportInputSpec
    output_spec = _SubjectReportOutputSpec

    def _run_interface(self, runtime):
        summaries = [json.loads(Path(p).read_text()) for p in self.inputs.summaries]
        out = write_subject_report(
            subject=self.inputs.subject,
            output_dir=Path(self.inputs.output_dir),
            summaries=summaries,
            warnings=list(self.inputs.warnings),
            log_dir=Path(self.inputs.log_dir) if self.inputs.log_dir else None,
            config_file=Path(self.inputs.config_file) if self.inputs.config_file else None,
        )
        self._results["out_report"] = str(out)
        return runtime
