"""Nipype interfaces of missing-contrast synthesis: synthesise, then write the derivative."""

from __future__ import annotations

import json
from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    Directory,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)


class _SynthesizeInputSpec(BaseInterfaceInputSpec):
    sources = traits.List(File(exists=True), mandatory=True, desc="source images, one grid")
    source_contrasts = traits.List(traits.Str, mandatory=True, desc="contrast of each source")
    model = File(exists=True, mandatory=True, desc="synthesis weights (.safetensors + card)")
    seed = traits.Int(0, usedefault=True)
    steps = traits.Int(0, usedefault=True, desc="DDIM steps (0: the card's)")
    device = traits.Str("cpu", usedefault=True)
    omp_nthreads = traits.Int(1, usedefault=True)


class _SynthesizeOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="the synthetic contrast, on the first source's grid")
    out_info = File(exists=True, desc="JSON: the model and how it was run")


class SynthesizeContrast(SimpleInterface):
    """cWDM synthesis of one missing contrast (:func:`bidsfill.synthesis.sample.synthesize_files`)."""

    input_spec = _SynthesizeInputSpec
    output_spec = _SynthesizeOutputSpec

    def _run_interface(self, runtime):
        import time

        import torch

        from bidsfill.diffusion.inference import resolve_device
        from bidsfill.synthesis.sample import synthesize_files

        torch.set_num_threads(max(1, self.inputs.omp_nthreads))
        out = Path(runtime.cwd) / "synthetic.nii.gz"
        t0 = time.monotonic()
        device = resolve_device(self.inputs.device)
        card = synthesize_files(
            self.inputs.model,
            dict(zip(self.inputs.source_contrasts, self.inputs.sources, strict=True)),
            out,
            steps=self.inputs.steps or None,
            seed=self.inputs.seed,
            device=device,
        )
        info = {
            "Description": f"Synthetic {card.target} from {', '.join(card.sources)} by a "
            "conditional wavelet diffusion model (cWDM); not an acquired image.",
            "Synthetic": True,
            "SynthesisModel": {"Name": card.name, "Sha256": card.sha256,
                               "Architecture": "wdm3d (cWDM, Friedrich et al. 2024)",
                               "TrainingSubjects": len(card.training.get("training_data", []))},
            "Sampling": {"Sampler": "ddim", "Steps": self.inputs.steps or card.steps,
                         "Seed": self.inputs.seed, "Device": str(device)},
            "IntensityRule": "each source clipped at its 0.1/99.9 percentiles and scaled to "
            "[0, 1]; the output mapped linearly onto the target's reference range "
            f"{card.target_range.to_list()} (median over the training subjects); "
            "arbitrary scanner-like units",
            "SynthesisSeconds": round(time.monotonic() - t0, 2),
        }  # fmt: skip
        info_file = Path(runtime.cwd) / "synthesis.json"
        info_file.write_text(json.dumps(info, indent=2))
        self._results["out_file"] = str(out)
        self._results["out_info"] = str(info_file)
        return runtime


class _WriteSynthesisInputSpec(BaseInterfaceInputSpec):
    output_dir = Directory(mandatory=True, desc="root of the derivatives dataset")
    bids_dir = Directory(exists=True, mandatory=True, desc="root of the raw dataset")
    target = traits.Str(mandatory=True, desc="BIDS suffix written")
    sources = traits.List(File(exists=True), mandatory=True, desc="source images as found")
    in_file = File(exists=True, mandatory=True)
    info = File(exists=True, mandatory=True)


class _WriteSynthesisOutputSpec(TraitedSpec):
    out_file = File(exists=True)


class WriteSynthesis(SimpleInterface):
    """Write ``<entities>_desc-synthetic_<target>`` and its sidecar from the outputs table."""

    input_spec = _WriteSynthesisInputSpec
    output_spec = _WriteSynthesisOutputSpec

    def _run_interface(self, runtime):
        from bidsfill.bids.derivatives import bids_uri
        from bidsfill.bids.outputs import source_entities, write_synthesis

        inp = self.inputs
        ents = source_entities(inp.sources[0], inp.bids_dir)
        session_entities = {k: ents[k] for k in ("subject", "session") if k in ents}
        uris = [bids_uri(p, inp.bids_dir) for p in inp.sources]
        info = json.loads(Path(inp.info).read_text())
        from bidsfill.io.nifti import load_image
        from bidsfill.segment import looks_skull_stripped

        src = load_image(inp.sources[0])  # the output is 0 where the sources are
        info = {"SkullStripped": bool(looks_skull_stripped(src.data, src.affine)), **info}
        out = write_synthesis(Path(inp.output_dir), session_entities, inp.target, inp.in_file,
                              uris, info)  # fmt: skip
        self._results["out_file"] = str(out)
        return runtime
