"""Nipype interface: fill the lesions of one T1w (thin wrapper of fill.fill_image)."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from bidsfill.diffusion.card import CONTRAST_CHANNELS
from bidsfill.fill import fill_image
from bidsfill.fill.methods import fill_method
from bidsfill.io.nifti import load_image, load_mask, write_like


@contextlib.contextmanager
def _crop_progress_on_terminal(label: str) -> Iterator[None]:
    """Show the fill's crop progress (crops done, ETA) when stderr is a terminal.

    The fill logs it at INFO level, which the default console hides; the node may run in a
    MultiProc worker, whose logging is not the CLI's. On a terminal this process prints
    those lines itself, prefixed with the subject's file; in a log file they stay hidden
    (the CLI prints one line per node there).
    """
    logger = logging.getLogger("bidsfill.fill.diffusion")
    if not sys.stderr.isatty() or logger.isEnabledFor(logging.INFO):
        yield  # no terminal, or -v already shows them
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"%(asctime)s bidsfill: {label}: %(message)s",
                                           datefmt="%H:%M:%S"))  # fmt: skip
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # the root handler would print them a second time
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


class _FillLesionsInputSpec(BaseInterfaceInputSpec):
    t1w = File(exists=True, mandatory=True, desc="the T1w image")
    mask = File(exists=True, mandatory=True, desc="binary lesion mask on the T1w grid")
    method = traits.Str("nawm", usedefault=True, desc="registered fill method")
    seed = traits.Int(0, usedefault=True, desc="seed of every random draw")
    params = traits.Dict(desc="method parameters (sampler, steps, n_samples, model, device...)")
    use_gpu = traits.Bool(
        False, usedefault=True, desc="this node runs on a GPU (counted by MultiProc's GPU slots)"
    )
    omp_nthreads = traits.Int(1, usedefault=True, nohash=True, desc="CPU threads")
    references = InputMultiObject(
        File(exists=True), desc="same-session FLAIR/T2w on the T1w grid (model conditioning)"
    )
    reference_suffixes = traits.List(traits.Str, desc="BIDS suffix of each reference")


class _FillLesionsOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="filled T1w, header/dtype of the input")
    out_std = File(desc="voxelwise standard deviation across samples (n_samples > 1)")
    out_info = File(exists=True, desc="JSON: method, parameters, device, seconds")


class FillLesions(SimpleInterface):
    """Fill the lesion mask of a T1w; every voxel outside the mask keeps its bytes."""

    input_spec = _FillLesionsInputSpec
    output_spec = _FillLesionsOutputSpec

    def _run_interface(self, runtime):
        t1w = load_image(self.inputs.t1w)
        mask, _ = load_mask(self.inputs.mask)
        inside = mask.data > 0.5
        params = dict(self.inputs.params) if isdefined(self.inputs.params) else {}
        if fill_method(self.inputs.method).uses_model:
            params.setdefault("omp_nthreads", self.inputs.omp_nthreads)
            if not self.inputs.use_gpu:  # no GPU slot was counted for this node
                params["device"] = "cpu"
            extra = self._extra_images()
            if extra:
                params["extra_images"] = extra
        label = Path(self.inputs.t1w).name.split(".")[0]
        with _crop_progress_on_terminal(label):
            result = fill_image(
                t1w.data,
                inside,
                method=self.inputs.method,
                zooms=t1w.zooms,
                seed=self.inputs.seed,
                affine=t1w.affine,
                **params,
            )
        out_file = Path(runtime.cwd) / "filled_T1w.nii.gz"
        write_like(t1w.img, out_file, values=result.filled, inside=inside)
        if result.std is not None:
            out_std = Path(runtime.cwd) / "fillstd_T1w.nii.gz"
            std_img = t1w.img.__class__(result.std.astype("float32"), t1w.img.affine)
            std_img.header.set_xyzt_units(*t1w.img.header.get_xyzt_units())
            std_img.to_filename(str(out_std))
            self._results["out_std"] = str(out_std)
        info = {
            "Method": self.inputs.method,
            "Seed": int(self.inputs.seed),
            "FillSeconds": round(result.seconds, 3),
            "Device": result.device,
            "MethodParameters": {
                k: v for k, v in result.params.items() if not isinstance(v, dict | list)
            },
        }
        info.update({k: v for k, v in result.params.items() if k[:1].isupper()})
        if "ConditioningImages" in info:  # channels -> the BIDS suffixes of their images
            info["ConditioningImages"] = [
                CONTRAST_CHANNELS.get(c, c) for c in info["ConditioningImages"]
            ]
        out_info = Path(runtime.cwd) / "fill_info.json"
        out_info.write_text(json.dumps(info, indent=2, default=str))
        self._results["out_file"] = str(out_file)
        self._results["out_info"] = str(out_info)
        return runtime

    def _extra_images(self) -> dict:
        """The references as the model's contrast channels (``{"flair": array}``)."""
        channel = {suffix: name for name, suffix in CONTRAST_CHANNELS.items()}
        suffixes = (
            self.inputs.reference_suffixes if isdefined(self.inputs.reference_suffixes) else []
        )
        paths = self.inputs.references if isdefined(self.inputs.references) else []
        return {
            channel[suffix]: load_image(path, what=f"{suffix} image").data
            for suffix, path in zip(suffixes, paths, strict=True)
            if suffix in channel
        }
