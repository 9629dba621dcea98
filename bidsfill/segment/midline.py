"""The mid-sagittal plane of a head or brain scan, estimated, not assumed.

Symmetry-aware inpainting (Santorum et al. 2025) feeds the model the tissue on the other
side of the mid-sagittal plane. Flipping the array about its centre gives that only for
an image already centred in MNI space; a scan in its own space is tilted and shifted.

The estimate follows the classical mirror-registration approach: flip the image along
its first voxel axis, register the flipped copy rigidly onto the original (antspyx), and
compose the two. For a pseudo-symmetric brain the composite ``G`` is an improper rigid
map with ``I(G p) ~ I(p)``; a reflection about the plane ``n.p = d`` is
``p - 2 (n.p - d) n``, so ``n`` is the direction ``G`` reverses (the leading eigenvector
of ``(1 - Q) / 2`` for ``G``'s linear part ``Q``) and ``d`` is half of ``G``'s
translation along it. Taking that reflection, rather than ``G`` itself, is the "half" of
the registration: it keeps the plane and drops the registration's residual rotation
within it. No library offers this; antspyx does the registration.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bidsfill.segment._ants import ants_env, to_ants

__all__ = [
    "GridReflection",
    "MidPlane",
    "contralateral_image",
    "estimate_midplane",
    "mirror_about",
    "reflected_mask",
]


@dataclass(frozen=True)
class MidPlane:
    """A plane ``normal . p = offset`` in RAS world coordinates (mm).

    ``normal`` is a unit vector pointing right (positive x component).
    """

    normal: tuple[float, float, float]
    offset: float

    @property
    def angle_deg(self) -> float:
        """Tilt of the plane away from the world's x = const planes, in degrees."""
        return float(np.degrees(np.arccos(np.clip(abs(self.normal[0]), 0.0, 1.0))))

    def reflection(self) -> np.ndarray:
        """The 4x4 RAS map reflecting a point about the plane (its own inverse)."""
        n = np.asarray(self.normal, dtype=np.float64)
        out = np.eye(4)
        out[:3, :3] -= 2.0 * np.outer(n, n)
        out[:3, 3] = 2.0 * self.offset * n
        return out

    def distance(self, point: np.ndarray) -> float:
        """Signed distance (mm) of a RAS point from the plane (positive on the right)."""
        return float(np.dot(self.normal, np.asarray(point, dtype=np.float64)) - self.offset)

    def to_dict(self) -> dict[str, object]:
        """As a sidecar entry: normal, offset, tilt."""
        return {
            "Normal": [round(float(v), 5) for v in self.normal],
            "OffsetMM": round(float(self.offset), 3),
            "TiltDegrees": round(self.angle_deg, 3),
        }


#: Rigid iterations per level of the mirror registration (antspyx's default: 2100,
#: 1200, 1200, 10 over shrink factors 6, 4, 2, 1).
MIDPLANE_ITERATIONS = (500, 250, 100, 0)


def _voxel_flip(shape: tuple[int, ...]) -> np.ndarray:
    flip = np.eye(4)
    flip[0, 0], flip[0, 3] = -1.0, shape[0] - 1.0
    return flip


def plane_of_reflection(g: np.ndarray) -> MidPlane:
    """The plane of the reflection closest to the improper rigid map ``g`` (4x4)."""
    q, t = np.asarray(g[:3, :3], dtype=np.float64), np.asarray(g[:3, 3], dtype=np.float64)
    half = (np.eye(3) - q) / 2.0
    values, vectors = np.linalg.eigh((half + half.T) / 2.0)
    n = vectors[:, int(np.argmax(values))]
    if n[0] < 0:
        n = -n
    return MidPlane(tuple(float(v) for v in n), float(np.dot(n, t) / 2.0))


def estimate_midplane(
    image: np.ndarray,
    affine: np.ndarray,
    *,
    seed: int = 0,
    n_threads: int = 1,
    iterations: tuple[int, ...] | None = MIDPLANE_ITERATIONS,
) -> MidPlane:
    """The mid-sagittal plane of ``image`` (voxel axis 0 roughly left-right).

    Args:
        image: the scan, a head or a skull-stripped brain.
        affine: its voxel-to-RAS affine.
        seed: seeds antspyx's metric sampling.
        n_threads: ITK threads.
        iterations: rigid iterations per level (None: antspyx's default schedule).
    """
    import ants

    from bidsfill.segment.brainmask import _itk_affine_to_ras

    image = np.asarray(image, dtype=np.float32)
    affine = np.asarray(affine, dtype=np.float64)
    flip_world = affine @ _voxel_flip(image.shape) @ np.linalg.inv(affine)
    with ants_env(seed, n_threads):
        fixed = to_ants(image, affine)
        moving = to_ants(np.ascontiguousarray(image[::-1]), affine)
        if min(fixed.spacing) < 2.0:  # a few seconds at 2 mm; the plane needs no more
            fixed = ants.resample_image(fixed, (2.0, 2.0, 2.0), use_voxels=False, interp_type=0)
            moving = ants.resample_image(moving, (2.0, 2.0, 2.0), use_voxels=False,
                                         interp_type=0)  # fmt: skip
        # Three coarse levels (shrink 6, 4, 2 of the 2 mm grid) and no full-resolution one:
        # a third to a half of the default schedule's time on four real scans, the plane
        # within 0.25 degree and 0.05 mm of it (benchmarks/bench_midplane.py).
        schedule = {} if iterations is None else {"aff_iterations": tuple(iterations)}
        reg = ants.registration(fixed=fixed, moving=moving, type_of_transform="Rigid",
                                **schedule)  # fmt: skip
        # fwdtransforms map fixed points to moving points: moving(T p) ~ fixed(p), and
        # moving(q) = image(F q), so image(F T p) ~ image(p).
        fixed_to_moving = _itk_affine_to_ras(ants.read_transform(reg["fwdtransforms"][0]))
    return plane_of_reflection(flip_world @ fixed_to_moving)


def mirror_about(
    image: np.ndarray, affine: np.ndarray, plane: MidPlane, order: int = 1
) -> np.ndarray:
    """``image`` reflected about ``plane`` on its own grid: each voxel gets the value of
    its contralateral point (the "symmetric" channel of Santorum et al.)."""
    from bidsfill.io.resample import warp_from_world

    return warp_from_world(image, affine, image.shape, affine, plane.reflection(), order=order)


def reflected_mask(
    mask: np.ndarray, affine: np.ndarray, plane: MidPlane
) -> np.ndarray:
    """Voxels whose contralateral point lies in ``mask`` (linear, > 0.5): where the
    "mirror" channel would show what the mask hides. ``affine`` is the grid's own, so a
    box cut from a volume passes the volume's affine moved to the box's first voxel."""
    return mirror_about(np.asarray(mask, dtype=np.float32), affine, plane) > 0.5


@dataclass(frozen=True)
class GridReflection:
    """A mid-sagittal plane on one voxel grid: where the "mirror" channel of any box of
    the grid would show what a mask in that box hides (adaptation draws such boxes)."""

    affine: np.ndarray
    plane: MidPlane

    @classmethod
    def array_centre(cls, shape: tuple[int, ...]) -> GridReflection:
        """The reflection about the array's centre plane (``conditioning.mirror_lr``)."""
        return cls(np.eye(4), MidPlane((1.0, 0.0, 0.0), (shape[0] - 1) / 2.0))

    def in_box(self, mask: np.ndarray, origin: tuple[int, ...]) -> np.ndarray:
        """:func:`reflected_mask` of ``mask``, a box whose first voxel is ``origin``."""
        first = np.eye(4)
        first[:3, 3] = origin
        return reflected_mask(mask, self.affine @ first, self.plane)

    def resampled(self, shape: tuple[int, ...], out_shape: tuple[int, ...]) -> GridReflection:
        """The same plane on the grid that :func:`bidsfill.io.resample.resample_box` makes
        of ``shape`` at ``out_shape`` (the box's outer edges kept)."""
        scale = np.asarray(shape, float) / np.asarray(out_shape, float)
        grid = np.eye(4)
        grid[:3, :3] = np.diag(scale)
        grid[:3, 3] = (scale - 1.0) / 2.0
        return GridReflection(self.affine @ grid, self.plane)


def contralateral_image(
    image: np.ndarray, affine: np.ndarray, *, seed: int = 0, n_threads: int = 1
) -> tuple[np.ndarray, MidPlane]:
    """The "mirror" conditioning channel and its plane: ``image`` reflected about its
    estimated mid-sagittal plane. Training and inference both build it here."""
    plane = estimate_midplane(image, affine, seed=seed, n_threads=n_threads)
    return mirror_about(image, affine, plane), plane
