"""FSL's own ``lesion_filling``, run through Nipype when FSL is installed.

``nawm`` implements the same algorithm in Python; this method exists so that results
can be compared with (or made identical to) FSL's binary on machines that have it.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from bidsfill.fill.base import FillError, FillResult, register_filler

__all__ = ["fill_fsl", "fsl_available"]

_MISSING = (
    "FSL's lesion_filling is not on PATH; install FSL or choose --method nawm (the same algorithm)."
)


def fsl_available() -> bool:
    """Whether FSL's ``lesion_filling`` can be run."""
    return shutil.which("lesion_filling") is not None


@register_filler("fsl")
def fill_fsl(
    image: np.ndarray,
    mask: np.ndarray,
    *,
    zooms: tuple[float, float, float],
    seed: int,
    wm_mask: np.ndarray | None = None,
    **_: Any,
) -> FillResult:
    """Fill with FSL ``lesion_filling`` on temporary NIfTI files.

    Args:
        image: T1w intensities (float32).
        mask: lesion mask (bool), same shape.
        zooms: voxel sizes in mm, written into the temporary header.
        seed: recorded only; FSL seeds its own draws.
        wm_mask: optional white-matter mask, passed as ``-w``.
        **_: other methods' parameters, ignored so one call site can serve every method.

    Returns:
        The filled image read back from FSL's output.

    Raises:
        FillError: when ``lesion_filling`` is not on PATH or fails.
    """
    if not fsl_available():
        raise FillError(_MISSING)
    from bidsfill.interfaces.fsl import FSLLesionFilling

    affine = np.diag([*map(float, zooms), 1.0])
    with tempfile.TemporaryDirectory(prefix="bidsfill-fsl-") as tmp:
        tmpdir = Path(tmp)

        def _write(name: str, data: np.ndarray) -> str:
            path = tmpdir / name
            nib.Nifti1Image(data, affine).to_filename(path)
            return str(path)

        node = FSLLesionFilling(
            in_file=_write("t1w.nii.gz", image.astype(np.float32)),
            lesion_mask=_write("lesions.nii.gz", mask.astype(np.uint8)),
            out_file=str(tmpdir / "filled.nii.gz"),
        )
        if wm_mask is not None:
            node.inputs.wm_mask = _write("wm.nii.gz", np.asarray(wm_mask).astype(np.uint8))
        try:
            result = node.run(cwd=tmp)
        except Exception as err:  # nipype raises RuntimeError/OSError with FSL's stderr
            raise FillError(
                f"FSL lesion_filling failed: {str(err).strip().splitlines()[-1]}"
            ) from err
        filled = np.asarray(nib.load(result.outputs.out_file).get_fdata(), dtype=np.float32)
    return FillResult(
        filled=filled,
        params={
            "algorithm": "FSL lesion_filling",
            "wm_mask": "given" if wm_mask is not None else "none",
            "seed": int(seed),
        },
    )
