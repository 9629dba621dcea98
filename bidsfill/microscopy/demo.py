"""A small BIDS-microscopy demo dataset from the two shared real fields, with artefact
masks (``bidsfill-demo --microscopy DIR``).

``DIR/bids`` holds one crop of the held-out quarter of each field (the model never saw
it): sub-demics01 as PNG, sub-demics02 as TIFF, with their sidecars. The generated
artefact masks (a tear and a hole) are in the derivatives dataset nested at
``DIR/bids/derivatives/artefacts`` (found by ``bidsfill DIR/bids DIR/out participant``
without ``--derivatives``). ``DIR/truth`` keeps nothing extra: the crops themselves are
the intact truth, since the masks cover intact tissue.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from bidsfill.microscopy.io import read_image, write_image
from bidsfill.microscopy.masks import artefact_mask
from bidsfill.microscopy.train import heldout_quarter

__all__ = ["SHARED_HISTOLOGY", "make_microscopy_demo"]

SHARED_HISTOLOGY = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "histology"
_FIELDS = (
    # subject, source stem (under sub-X/micr), output extension, crop size, mask kind, fraction
    ("demics01", "sub-demics01_sample-01_BF", ".png", 192, "tear", 0.08),
    ("demics02", "sub-demics02_sample-01_acq-bestfocus_BF", ".tif", 160, "hole", 0.12),
)


def _json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def make_microscopy_demo(out: Path, *, seed: int = 0, source: Path | None = None) -> Path:
    """Write ``out/bids`` (with ``derivatives/artefacts``); return the BIDS root."""
    src = Path(source or SHARED_HISTOLOGY)
    if not (src / "dataset_description.json").is_file():
        raise FileNotFoundError(f"The shared histology fields are not at {src}.")
    bids = Path(out) / "bids"
    deriv = bids / "derivatives" / "artefacts"
    _json(bids / "dataset_description.json", {
        "Name": "bidsfill histology repair demo (crops of two real cell-body stained fields)",
        "BIDSVersion": "1.9.0", "DatasetType": "raw",
        "License": "BSD-3-Clause-style licence of FZJ-INM1-BDA/demics (Copyright (c) 2020 "
                   "Forschungszentrum Juelich, INM-1)",
        "Authors": ["Forschungszentrum Juelich INM-1 (original images, via demics)"],
        "GeneratedBy": [{"Name": "bidsfill-demo --microscopy"}],
    })  # fmt: skip
    (bids / "README").write_text(
        "Crops of the held-out quarters of two real cell-body stained cortex fields from the "
        "FZJ-INM1-BDA/demics repository (BSD-3-Clause-style licence, Copyright (c) 2020 "
        "Forschungszentrum Juelich, INM-1). Pixel size about 1 um (assumed). Artefact masks "
        "(generated: a tear and a hole) are in derivatives/artefacts.\n"
    )
    for name in ("participants.tsv", "participants.json", "samples.json"):
        shutil.copyfile(src / name, bids / name)
    samples = ["sample_id\tparticipant_id\tsample_type"]
    _json(deriv / "dataset_description.json", {
        "Name": "Generated artefact masks", "BIDSVersion": "1.9.0",
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "bidsfill-demo", "Description": "bidsfill.microscopy.masks"}],
    })  # fmt: skip
    rng = np.random.default_rng(seed)
    for subject, stem, ext, size, kind, frac in _FIELDS:
        micr = src / f"sub-{subject}" / "micr"
        image, meta = read_image(micr / f"{stem}.png")
        ys, xs = heldout_quarter(image.shape)
        crop = np.ascontiguousarray(image[ys, xs][:size, :size])
        dst = bids / f"sub-{subject}" / "micr" / f"{stem}{ext}"
        write_image(dst, crop, meta if ext == ".png" else None)
        sidecar = json.loads((micr / f"{stem}.json").read_text())
        sidecar["ImageSize"] = [size, size]
        sidecar["Conversion"] = (f"{sidecar.get('Conversion', '')}; bidsfill demo: crop rows "
                                 f"{ys.start}-{ys.start + size}, columns {xs.start}-"
                                 f"{xs.start + size} (held-out quarter), as {ext}")  # fmt: skip
        _json(dst.with_suffix(".json"), sidecar)
        mask = artefact_mask(crop.shape, frac, kind, rng=rng)
        entities = stem.rsplit("_", 1)[0]
        mdst = deriv / f"sub-{subject}" / "micr" / f"{entities}_desc-artefact_mask.png"
        write_image(mdst, (mask * 255).astype(np.uint8))
        samples.append(f"sample-01\tsub-{subject}\ttissue")
    (bids / "samples.tsv").write_text("\n".join(samples) + "\n")
    return bids
