"""A small demo BIDS dataset with synthetic MS-like lesions and its ground truth.

Built offline from the MNI152 2009 template that ships in the nilearn wheel, so a new
user (and the tests) can run bidsfill end to end without downloading anything. It covers
the cases discovery must handle: a subject with two sessions and raw
``_label-lesion_roi`` masks stored as int16, and a single-session subject stored as
uint8 whose lesion mask lives in a derivatives dataset on the grid of a FLAIR that was
acquired on another grid with a slightly different head position.

Layout written under ``out_dir``::

    bids/                          raw dataset (+ .bidsignore for the _roi masks)
    bids/derivatives/lesions/      sub-02 mask on the FLAIR grid
    truth/                         lesion-free images + true masks on the T1w grid
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from bidsfill import __version__
from bidsfill.evaluate.simulate import apply_lesions
from bidsfill.lesions import lesion_sites, sample_lesion_mask

__all__ = ["DemoImage", "DemoPaths", "make_demo_dataset"]

BIDS_VERSION = "1.9.0"
_TEMPLATE_NOTE = (
    "Images are derived from the MNI ICBM 152 non-linear 2009 template (Fonov et al. 2011, "
    "Copyright (C) 1993-2009 Louis Collins, McConnell Brain Imaging Centre, Montreal "
    "Neurological Institute, McGill University) as shipped in the nilearn wheel."
)


@dataclass(frozen=True)
class DemoImage:
    """One demo T1w with the files that belong to it.

    Args:
        subject: participant label without ``sub-``.
        session: session label without ``ses-``, or None.
        t1w: the lesioned T1w in the raw dataset.
        mask: the lesion mask the app should find (raw roi or derivatives mask).
        truth: the lesion-free T1w (same grid, dtype and scaling as ``t1w``).
        truth_mask: the true lesion mask on the T1w grid.
        flair: the FLAIR of the same session, if any.
    """

    subject: str
    session: str | None
    t1w: Path
    mask: Path
    truth: Path
    truth_mask: Path
    flair: Path | None = None


@dataclass(frozen=True)
class DemoPaths:
    """Where :func:`make_demo_dataset` wrote things."""

    root: Path
    bids: Path
    truth: Path
    lesions: Path
    images: list[DemoImage] = field(default_factory=list)


# --------------------------------------------------------------------------- helpers


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def _save(data: np.ndarray, affine: np.ndarray, path: Path, dtype: type) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(np.asarray(data).astype(dtype), affine)
    img.header.set_data_dtype(dtype)
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_qform(affine, code=1)
    img.header.set_sform(affine, code=1)
    # Fixed scaling so the stored integers are exactly what we computed.
    img.header.set_slope_inter(1.0, 0.0)
    img.to_filename(str(path))


def _rotation(angles_deg: tuple[float, float, float]) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_euler("xyz", angles_deg, degrees=True).as_matrix()


def _rigid_about(centre: np.ndarray, angles_deg, shift_mm) -> np.ndarray:
    """A 4x4 world-space rigid transform rotating about ``centre``."""
    m = np.eye(4)
    m[:3, :3] = _rotation(tuple(angles_deg))
    m[:3, 3] = centre - m[:3, :3] @ centre + np.asarray(shift_mm, dtype=float)
    return m


def _load_template(downsample: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """T1 and tissue maps of the MNI152 2009 template at 2 mm x ``downsample``."""
    from nilearn import datasets, image

    imgs = {
        "t1": datasets.load_mni152_template(resolution=2),
        "gm": datasets.load_mni152_gm_template(resolution=2),
        "wm": datasets.load_mni152_wm_template(resolution=2),
        "brain": datasets.load_mni152_brain_mask(resolution=2),
    }
    affine = imgs["t1"].affine
    shape = imgs["t1"].shape
    if downsample > 1:
        import warnings

        target = affine.copy()
        target[:3, :3] *= downsample
        new_shape = tuple(int(math.ceil(s / downsample)) for s in shape)
        with warnings.catch_warnings():  # dtype casts and "binary image" notes from nilearn
            warnings.simplefilter("ignore")
            imgs = {
                k: image.resample_img(
                    v,
                    target_affine=target,
                    target_shape=new_shape,
                    interpolation="linear",
                    force_resample=True,
                    copy_header=True,
                )
                for k, v in imgs.items()
            }
        affine = target
    maps = {
        k: np.clip(np.asarray(v.get_fdata(), dtype=np.float32), 0, None) for k, v in imgs.items()
    }
    maps["brain"] = (maps["brain"] >= 0.5).astype(np.float32)
    maps["gm"] = np.clip(maps["gm"], 0, 1) * maps["brain"]
    maps["wm"] = np.clip(maps["wm"], 0, 1) * maps["brain"]
    maps["csf"] = np.clip(maps["brain"] - maps["gm"] - maps["wm"], 0, 1)
    maps["t1"] = maps["t1"] / float(np.percentile(maps["t1"][maps["wm"] > 0.9], 50))
    return maps, affine


def _deform(channels: np.ndarray, seed: int, *, strength: float, zooms: float) -> np.ndarray:
    """Same random small affine + elastic deformation for every channel (C, X, Y, Z)."""
    from monai.transforms import Rand3DElastic

    transform = Rand3DElastic(
        # Sigma in voxels; the magnitude is calibrated to ~2-4 mm of displacement (median
        # and 95th percentile) whatever the grid, since the smoothed noise shrinks with
        # sigma**1.5 and a voxel is `zooms` mm.
        sigma_range=(10.0 / zooms, 14.0 / zooms),
        magnitude_range=tuple(strength * m * (2.0 / zooms) ** 2.5 for m in (60.0, 120.0)),
        prob=1.0,
        rotate_range=(math.radians(4),) * 3,
        translate_range=(3.0 / zooms,) * 3,
        scale_range=(0.04,) * 3,
        mode="bilinear",
        padding_mode="zeros",
    )
    transform.set_random_state(seed=seed)
    return np.asarray(transform(channels, spatial_size=channels.shape[1:]), dtype=np.float32)


def _bias_and_noise(shape: tuple[int, ...], rng: np.random.Generator, noise: float):
    """A smooth multiplicative bias field and two Gaussian fields for Rician noise."""
    from monai.transforms import RandBiasField

    bias_tf = RandBiasField(degree=3, coeff_range=(0.05, 0.15), prob=1.0)
    bias_tf.set_random_state(seed=int(rng.integers(2**31 - 1)))
    bias = np.asarray(bias_tf(np.ones((1, *shape), dtype=np.float32)), dtype=np.float32)[0]
    n1 = rng.normal(0.0, noise, size=shape).astype(np.float32)
    n2 = rng.normal(0.0, noise, size=shape).astype(np.float32)
    return bias, n1, n2


def _acquire(clean: np.ndarray, bias: np.ndarray, n1: np.ndarray, n2: np.ndarray) -> np.ndarray:
    # Rician magnitude of the bias-modulated signal; the same fields for truth and lesioned
    # image keep them identical outside the lesions.
    return np.sqrt((clean * bias + n1) ** 2 + n2**2)


def _flair_contrast(maps: dict[str, np.ndarray], lesion_weight: np.ndarray) -> np.ndarray:
    """Synthetic FLAIR: GM brighter than WM, CSF dark, lesions bright."""
    flair = 0.55 * maps["wm"] + 0.75 * maps["gm"] + 0.08 * maps["csf"]
    return flair * (1 - lesion_weight) + 1.1 * lesion_weight


# --------------------------------------------------------------------------- main


def make_demo_dataset(out_dir: str | Path, *, seed: int = 0, downsample: int = 1) -> DemoPaths:
    """Write the demo BIDS dataset, its lesion derivatives and the ground truth.

    Args:
        out_dir: folder to create ``bids/`` and ``truth/`` in.
        seed: random seed; the same seed writes byte-identical images.
        downsample: 1 for the template's 2 mm grid, 2 for ~4 mm (fast tests).

    Returns:
        The paths written, one :class:`DemoImage` per T1w.
    """
    from bidsfill.evaluate.simulate import lesion_weights

    if downsample < 1:
        raise ValueError("downsample must be >= 1")
    root = Path(out_dir)
    bids_dir, truth_dir = root / "bids", root / "truth"
    lesions_dir = bids_dir / "derivatives" / "lesions"
    maps, affine = _load_template(downsample)
    zooms = float(abs(affine[0, 0]))
    shape = maps["t1"].shape
    rng = np.random.default_rng(seed)
    sites = lesion_sites(
        maps["wm"], (zooms,) * 3, brain_mask=maps["brain"] > 0, csf_prob=maps["csf"]
    )
    # MS-like lesions of several sizes; at 4 mm the smallest would vanish, so scale the floor.
    vol_range = (0.05 if downsample == 1 else 0.2, 4.0)
    weights = {"periventricular": 0.55, "juxtacortical": 0.0, "deep": 0.45}

    def lesions(n: int) -> np.ndarray:
        return sample_lesion_mask(
            sites,
            sites.zooms,
            rng,
            kind="ms",
            n_lesions=n,
            volume_ml=vol_range,
            location_weights=weights,
        )

    # (subject, session, lesion mask in template space, dtype, max stored value)
    base01 = lesions(8)
    plans = [
        ("01", "1", base01, np.int16, float(rng.uniform(700, 1100))),
        ("01", "2", base01 | lesions(2), np.int16, float(rng.uniform(700, 1100))),
        ("02", None, lesions(9), np.uint8, 255.0),
    ]
    images: list[DemoImage] = []
    for subject, session, template_mask, dtype, scale in plans:
        ent = f"sub-{subject}" + (f"_ses-{session}" if session else "")
        rel = Path(f"sub-{subject}") / (f"ses-{session}" if session else "") / "anat"
        stack = np.stack(
            [
                maps["t1"],
                maps["gm"],
                maps["wm"],
                maps["csf"],
                maps["brain"],
                template_mask.astype(np.float32),
            ]
        )
        warped = _deform(stack, int(rng.integers(2**31 - 1)), strength=1.0, zooms=zooms)
        t1, gm, wm, csf, brain = (np.clip(c, 0, None) for c in warped[:5])
        mask = (warped[5] >= 0.5) & (wm >= 0.3)
        lesioned = apply_lesions(
            t1, mask, wm, rng, contrast=(0.3, 0.55), edge_sigma=1.0, zooms=(zooms,) * 3
        )
        bias, n1, n2 = _bias_and_noise(shape, rng, noise=0.02)
        truth_f, lesioned_f = _acquire(t1, bias, n1, n2), _acquire(lesioned, bias, n1, n2)
        # One scale for both, set so the brightest truth voxel maps to ~`scale`.
        factor = scale / float(np.percentile(truth_f, 99.9) * 1.15)
        info = np.iinfo(dtype)
        truth_i = np.clip(np.rint(truth_f * factor), 0, info.max)
        lesioned_i = np.clip(np.rint(lesioned_f * factor), 0, info.max)

        t1w_path = bids_dir / rel / f"{ent}_T1w.nii.gz"
        _save(lesioned_i, affine, t1w_path, dtype)
        _write_json(
            t1w_path.with_name(f"{ent}_T1w.json"),
            {"MagneticFieldStrength": 3, "Modality": "MR", "SkullStripped": True},
        )
        truth_path = truth_dir / rel / f"{ent}_desc-truth_T1w.nii.gz"
        _save(truth_i, affine, truth_path, dtype)
        truth_mask = truth_dir / rel / f"{ent}_label-lesion_mask.nii.gz"
        _save(mask, affine, truth_mask, np.uint8)
        _write_json(
            truth_mask.with_name(f"{ent}_label-lesion_mask.json"),
            {"Type": "Lesion", "Sources": [f"bids:raw:{rel.as_posix()}/{ent}_T1w.nii.gz"]},
        )

        flair_path = None
        if subject == "02":
            # FLAIR on a 2.5 mm grid, rotated, and the head moved a little between scans.
            flair_zoom = 2.5 * downsample
            centre = affine[:3, :3] @ (np.array(shape) / 2.0) + affine[:3, 3]
            f_shape = tuple(int(math.ceil(s * zooms / flair_zoom)) + 4 for s in shape)
            f_affine = np.eye(4)
            f_affine[:3, :3] = _rotation((4.0, -3.0, 6.0)) * flair_zoom
            f_affine[:3, 3] = centre - f_affine[:3, :3] @ (np.array(f_shape) / 2.0)
            motion = _rigid_about(centre, (1.5, 2.0, -2.5), (2.0, -3.0, 1.5))
            weight = lesion_weights(mask, 1.0, (zooms,) * 3)
            flair = _flair_contrast({"wm": wm, "gm": gm, "csf": csf}, weight)
            f_bias, f1, f2 = _bias_and_noise(shape, rng, noise=0.02)
            flair = _acquire(flair, f_bias, f1, f2)
            flair_img = _resample(flair, affine, motion @ f_affine, f_shape, order=1)
            flair_i = np.clip(np.rint(flair_img / np.percentile(flair_img, 99.9) * 230), 0, 255)
            flair_path = bids_dir / rel / f"{ent}_FLAIR.nii.gz"
            _save(flair_i, f_affine, flair_path, np.uint8)
            _write_json(
                flair_path.with_name(f"{ent}_FLAIR.json"),
                {"MagneticFieldStrength": 3, "Modality": "MR", "SkullStripped": True},
            )
            f_mask = _resample(mask.astype(np.float32), affine, motion @ f_affine, f_shape, order=1)
            mask_path = lesions_dir / rel / f"{ent}_desc-lesion_mask.nii.gz"
            _save(f_mask >= 0.5, f_affine, mask_path, np.uint8)
            _write_json(
                mask_path.with_name(f"{ent}_desc-lesion_mask.json"),
                {
                    "Type": "Lesion",
                    "Sources": [f"bids:raw:{rel.as_posix()}/{ent}_FLAIR.nii.gz"],
                    "SpatialReference": f"bids:raw:{rel.as_posix()}/{ent}_FLAIR.nii.gz",
                },
            )
        else:
            mask_path = bids_dir / rel / f"{ent}_label-lesion_roi.nii.gz"
            _save(mask, affine, mask_path, np.uint8)
        images.append(
            DemoImage(subject, session, t1w_path, mask_path, truth_path, truth_mask, flair_path)
        )

    _write_dataset_files(bids_dir, truth_dir, lesions_dir, seed=seed, downsample=downsample)
    return DemoPaths(root=root, bids=bids_dir, truth=truth_dir, lesions=lesions_dir, images=images)


def _resample(
    data: np.ndarray,
    src_affine: np.ndarray,
    dst_affine: np.ndarray,
    dst_shape: tuple[int, ...],
    order: int,
) -> np.ndarray:
    """Sample ``data`` at the world points of a target grid (scipy map_coordinates)."""
    from scipy import ndimage

    # voxel_dst -> world -> voxel_src; ndimage.affine_transform does the interpolation.
    matrix = np.linalg.inv(src_affine) @ dst_affine
    return ndimage.affine_transform(
        data, matrix, output_shape=dst_shape, order=order, mode="constant", cval=0.0
    )


def _write_dataset_files(
    bids_dir: Path, truth_dir: Path, lesions_dir: Path, *, seed: int, downsample: int
) -> None:
    generated = [
        {
            "Name": "bidsfill-demo",
            "Version": __version__,
            "CodeURL": "https://github.com/bidsfill/bidsfill",
            "Description": f"make_demo_dataset(seed={seed}, downsample={downsample})",
        }
    ]
    _write_json(
        bids_dir / "dataset_description.json",
        {
            "Name": "bidsfill demo: MNI152 2009 with synthetic MS-like lesions",
            "BIDSVersion": BIDS_VERSION,
            "DatasetType": "raw",
            "License": "CC-BY-4.0 (derived from the MNI ICBM152 2009 template; see README)",
            "Authors": ["bidsfill developers"],
            "HowToAcknowledge": "Cite Fonov et al. 2011 (NeuroImage 54:313) for the template.",
            "GeneratedBy": generated,
        },
    )
    (bids_dir / "README").write_text(
        "bidsfill demo dataset\n=====================\n\n"
        "Synthetic T1w images with MS-like T1-hypointense lesions, made by `bidsfill-demo`.\n"
        "sub-01 has two sessions with raw `_label-lesion_roi` masks (int16 images);\n"
        "sub-02 has one session (uint8) with a FLAIR on a different grid, and its lesion\n"
        "mask, on the FLAIR grid, in derivatives/lesions.\n"
        "The lesion-free images are in ../truth.\n\n" + _TEMPLATE_NOTE + "\n"
    )
    # The raw lesion masks follow the fMRIPrep convention, which the BIDS validator does
    # not know yet; list them so the dataset validates.
    (bids_dir / ".bidsignore").write_text("*_roi.nii.gz\n*_roi.json\nderivatives/\n")
    (bids_dir / "participants.tsv").write_text(
        "participant_id\tgroup\nsub-01\tpatient\nsub-02\tpatient\n"
    )
    _write_json(
        bids_dir / "participants.json",
        {"group": {"Description": "Synthetic group label", "Levels": {"patient": "lesioned"}}},
    )
    for path, name, desc, link in (
        (
            lesions_dir,
            "bidsfill demo lesion masks",
            "Lesion masks drawn on the FLAIR grid",
            "../..",
        ),
        (truth_dir, "bidsfill demo ground truth", "Lesion-free images and true masks", "../bids"),
    ):
        _write_json(
            path / "dataset_description.json",
            {
                "Name": name,
                "BIDSVersion": BIDS_VERSION,
                "DatasetType": "derivative",
                "GeneratedBy": generated,
                "SourceDatasets": [{"URL": "bids:raw"}],
                "DatasetLinks": {"raw": link},
            },
        )
        (path / "README").write_text(f"{name}\n\n{desc}, written by bidsfill-demo.\n")
