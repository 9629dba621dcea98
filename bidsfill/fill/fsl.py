"""FSL's own ``lesion_filling``, run as a program when FSL is installed.

``nawm`` implements the same algorithm in Python; this method exists so that results
can be compared with (or made identical to) FSL's binary on machines that have it. The
call is one command on temporary files, made here with :mod:`subprocess` rather than a
Nipype interface, so the fill library works without Nipype and every method goes through
the same fill node (which keeps each voxel outside the mask bit-identical).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from bidsfill.fill.base import FillError, FillResult, register_filler

__all__ = ["fill_fsl", "fsl_available", "lesion_filling_command"]

_MISSING = (
    "FSL's lesion_filling is not on PATH; install FSL or choose --method nawm (the same algorithm)."
)


def fsl_available() -> bool:
    """Whether FSL's ``lesion_filling`` can be run."""
    return shutil.which("lesion_filling") is not None


def lesion_filling_command(
    in_file: str | Path, lesion_mask: str | Path, out_file: str | Path,
    wm_mask: str | Path | None = None,
) -> list[str]:
    """``lesion_filling -i T1w -l lesions -o out [-w wm]`` (FSL >= 5.0.8) as argv."""
    cmd = ["lesion_filling", "-i", str(in_file), "-l", str(lesion_mask), "-o", str(out_file)]
    if wm_mask is not None:
        cmd += ["-w", str(wm_mask)]
    return cmd


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
    affine = np.diag([*map(float, zooms), 1.0])
    with tempfile.TemporaryDirectory(prefix="bidsfill-fsl-") as tmp:
        tmpdir = Path(tmp)

        def _write(name: str, data: np.ndarray) -> Path:
            path = tmpdir / name
            nib.Nifti1Image(data, affine).to_filename(path)
            return path

        wm = None if wm_mask is None else _write("wm.nii.gz", np.asarray(wm_mask, np.uint8))
        cmd = lesion_filling_command(
            _write("t1w.nii.gz", image.astype(np.float32)),
            _write("lesions.nii.gz", mask.astype(np.uint8)),
            tmpdir / "filled.nii.gz",
            wm,
        )
        env = {**os.environ, "FSLOUTPUTTYPE": "NIFTI_GZ"}
        proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True)
        out = tmpdir / "filled.nii.gz"
        if proc.returncode != 0 or not out.exists():
            last = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
            raise FillError(f"FSL lesion_filling failed (exit {proc.returncode}): {last}")
        filled = np.asarray(nib.load(out).get_fdata(), dtype=np.float32)
    return FillResult(
        filled=filled,
        params={
            "algorithm": "FSL lesion_filling",
            "wm_mask": "given" if wm_mask is not None else "none",
            "seed": int(seed),
        },
    )
