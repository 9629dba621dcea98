"""Three-class tissue segmentation of a T1w: FSL FAST when installed, ANTs Atropos otherwise."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from bidsfill.segment._ants import ants_env, to_ants

__all__ = ["LABELS", "Segmentation", "segment_tissues"]

# BIDS dseg order used in the derivatives (and its dseg.tsv): 0 background.
LABELS: dict[str, int] = {"GM": 1, "WM": 2, "CSF": 3}


@dataclass(frozen=True)
class Segmentation:
    """A tissue segmentation.

    Args:
        dseg: uint8 labels, 0 background, 1 GM, 2 WM, 3 CSF.
        probseg: float32 posteriors in [0, 1] keyed "GM", "WM", "CSF"; they sum to 1 in
            the segmented voxels and are 0 elsewhere.
        segmenter: "fsl-fast" or "ants-atropos".
    """

    dseg: np.ndarray
    probseg: dict[str, np.ndarray]
    segmenter: str


def _assemble(image: np.ndarray, probs: list[np.ndarray], inside: np.ndarray, segmenter: str):
    """Order three posteriors CSF < GM < WM by their mean T1w intensity; build dseg/probseg."""
    stack = np.stack([np.clip(np.nan_to_num(p), 0.0, 1.0) for p in probs]).astype(np.float32)
    stack[:, ~inside] = 0.0
    weights = stack.reshape(3, -1).sum(axis=1)
    means = (stack.reshape(3, -1) @ image.reshape(-1).astype(np.float64)) / np.maximum(
        weights, 1e-12
    )
    csf, gm, wm = np.argsort(means)  # T1w: CSF darkest, WM brightest
    ordered = stack[[gm, wm, csf]]  # index + 1 == BIDS label
    total = ordered.sum(axis=0)
    labelled = inside & (total > 0)
    ordered[:, labelled] /= total[labelled]
    dseg = np.where(labelled, ordered.argmax(axis=0) + 1, 0).astype(np.uint8)
    probseg = {name: ordered[label - 1] for name, label in LABELS.items()}
    return Segmentation(dseg=dseg, probseg=probseg, segmenter=segmenter)


def _atropos(image, affine, inside, seed, n_threads, mrf):
    import ants

    with ants_env(seed, n_threads):
        # r=0 ("--use-random-seed 0"): Atropos seeds itself with a constant. Measured
        # here: with r=1 it gave different posteriors on every call even with
        # ANTS_RANDOM_SEED fixed, so the seed cannot select a run, only fix one.
        out = ants.atropos(
            a=to_ants(image, affine),
            x=to_ants(inside.astype(np.float32), affine),
            i="Kmeans[3]",
            m=f"[{mrf},1x1x1]",
            c="[5,0]",
            r=0,
        )
        probs = [p.numpy() for p in out["probabilityimages"]]
    return _assemble(image, probs, inside, "ants-atropos")


def fast_command(in_file: str | Path, out_basename: str | Path) -> list[str]:
    """FSL FAST with three classes on a T1w (``-t 1``), as argv."""
    return ["fast", "-n", "3", "-t", "1", "-o", str(out_basename), str(in_file)]


def _fast(image, affine, inside, n_threads):
    # One program on temporary files: run with subprocess, not a Nipype interface, so the
    # segmentation library works without Nipype (the workflow wraps it in its own node).
    with tempfile.TemporaryDirectory(prefix="bidsfill-fast-") as tmp:
        path = Path(tmp) / "brain.nii.gz"
        # FAST segments the non-zero voxels: zero everything outside the brain mask.
        nib.Nifti1Image(np.where(inside, image, 0).astype(np.float32), affine).to_filename(path)
        env = {**os.environ, "FSLOUTPUTTYPE": "NIFTI_GZ",
               "OMP_NUM_THREADS": str(max(1, int(n_threads)))}  # fmt: skip
        proc = subprocess.run(fast_command(path, Path(tmp) / "fast"), cwd=tmp, env=env,
                              capture_output=True, text=True)  # fmt: skip
        pves = [Path(tmp) / f"fast_pve_{k}.nii.gz" for k in range(3)]
        if proc.returncode != 0 or not all(p.exists() for p in pves):
            last = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
            raise RuntimeError(f"FSL FAST failed (exit {proc.returncode}): {last}")
        probs = [np.asarray(nib.load(p).get_fdata()) for p in pves]
    return _assemble(image, probs, inside, "fsl-fast")


def segment_tissues(
    image: np.ndarray,
    affine: np.ndarray,
    *,
    brain_mask: np.ndarray | None = None,
    exclude_mask: np.ndarray | None = None,
    seed: int = 0,
    n_threads: int = 1,
    mrf: float = 0.1,
) -> Segmentation:
    """Segment a T1w into GM, WM and CSF.

    FSL FAST (through Nipype) when ``fast`` is on PATH, because the evaluation in the
    papers uses it; otherwise Atropos (antspyx, k-means initialisation, MRF prior), run
    deterministically. Voxels in ``exclude_mask`` (e.g. unfilled lesions) take no part
    in the fit and are labelled 0, so they cannot pull the class means.

    Args:
        image: T1w intensities, 3D.
        affine: voxel-to-world affine (RAS, as nibabel).
        brain_mask: voxels to segment; estimated with ``estimate_brain_mask`` when None.
        exclude_mask: voxels left out of the fit and of the labels.
        seed: seed for the brain-mask registration (Atropos runs with a constant seed).
        n_threads: ITK/OpenMP threads.
        mrf: Atropos MRF smoothing weight.

    Returns:
        The segmentation.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 3:
        raise ValueError(f"Expected a 3D image, got shape {image.shape}.")
    if brain_mask is None:
        from bidsfill.segment.brainmask import estimate_brain_mask

        brain_mask, _ = estimate_brain_mask(image, affine, seed=seed, n_threads=n_threads)
    inside = np.asarray(brain_mask, dtype=bool)
    if inside.shape != image.shape:
        raise ValueError(f"Brain mask shape {inside.shape} differs from image {image.shape}.")
    if exclude_mask is not None:
        exclude = np.asarray(exclude_mask, dtype=bool)
        if exclude.shape != image.shape:
            raise ValueError(
                f"Exclude mask shape {exclude.shape} differs from image {image.shape}."
            )
        inside = inside & ~exclude
    if np.unique(image[inside]).size < 3:
        raise ValueError("The brain mask holds fewer than three distinct intensities to segment.")
    if shutil.which("fast"):
        return _fast(image, affine, inside, n_threads)
    return _atropos(image, affine, inside, seed, n_threads, mrf)
