"""The participant run of a BIDS microscopy dataset: repair artefacts in ``micr/`` images.

A separate branch of ``bidsfill BIDS OUT participant`` (issue 18), taken when the dataset
holds microscopy images and no anatomical MRI; it does not build the Nipype workflow.
Per image with an artefact mask: check the inputs (one sentence and exit code 16 each:
mask of another size, RGB image or mask, mask covering everything, non-binary mask),
repair with the histology DDPM + RePaint (``bidsfill.microscopy``), write
``<entities>_desc-repaired_<suffix>.<ext>`` (and ``desc-repairstd`` when ``--n-samples``
> 1) with sidecars through the outputs table, and a report ``sub-<label>.html``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from bidsfill.exit_codes import BidsfillExit, ExitCode

__all__ = ["LARGE_PIXELS", "run_microscopy"]

#: Images with more pixels than this (uncompressed TIFF) are repaired window by window
#: from memory maps instead of in memory.
LARGE_PIXELS = 8192 * 8192


def _check_inputs(images) -> list[tuple[Any, np.ndarray, Any, np.ndarray]]:  # noqa: ANN001
    from bidsfill.microscopy.io import MicroscopyInputError, check_mask, open_lazy, read_mask

    checked = []
    for img in images:
        if img.mask is None:
            continue
        try:
            array, meta = open_lazy(img.path)
            raw = read_mask(img.mask)
            mask = check_mask(raw, array.shape, name=img.mask.name)
        except MicroscopyInputError as err:
            raise BidsfillExit(str(err), ExitCode.INVALID_DATASET) from None
        except OSError as err:
            raise BidsfillExit(f"{img.path.name} cannot be read ({err}).",
                               ExitCode.INVALID_DATASET) from None  # fmt: skip
        checked.append((img, array, meta, mask))
    return checked


def _load_model(path: str | None):  # noqa: ANN202
    from bidsfill.microscopy.model import ARCH, load_model

    try:
        net, card = load_model(path)
    except ValueError as err:
        raise BidsfillExit(str(err), ExitCode.USAGE) from None
    if card.architecture != ARCH:
        raise BidsfillExit(f"The model {Path(path or '').name} is a {card.architecture} model; "
                           f"microscopy images need a {ARCH} model.", ExitCode.USAGE)  # fmt: skip
    return net, card


def _repair(net, card, img, array, meta, mask, out_dir, uris, wf, seed):  # noqa: ANN001, ANN202
    from bidsfill.bids.outputs import write_microscopy
    from bidsfill.microscopy.io import create_like, write_image
    from bidsfill.microscopy.model import model_pixel_size, repaint_image, repaint_large

    n = max(1, int(wf.n_samples or 1))
    kw = {"pixel_size_um": img.pixel_size_um, "steps": wf.steps,
          "jump_length": wf.jump_length, "jump_n_sample": wf.jump_n_sample}  # fmt: skip
    t0 = time.monotonic()
    large = array.size > LARGE_PIXELS and meta.format == "tiff" and n == 1
    sidecar = {
        **img.sidecar,
        "Description": "The source image with its artefact (mask) repaired by an "
        "unconditional DDPM with RePaint (Kropp et al.); pixels outside the mask are the "
        "source's, unchanged.",
        "Sources": [uris["raw"], uris["mask"]],
        "RepairMethod": "ddpm-repaint",
        "Model": card.name,
        "ModelSHA256": card.sha256,
        "ModelPixelSizeUm": model_pixel_size(card),
        "MaskedFraction": round(float(mask.mean()), 5),
        "Seed": int(seed),
        "NSamples": n,
    }
    if large:
        def write(path: Path) -> None:
            out = create_like(path, meta)
            for ys in range(0, array.shape[0], 1024):
                out[ys : ys + 1024] = array[ys : ys + 1024]
            info = repaint_large(net, card, array, mask, out, seed=seed, **kw)
            out.flush()
            sidecar.update(_info(info))
            sidecar["RepairSeconds"] = round(time.monotonic() - t0, 2)
            del out

        dst = write_microscopy(out_dir, "repaired", img.entities, img.suffix, img.extension,
                               write, sidecar)  # fmt: skip
        return dst, None
    array = np.asarray(array)
    samples, info = [], None
    for i in range(n):
        out, info = repaint_image(net, card, array, mask, seed=seed + i, **kw)
        samples.append(out)
    sidecar.update(_info(info))
    sidecar["RepairSeconds"] = round(time.monotonic() - t0, 2)
    dst = write_microscopy(out_dir, "repaired", img.entities, img.suffix, img.extension,
                           lambda p: write_image(p, samples[0], meta, ext=_ext(img)),
                           sidecar)  # fmt: skip
    if n > 1:
        std = np.std(np.stack(samples).astype(np.float64), axis=0)
        std = np.clip(np.rint(std), 0, np.iinfo(array.dtype).max).astype(array.dtype)
        std_meta = {k: v for k, v in img.sidecar.items() if k.startswith("PixelSize")}
        std_meta.update({"Description": f"Pixelwise standard deviation of {n} independent "
                         "repairs (0 outside the mask), in the image's units, rounded.",
                         "Sources": [uris["raw"], uris["mask"]]})  # fmt: skip
        write_microscopy(out_dir, "repairstd", img.entities, img.suffix, img.extension,
                         lambda p: write_image(p, std, meta, ext=_ext(img)), std_meta)  # fmt: skip
    return dst, samples[0]


def _ext(img) -> str:  # noqa: ANN001
    return ".png" if img.extension == ".png" else ".tif"


def _info(info) -> dict[str, Any]:  # noqa: ANN001
    return {"Sampler": {"Name": info.sampler, "Steps": info.steps,
                        "JumpLength": info.jump_length, "JumpNSample": info.jump_n_sample,
                        "ModelCalls": info.model_calls, "Tiles": info.tiles},
            "ResampledToModelPixelSize": info.resampled}  # fmt: skip


def run_microscopy(config) -> int:  # noqa: ANN001 - the bidsfill.config module
    """Repair every microscopy image with an artefact mask; the exit code."""
    from bidsfill.bids.derivatives import bids_uri, linked_dataset_name, write_dataset_description
    from bidsfill.bids.microscopy import _mask_roots, discover_microscopy

    ex, wf = config.execution, config.workflow
    bids_dir, out_dir = Path(ex.bids_dir), Path(ex.output_dir)
    images, warnings = discover_microscopy(bids_dir, ex.participant_label, ex.derivatives)
    if not images:
        raise BidsfillExit("No microscopy images found for the selected participants.",
                           ExitCode.NO_MATCH)  # fmt: skip
    checked = _check_inputs(images)
    if not checked:
        raise BidsfillExit("No microscopy image has an artefact mask "
                           "(<entities>_desc-artefact_mask.png or .tif in a --derivatives "
                           "dataset); nothing to repair.", ExitCode.NO_MATCH)  # fmt: skip
    net, card = _load_model(wf.model)
    roots = _mask_roots(bids_dir, list(ex.derivatives or []))
    out_dir.mkdir(parents=True, exist_ok=True)
    description = write_dataset_description(out_dir, bids_dir, roots)
    meta = json.loads(description.read_text())
    meta["Name"] = "bidsfill histology repair (BIDS microscopy)"
    description.write_text(json.dumps(meta, indent=2) + "\n")
    for warning in warnings:
        print(f"bidsfill: warning: {warning}")
    seed = int(config.seeds.master)
    rows: dict[str, list[dict[str, Any]]] = {}
    for img, array, meta, mask in checked:
        uris = {"raw": bids_uri(img.path, bids_dir, linked_dataset_name(out_dir, bids_dir)),
                "mask": bids_uri(img.mask, img.mask_root,
                                 linked_dataset_name(out_dir, img.mask_root))}  # fmt: skip
        t0 = time.monotonic()
        dst, repaired = _repair(net, card, img, array, meta, mask, out_dir, uris, wf, seed)
        print(f"bidsfill: repaired {img.path.name} ({100 * mask.mean():.1f} % masked) in "
              f"{time.monotonic() - t0:.1f} s -> {dst.relative_to(out_dir)}")  # fmt: skip
        rows.setdefault(img.subject, []).append(
            {"img": img, "array": array, "mask": mask, "repaired": repaired, "dst": dst})
    from bidsfill.report.microscopy import write_microscopy_report

    for subject, items in rows.items():
        write_microscopy_report(out_dir, subject, items, card)
    return int(ExitCode.SUCCESS)
