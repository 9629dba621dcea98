"""Tissue priors (brain, GM, WM) for a healthy training scan, from the MNI152 template.

Lesion masks are drawn where lesions occur (white matter, cortex ribbon, inside the
brain), so each training scan needs rough tissue maps. A scan has none of its own; an
affine antspyx registration of the MNI152 2009 template (shipped in the nilearn wheel)
carries the template's maps onto it. This is crude at the cortex but enough to place
synthetic lesions, and it works the same with or without skull.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

__all__ = ["TissuePriors", "mni_priors", "register_priors"]


@dataclass(frozen=True)
class TissuePriors:
    """Probability maps on a scan's grid.

    Args:
        brain: boolean brain mask.
        wm: white-matter probability in [0, 1].
        gm: grey-matter probability in [0, 1].
    """

    brain: np.ndarray
    wm: np.ndarray
    gm: np.ndarray
    to_mni: np.ndarray | None = None  # 4x4: this scan's RAS world -> MNI152 RAS world


def _mni_images(resolution: int = 1) -> tuple[nib.Nifti1Image, ...]:
    from nilearn import datasets

    return (
        datasets.load_mni152_template(resolution=resolution),
        datasets.load_mni152_brain_mask(resolution=resolution),
        datasets.load_mni152_wm_template(resolution=resolution),
        datasets.load_mni152_gm_template(resolution=resolution),
    )


def mni_priors(resolution: int = 1) -> tuple[nib.Nifti1Image, TissuePriors]:
    """The MNI152 2009 template image and its own tissue maps (no registration needed)."""
    t1, brain, wm, gm = _mni_images(resolution)
    priors = TissuePriors(
        brain=np.asarray(brain.dataobj) > 0.5,
        wm=np.clip(np.asarray(wm.dataobj, dtype=np.float32), 0, 1),
        gm=np.clip(np.asarray(gm.dataobj, dtype=np.float32), 0, 1),
        to_mni=np.eye(4),
    )
    return t1, priors


def _cache_key(image: nib.Nifti1Image) -> str:
    data = np.ascontiguousarray(np.asarray(image.dataobj, dtype=np.float32))
    digest = hashlib.sha256(data.tobytes())
    digest.update(np.asarray(image.affine, dtype=np.float64).tobytes())
    return digest.hexdigest()[:16]


def register_priors(
    image: nib.Nifti1Image, *, cache_dir: Path | None = None, seed: int = 0
) -> TissuePriors:
    """Warp the MNI152 tissue maps onto ``image`` with an affine antspyx registration.

    The registration is :func:`bidsfill.segment.brainmask.register_mni` (the template as
    fixed image with a cost-function mask around its brain), so a head with skull and
    neck gets a brain-sized prior, not a template stretched over the skull.

    Args:
        image: the healthy scan (any orientation, with or without skull).
        cache_dir: where to keep the warped maps so a resumed run skips the registration.
        seed: antspyx random seed (the registration samples voxels).

    Returns:
        Priors on ``image``'s voxel grid, with the scan-to-MNI world map.
    """
    cache = None
    if cache_dir is not None:
        cache = Path(cache_dir) / f"priors-v2-{_cache_key(image)}.npz"
        if cache.exists():
            with np.load(cache) as npz:
                return TissuePriors(
                    brain=npz["brain"], wm=npz["wm"], gm=npz["gm"], to_mni=npz["to_mni"]
                )
    from bidsfill.io.resample import warp_from_world
    from bidsfill.segment.brainmask import register_mni

    data = np.asarray(image.dataobj, dtype=np.float32)
    to_mni = register_mni(data, image.affine, seed, n_threads=1)
    _, brain, wm, gm = _mni_images(2)
    warped = {
        name: np.clip(
            warp_from_world(np.asarray(img.dataobj), img.affine, data.shape, image.affine, to_mni),
            0,
            1,
        )
        for name, img in (("brain", brain), ("wm", wm), ("gm", gm))
    }
    priors = TissuePriors(
        brain=warped["brain"] > 0.5, wm=warped["wm"], gm=warped["gm"], to_mni=to_mni
    )
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp_path = cache.with_suffix(".tmp.npz")
        np.savez_compressed(
            tmp_path, brain=priors.brain, wm=priors.wm, gm=priors.gm, to_mni=priors.to_mni
        )
        tmp_path.replace(cache)
    return priors
