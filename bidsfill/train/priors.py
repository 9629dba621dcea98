"""Tissue priors (brain, GM, WM) for a healthy training scan, from the MNI152 template.

Lesion masks are drawn where lesions occur (white matter, cortex ribbon, inside the
brain), so each training scan needs rough tissue maps. A scan has none of its own; an
affine antspyx registration of the MNI152 2009 template (shipped in the nilearn wheel)
carries the template's maps onto it. This is crude at the cortex but enough to place
synthetic lesions, and it works the same with or without skull.
"""

from __future__ import annotations

import hashlib
import tempfile
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

    Args:
        image: the healthy scan (any orientation, with or without skull).
        cache_dir: where to keep the warped maps so a resumed run skips the registration.
        seed: antspyx random seed (the registration samples voxels).

    Returns:
        Priors on ``image``'s voxel grid.
    """
    cache = None
    if cache_dir is not None:
        cache = Path(cache_dir) / f"priors-{_cache_key(image)}.npz"
        if cache.exists():
            with np.load(cache) as npz:
                return TissuePriors(brain=npz["brain"], wm=npz["wm"], gm=npz["gm"])
    import ants

    t1, brain, wm, gm = _mni_images(2)
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for name, img in (("fixed", image), ("t1", t1), ("brain", brain), ("wm", wm), ("gm", gm)):
            paths[name] = str(Path(tmp) / f"{name}.nii.gz")
            nib.Nifti1Image(np.asarray(img.dataobj, dtype=np.float32), img.affine).to_filename(
                paths[name]
            )
        fixed = ants.image_read(paths["fixed"])
        moving = ants.image_read(paths["t1"])
        reg = ants.registration(
            fixed=fixed,
            moving=moving,
            type_of_transform="Affine",
            aff_metric="mattes",
            random_seed=seed,
        )
        warped = {}
        for name in ("brain", "wm", "gm"):
            out = ants.apply_transforms(
                fixed=fixed,
                moving=ants.image_read(paths[name]),
                transformlist=reg["fwdtransforms"],
                interpolator="linear",
            )
            warped[name] = np.clip(out.numpy().astype(np.float32), 0, 1)
    priors = TissuePriors(brain=warped["brain"] > 0.5, wm=warped["wm"], gm=warped["gm"])
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp_path = cache.with_suffix(".tmp.npz")
        np.savez_compressed(tmp_path, brain=priors.brain, wm=priors.wm, gm=priors.gm)
        tmp_path.replace(cache)
    return priors
