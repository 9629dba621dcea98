"""Real lesion masks (stroke, MS) moved into other brains by registration, as in Durrer
et al.'s MS experiment: found in a folder, warped from the image they were drawn on (or
from MNI152 space), placed and filtered by size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["RealMask", "filter_real_masks", "find_real_masks", "place_mni_mask",
           "warp_real_mask"]  # fmt: skip


@dataclass(frozen=True)
class RealMask:
    """A real lesion mask and the image it was drawn on.

    Args:
        mask: path of the binary mask (NIfTI).
        reference: the T1w it was drawn on; ``None`` means the mask is in MNI152 2009
            space, and the template shipped with nilearn is the reference.
    """

    mask: Path
    reference: Path | None = None


_MASK_TOKENS = ("_label-lesion_roi", "_label-lesion_mask", "_desc-lesion_mask", "_mask", "_roi")


def find_real_masks(folder: str | Path) -> list[RealMask]:
    """List the lesion masks in ``folder`` (recursively), each with its reference image.

    A mask ``<stem>_label-lesion_roi.nii.gz`` (or ``_desc-lesion_mask``, ``_mask``,
    ``_roi``) is paired with ``<stem>_T1w.nii[.gz]`` in the same folder when that
    exists; otherwise the mask is taken to be in MNI152 space.
    """
    folder = Path(folder)
    found = []
    for path in sorted(folder.rglob("*.nii*")):
        name = path.name.split(".nii")[0]
        token = next((t for t in _MASK_TOKENS if name.endswith(t)), None)
        if token is None:
            continue
        stem = name[: -len(token)]
        ref = next(
            (
                path.with_name(f"{stem}_T1w{ext}")
                for ext in (".nii.gz", ".nii")
                if path.with_name(f"{stem}_T1w{ext}").exists()
            ),
            None,
        )
        found.append(RealMask(mask=path, reference=ref))
    return found


def _load_reference(real: RealMask):
    import nibabel as nib

    if real.reference is not None:
        return nib.load(str(real.reference))
    from nilearn.datasets import load_mni152_template

    return load_mni152_template(resolution=1)


def warp_real_mask(
    real: RealMask,
    target_image: np.ndarray,
    target_affine: np.ndarray,
    *,
    seed: int = 0,
    transform: str = "SyN",
    target_brain_mask: np.ndarray | None = None,
) -> np.ndarray:
    """Move a real lesion mask into a healthy brain by registering the two scans.

    The lesion is excluded from the registration metric (the moving mask is the inverted
    lesion), as in cost-function masking; the mask is resampled linearly and thresholded
    at 0.5 so its edge stays smooth.

    Args:
        real: the mask and the image it was drawn on.
        target_image: the healthy image (3D array).
        target_affine: its voxel-to-world affine.
        seed: ANTs random seed for the metric sampling.
        transform: ANTs ``type_of_transform`` ("SyN" elastic, "Affine", "Rigid", ...).
        target_brain_mask: optional fixed-image mask for the metric.

    Returns:
        Boolean mask on the target grid.
    """
    import ants
    import nibabel as nib

    mask_img = nib.load(str(real.mask))
    ref_img = _load_reference(real)
    lesion = np.asarray(mask_img.dataobj) > 0.5
    if lesion.ndim != 3 or not lesion.any():
        raise ValueError(f"{real.mask} is not a non-empty 3D mask.")

    def _to_ants(data: np.ndarray, affine: np.ndarray):
        img = nib.Nifti1Image(np.asarray(data, dtype=np.float32), affine)
        img.header.set_xyzt_units("mm")
        return ants.from_nibabel_nifti(img)

    fixed = _to_ants(target_image, target_affine)
    moving = _to_ants(np.asarray(ref_img.dataobj, dtype=np.float32), ref_img.affine)
    moving_lesion = _to_ants(lesion.astype(np.float32), mask_img.affine)
    if moving_lesion.shape != moving.shape:  # mask on its own grid: bring it to the reference
        moving_lesion = ants.resample_image_to_target(moving_lesion, moving, interp_type="linear")
    moving_mask = moving_lesion.new_image_like((moving_lesion.numpy() < 0.5).astype(np.float32))
    fixed_mask = None
    if target_brain_mask is not None:
        fixed_mask = _to_ants(np.asarray(target_brain_mask, dtype=np.float32), target_affine)
    from bidsfill.segment._ants import ants_env

    # Seeded, single-threaded ANTs so the same seed places the mask in the same voxels;
    # dense metric sampling so small images cannot land in a wrong optimum by chance.
    with ants_env(int(seed), n_threads=1):
        reg = ants.registration(
            fixed=fixed,
            moving=moving,
            type_of_transform=transform,
            mask=fixed_mask,
            moving_mask=moving_mask,
            aff_random_sampling_rate=1.0,
        )
        # Inside the context: the transforms live in its temporary folder.
        warped = ants.apply_transforms(
            fixed=fixed,
            moving=moving_lesion,
            transformlist=reg["fwdtransforms"],
            interpolator="linear",
        )
    out = warped.numpy() >= 0.5
    if target_brain_mask is not None:
        out &= np.asarray(target_brain_mask).astype(bool)
    return out


def place_mni_mask(
    real: RealMask,
    target_shape: Sequence[int],
    target_affine: np.ndarray,
    to_mni: np.ndarray,
    target_brain_mask: np.ndarray | None = None,
) -> np.ndarray:
    """Move an MNI152-space lesion mask into a healthy brain with its MNI registration.

    The brain was registered to the MNI152 template once (its tissue priors came that
    way), and a mask drawn on an MNI152 grid follows the same map: linear resampling
    thresholded at 0.5, so its edge stays smooth. No cost-function masking is needed
    here (as :func:`warp_real_mask` does for masks drawn on a patient's own scan),
    because the template has no lesion. This costs a resampling, not a registration.
    """
    import nibabel as nib

    from bidsfill.io.resample import warp_from_world

    img = nib.load(str(real.mask))
    data = np.asarray(img.dataobj) > 0.5
    if data.ndim != 3 or not data.any():
        raise ValueError(f"{real.mask} is not a non-empty 3D mask.")
    out = warp_from_world(data, img.affine, target_shape, target_affine, to_mni) >= 0.5
    if target_brain_mask is not None:
        out &= np.asarray(target_brain_mask).astype(bool)
    return out


def filter_real_masks(
    masks: Sequence[RealMask], max_ml: float | None = None, index: str | Path | None = None
) -> list[RealMask]:
    """Keep the masks of at most ``max_ml`` (by the folder's ``index.tsv``, when it has one)."""
    if max_ml is None or index is None or not Path(index).exists():
        return list(masks)
    import csv

    root = Path(index).parent
    with open(index, newline="") as fh:
        volume = {
            (root / row["file"]).resolve(): float(row["volume_ml"])
            for row in csv.DictReader(fh, delimiter="\t")
        }
    return [m for m in masks if volume.get(Path(m.mask).resolve(), 0.0) <= max_ml]
