"""Bring a lesion mask onto the T1w grid (the workflow's registration step).

Three cases, tried in order:

1. the mask is already on the T1w grid: used as it is;
2. a FLAIR/T2w of the session shares the mask's grid: that image is registered to the
   T1w with antspyx (rigid, then affine; the cost function ignores the lesion through
   masks that exclude it) and the mask follows the transform nearest-neighbour;
3. otherwise the mask is resampled through world coordinates (nearest-neighbour) when
   its field of view overlaps the T1w's; with no overlap the mask is refused.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.processing import resample_from_to
from scipy import ndimage

from bidsfill.io.nifti import InputError, LoadedImage

__all__ = ["AlignedMask", "align_mask", "check_placeable", "dilate_mask", "same_grid"]


@dataclass(frozen=True)
class AlignedMask:
    mask: np.ndarray
    method: str  # "same-grid", "registered:<suffix>", "resampled"
    warnings: list[str] = field(default_factory=list)


def same_grid(a: nib.spatialimages.SpatialImage, b: nib.spatialimages.SpatialImage) -> bool:
    """Whether two images share shape and affine (to 1e-3 mm)."""
    return a.shape[:3] == b.shape[:3] and np.allclose(a.affine, b.affine, atol=1e-3)


def dilate_mask(mask: np.ndarray, voxels: int) -> np.ndarray:
    """Grow a mask by ``voxels`` voxels (6-connected steps), as neuroLIT's dilation does."""
    if voxels <= 0:
        return np.asarray(mask, dtype=bool)
    return ndimage.binary_dilation(mask, iterations=int(voxels))


def _world_overlap(mask_img: nib.Nifti1Image, t1w_img: nib.Nifti1Image) -> bool:
    def corners(img):
        shape = np.array(img.shape[:3]) - 1
        grid = np.array(np.meshgrid(*[[0, s] for s in shape], indexing="ij")).reshape(3, -1).T
        return nib.affines.apply_affine(img.affine, grid)

    a, b = corners(mask_img), corners(t1w_img)
    return bool(np.all(a.max(0) > b.min(0)) and np.all(b.max(0) > a.min(0)))


def _as_nifti(data: np.ndarray, like: nib.Nifti1Image, path: Path) -> Path:
    img = nib.Nifti1Image(np.asarray(data, dtype=np.float32), like.affine)
    nib.save(img, str(path))
    return path


def _register_mask(
    t1w: LoadedImage, reference: LoadedImage, mask: np.ndarray, seed: int, suffix: str
) -> np.ndarray:
    import ants  # heavy import, only when registration is needed

    ants.config.set_ants_deterministic(True, seed_value=int(seed))
    with tempfile.TemporaryDirectory(prefix="bidsfill-align-") as tmp:
        tmp_dir = Path(tmp)
        fixed = ants.image_read(str(_as_nifti(t1w.data, t1w.img, tmp_dir / "t1w.nii.gz")))
        moving = ants.image_read(
            str(_as_nifti(reference.data, reference.img, tmp_dir / "ref.nii.gz"))
        )
        lesion = ants.image_read(str(_as_nifti(mask, reference.img, tmp_dir / "mask.nii.gz")))
        # Cost-function masking: the lesion looks different in FLAIR and T1w, so neither
        # image's lesion voxels may drive the fit.
        moving_cfm = ants.threshold_image(lesion, 0.5, 1e9, 0, 1)
        fixed_cfm = ants.apply_transforms(
            fixed, moving_cfm, transformlist=[], interpolator="nearestNeighbor", defaultvalue=1
        )
        # Metric sampling: antspyx's default random 20 % of voxels is fast on a head but on
        # a small image (few samples) it can fall into a wrong optimum for some seeds, so
        # small images are sampled densely. Both are deterministic for a fixed seed.
        small = int(np.prod(fixed.shape)) < 200_000
        settings = {
            "mask": fixed_cfm,
            "moving_mask": moving_cfm,
            "aff_random_sampling_rate": 1.0 if small else 0.25,
            "aff_shrink_factors": (4, 2, 1),
            "aff_smoothing_sigmas": (2, 1, 0),
            "aff_iterations": (200, 100, 50),
        }
        rigid = ants.registration(fixed, moving, type_of_transform="Rigid", **settings)
        affine = ants.registration(
            fixed,
            moving,
            type_of_transform="Affine",
            initial_transform=rigid["fwdtransforms"][0],
            **settings,
        )
        warped = ants.apply_transforms(
            fixed, lesion, transformlist=affine["fwdtransforms"], interpolator="nearestNeighbor"
        )
        return warped.numpy() > 0.5


def check_placeable(
    t1w: nib.Nifti1Image, mask: nib.Nifti1Image, references: list[nib.Nifti1Image] = ()
) -> None:
    """Raise InputError now if :func:`align_mask` would refuse this mask later."""
    if same_grid(mask, t1w) or any(same_grid(mask, ref) for ref in references):
        return
    if not _world_overlap(mask, t1w):
        raise InputError(
            f"The lesion mask {Path(mask.get_filename() or 'mask').name} does not overlap "
            f"{Path(t1w.get_filename() or 'the T1w').name} in world coordinates, so it cannot "
            "be placed on the T1w."
        )


def align_mask(
    t1w: LoadedImage,
    mask: LoadedImage,
    *,
    references: list[tuple[str, LoadedImage]] | None = None,
    seed: int = 0,
) -> AlignedMask:
    """Put ``mask`` on the T1w grid.

    Args:
        t1w: the T1w image.
        mask: the lesion mask (binary data).
        references: (suffix, image) pairs of same-session FLAIR/T2w images; one that shares
            the mask's grid is registered to the T1w.
        seed: seed of the registration's random sampling.
    """
    data = mask.data > 0.5
    if same_grid(mask.img, t1w.img):
        return AlignedMask(mask=data, method="same-grid")
    for suffix, ref in references or []:
        if same_grid(mask.img, ref.img):
            warped = _register_mask(t1w, ref, data, seed, suffix)
            return AlignedMask(
                mask=warped,
                method=f"registered:{suffix}",
                warnings=[
                    f"The lesion mask is on the {suffix} grid; the {suffix} was registered to "
                    "the T1w (rigid + affine, lesion excluded from the cost function) and the "
                    "mask resampled nearest-neighbour."
                ],
            )
    check_placeable(t1w.img, mask.img)
    src = nib.Nifti1Image(data.astype(np.float32), mask.img.affine)
    resampled = resample_from_to(src, (t1w.img.shape[:3], t1w.img.affine), order=0)
    return AlignedMask(
        mask=np.asarray(resampled.dataobj) > 0.5,
        method="resampled",
        warnings=[
            f"The lesion mask {mask.path.name} is on another grid than the T1w and no "
            "FLAIR/T2w shares its grid; it was resampled through world coordinates "
            "(nearest-neighbour)."
        ],
    )
