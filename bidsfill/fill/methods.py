"""Every built-in fill method, with what the run and the report must know about it.

One :class:`FillMethod` per ``--method``: its kind, whether it needs a model and a
device (and so may take a GPU slot), which sampling options it takes, its memory, the
methods text of the citation boilerplate and the papers it cites. The CLI, the
workflow, the fill node, the scorecard and the report ask this table instead of
keeping their own lists. It imports neither torch nor a filler, so ``bidsfill --help``
stays fast; the fillers themselves register in :mod:`bidsfill.fill.base`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bidsfill.diffusion.sampling import SamplingPlan

__all__ = ["FILL_METHODS", "FillMethod", "classical_methods", "fill_method"]

#: Sampling options every diffusion method takes (fields of SamplingPlan); RePaint adds
#: its resampling jumps.
_SAMPLING = (
    "sampler", "steps", "eta", "n_samples", "device", "feather", "adapt_steps", "flip",
    "edge_taper_mm", "shift_voxels", "antithetic",
)  # fmt: skip
_REPAINT = (*_SAMPLING, "jump_length", "jump_n_sample")


@dataclass(frozen=True)
class FillMethod:
    """One fill method.

    Args:
        name: the ``--method`` value.
        kind: "classical" (no model, CPU only) or "diffusion" (a model on a device).
        module: the ``bidsfill.fill`` submodule whose import registers its filler.
        text: methods-text fragment: "Lesions were filled <text>."
        citations: keys of :data:`bidsfill.references.REFERENCES`.
        sampling: the SamplingPlan fields it takes (empty for classical methods).
        conditional: a diffusion model that takes conditioning channels (not RePaint).
        mem_gb: memory its fill node is given in the workflow.
    """

    name: str
    kind: str
    module: str
    text: str
    citations: tuple[str, ...]
    sampling: tuple[str, ...] = ()
    conditional: bool = False
    mem_gb: float = 1.0

    @property
    def uses_model(self) -> bool:
        """Needs trained weights (``--model`` or the shipped ones) and a device."""
        return self.kind == "diffusion"

    def uses_gpu(self, device: str) -> bool:
        """Whether its fill node runs on a GPU with ``--device device`` (a GPU slot)."""
        return self.uses_model and SamplingPlan(device=device).wants_gpu

    def fill_params(self, plan: SamplingPlan, model: str | None = None) -> dict[str, Any]:
        """The fill node's parameters: the plan's fields this method takes, unset ones
        (model defaults) left out, and the model file when one was given."""
        params = {k: v for k, v in plan.to_params().items() if k in self.sampling}
        if not params.get("adapt_steps"):
            params.pop("adapt_steps", None)
        if model and self.uses_model:
            params["model"] = str(model)
        return params


def _classical(name: str, module: str, text: str, *citations: str) -> FillMethod:
    return FillMethod(name, "classical", module, text, citations)


def _diffusion(name: str, text: str, *citations: str, conditional: bool = True) -> FillMethod:
    sampling = _SAMPLING if conditional else _REPAINT
    return FillMethod(name, "diffusion", "diffusion", text, citations, sampling, conditional, 4.0)


FILL_METHODS: dict[str, FillMethod] = {
    m.name: m
    for m in (
        _classical("nawm", "nawm", "with normal-appearing white matter intensities drawn "
                   "around each lesion, as in FSL's lesion_filling", "battaglini"),
        _classical("ring", "ring", "with draws from the brighter voxels of a ring around "
                   "each lesion, as in ANTs' LesionFilling", "ants"),
        _classical("nonlocal", "nonlocal_fill", "from the border inwards with a patch-based "
                   "non-local means estimate", "guizard", "prados"),
        _classical("fsl", "fsl", "with FSL's lesion_filling", "battaglini", "fsl"),
        _diffusion("pseudo3d", "with a conditional pseudo-3D denoising diffusion model (2D "
                   "convolutions followed by 1D convolutions along z)", "durrer", "ddpm"),
        _diffusion("slicewise", "with a conditional 2D slice-wise denoising diffusion model",
                   "durrer", "ddpm"),
        _diffusion("seqpos", "with a conditional 2D slice-wise denoising diffusion model "
                   "given each slice's position in the volume as an embedding", "durrer",
                   "ddpm"),
        _diffusion("wdm3d", "with a conditional 3D wavelet diffusion model", "friedrich",
                   "durrer", "ddpm"),
        _diffusion("ddpm3d", "with a conditional memory-efficient 3D denoising diffusion "
                   "model on image patches", "durrer", "ddpm"),
        _diffusion("ldm3d", "with a conditional 3D latent diffusion model (a diffusion "
                   "model in the latent space of a 3D autoencoder)", "durrer", "rombach", "ddpm"),
        _diffusion("repaint", "with an unconditional denoising diffusion model made to "
                   "inpaint by RePaint resampling", "repaint", "ddpm", conditional=False),
    )
}  # fmt: skip


def fill_method(name: str) -> FillMethod:
    """The entry of a built-in method; a method registered elsewhere (a plugin) is taken
    as classical: no model, no device, no GPU slot, cited by name only."""
    return FILL_METHODS.get(name) or FillMethod(
        name, "classical", "", f"with the `{name}` method", ()
    )


def classical_methods() -> tuple[str, ...]:
    """The built-in methods that need no model (the scorecard's baselines)."""
    return tuple(n for n, m in FILL_METHODS.items() if m.kind == "classical")
