"""Bring a lesion mask onto the T1w grid (the workflow's registration step).

Three cases, tried in order:

1. the mask is already on the T1w grid: used as it is;
2. a FLAIR/T2w of the session shares the mask's grid: that image is registered to the
   T1w with antspyx (rigid, then affine; the cost function ignores the lesion through
   masks that exclude it) and the mask follows the transform nearest-neighbour;
3. otherwise the mask is resampled through world coordinates (nearest-neighbour) when
   its field of view overlaps the T1w's; with no overlap the mask is refused.

The same step brings the FLAIR/T2w a diffusion model is conditioned on onto the T1w grid
(``resample``), registering each once: the transform of case 2 is reused for its own
reference.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from nibabel.processing import resample_from_to
from scipy import ndimage

from bidsfill.io.nifti import InputError, LoadedImage

__all__ = ["AlignedMask", "align_mask", "check_placeable", "dilate_mask", "same_grid"]


@dataclass(frozen=True)
class AlignedMask:
    """The mask on the T1w grid, and the references asked for (``resample``) on it too.

    ``references``: suffix -> image on the T1w grid (float32); ``reference_alignment``:
    suffix -> "same-grid", "registered-with-mask" (the mask's own transform) or
    "registered"; ``transforms``: suffix -> the transform files kept for it.
    """

    mask: np.ndarray
    method: str  # "same-grid", "registered:<suffix>", "resampled"
    warnings: list[str] = field(default_factory=list)
    references: dict[str, np.ndarray] = field(default_factory=dict)
    reference_alignment: dict[str, str] = field(default_factory=dict)
    transforms: dict[str, list[Path]] = field(default_factory=dict)


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


def _cost_masks(lesion: Any, other_grid: Any) -> tuple[Any, Any]:
    """Cost-function masks from a lesion known on one grid: its own (lesion voxels
    thresholded) and the same mask carried onto ``other_grid`` by world coordinates
    (voxels outside the lesion's field of view count as excluded, value 1)."""
    import ants

    own = ants.threshold_image(lesion, 0.5, 1e9, 0, 1)
    other = ants.apply_transforms(other_grid, own, transformlist=[],
                                  interpolator="nearestNeighbor", defaultvalue=1)  # fmt: skip
    return own, other


def _register(
    t1w: LoadedImage,
    reference: LoadedImage,
    seed: int,
    *,
    moving_lesion: np.ndarray | None = None,
    fixed_lesion: np.ndarray | None = None,
    transform_prefix: Path | None = None,
) -> tuple[np.ndarray | None, np.ndarray, list[Path]]:
    """Register ``reference`` to the T1w once (rigid, then affine) and move it and its mask.

    The lesion is left out of the cost function: ``moving_lesion`` is the mask on the
    reference's grid, ``fixed_lesion`` the mask on the T1w grid (either may be given).

    Returns the lesion moved nearest-neighbour onto the T1w grid (None without
    ``moving_lesion``), the reference moved with linear interpolation by the same
    transform, and the transform files (copied to ``<transform_prefix><i><ext>`` when a
    prefix is given, in the order ``ants.apply_transforms`` takes them).
    """
    import shutil

    import ants  # heavy import, only when registration is needed

    ants.config.set_ants_deterministic(True, seed_value=int(seed))
    with tempfile.TemporaryDirectory(prefix="bidsfill-align-") as tmp:
        tmp_dir = Path(tmp)
        fixed = ants.image_read(str(_as_nifti(t1w.data, t1w.img, tmp_dir / "t1w.nii.gz")))
        moving = ants.image_read(
            str(_as_nifti(reference.data, reference.img, tmp_dir / "ref.nii.gz"))
        )
        lesion = None
        # Cost-function masking: the lesion looks different in FLAIR and T1w, so neither
        # image's lesion voxels may drive the fit. The lesion is known on one grid.
        if moving_lesion is not None:
            lesion = ants.image_read(
                str(_as_nifti(moving_lesion, reference.img, tmp_dir / "mask.nii.gz"))
            )
            moving_cfm, fixed_cfm = _cost_masks(lesion, fixed)
        else:
            on_t1w = np.zeros(t1w.data.shape) if fixed_lesion is None else fixed_lesion
            t1w_lesion = ants.image_read(
                str(_as_nifti(on_t1w, t1w.img, tmp_dir / "t1w_mask.nii.gz"))
            )
            fixed_cfm, moving_cfm = _cost_masks(t1w_lesion, moving)
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
        transforms = affine["fwdtransforms"]
        warped = None
        if lesion is not None:
            warped = (
                ants.apply_transforms(
                    fixed, lesion, transformlist=transforms, interpolator="nearestNeighbor"
                ).numpy()
                > 0.5
            )
        # The reference itself, by the same transform: the fill's extra contrast.
        moved = (
            ants.apply_transforms(fixed, moving, transformlist=transforms, interpolator="linear")
            .numpy()
            .astype(np.float32)
        )
        kept = []
        if transform_prefix is not None:
            for i, src in enumerate(transforms):
                ext = "".join(Path(src).suffixes)
                dst = Path(f"{transform_prefix}{i}{ext}")
                shutil.copyfile(src, dst)
                kept.append(dst)
        return warped, moved, kept


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
    resample: Sequence[str] = (),
    transform_dir: Path | None = None,
) -> AlignedMask:
    """Put ``mask`` on the T1w grid, and the references named in ``resample`` too.

    Args:
        t1w: the T1w image.
        mask: the lesion mask (binary data).
        references: (suffix, image) pairs of same-session FLAIR/T2w images; one that shares
            the mask's grid is registered to the T1w.
        seed: seed of the registration's random sampling.
        resample: suffixes of references to bring onto the T1w grid (the fill's extra
            contrasts). Each is registered to the T1w once: a reference already
            registered for the mask follows that same transform; one on the T1w grid is
            used as it is; any other is registered with the lesion (on the T1w grid) left
            out of the cost function. Linear interpolation.
        transform_dir: where to keep each registration's transform files.
    """
    refs = dict(references or [])
    moved: dict[str, np.ndarray] = {}
    methods: dict[str, str] = {}
    transforms: dict[str, list[Path]] = {}

    def prefix(suffix: str) -> Path | None:
        return None if transform_dir is None else Path(transform_dir) / f"{suffix}_to-T1w_"

    aligned = _align_mask(t1w, mask, refs, seed, resample, prefix, moved, transforms)
    for suffix in resample:
        if suffix not in refs:
            continue
        ref = refs[suffix]
        if suffix in moved:
            methods[suffix] = "registered-with-mask"
        elif same_grid(ref.img, t1w.img):
            moved[suffix] = np.asarray(ref.data, dtype=np.float32)
            methods[suffix] = "same-grid"
        else:
            _, moved[suffix], transforms[suffix] = _register(
                t1w, ref, seed, fixed_lesion=aligned.mask, transform_prefix=prefix(suffix)
            )
            methods[suffix] = "registered"
    return dataclasses.replace(
        aligned, references=moved, reference_alignment=methods, transforms=transforms
    )


def _align_mask(
    t1w: LoadedImage,
    mask: LoadedImage,
    refs: dict[str, LoadedImage],
    seed: int,
    resample: Sequence[str],
    prefix,  # noqa: ANN001 - suffix -> transform prefix
    moved: dict[str, np.ndarray],
    transforms: dict[str, list[Path]],
) -> AlignedMask:
    data = mask.data > 0.5
    if same_grid(mask.img, t1w.img):
        return AlignedMask(mask=data, method="same-grid")
    for suffix, ref in refs.items():
        if same_grid(mask.img, ref.img):
            warped, ref_moved, kept = _register(
                t1w, ref, seed, moving_lesion=data,
                transform_prefix=prefix(suffix) if suffix in resample else None,
            )  # fmt: skip
            if suffix in resample:  # the same transform brings the contrast over
                moved[suffix], transforms[suffix] = ref_moved, kept
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
