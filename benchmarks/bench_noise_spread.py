"""How much a one-step fill moves with its noise draw, on patients no model trained on.

    python benchmarks/bench_noise_spread.py --models A.safetensors B.safetensors
        [--seeds 0 1] [--section NAME]

A one-step DDIM fill is the network's answer at t = T - 1, where x_t is pure noise: an
x0-predicting network trained with MSE should then give the posterior mean, the same for
every draw. What it gives instead varies with the draw, and that spread is error the
card's sampling can only average away with more model calls (more fills). For each
model, every kept patient case (``benchmarks/patient_masks.npz``, as bench_correction_gate.py
places them) is filled once per seed from the unmirrored crop (one fill, no taper, no
flip); the table gives the mean PSNR01 of those fills, of their mean, and the RMS
difference between two draws inside the mask (normalised as PSNR01 normalises: the
0.5-99.5 percentiles of the scan outside the mask to [0, 1]).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time
from pathlib import Path

import numpy as np
from _heldout import PATIENT_CACHE, PATIENT_MASKS, PATIENTS, patient_cases
from _results import run_line, write_section

HERE = Path(__file__).resolve().parent
SECTION = "Noise spread of one-step fills on unseen patients"


def one_fill(case, model: Path, seed: int, cache: Path, threads: int) -> np.ndarray:  # noqa: ANN001
    """The mask voxels of one unmirrored, untapered fill of ``case`` by ``model``."""
    import torch

    from bidsfill.diffusion.inference import inpaint_volume
    from bidsfill.diffusion.weights import load_weights
    from bidsfill.fill.prefill import classical_prefill

    digest = hashlib.sha256(np.packbits(case.mask).tobytes())
    digest.update(hashlib.sha256(model.read_bytes()).digest())
    name = case.name.replace("#", "_").replace(":", "_")
    path = cache / f"{name}-{digest.hexdigest()[:12]}-seed{seed}.npy"
    if path.exists():
        return np.load(path)
    image, zooms = case.volume.image.astype(np.float32), case.volume.zooms
    prefill = classical_prefill(image, case.mask, zooms)
    net, card = load_weights(model, device="cpu")
    torch.set_num_threads(threads)
    out = inpaint_volume(image, case.mask, net, card, zooms=zooms, seed=seed, n_samples=1,
                         edge_taper_mm=0, extra_images={"prefill": prefill})  # fmt: skip
    np.save(path, out.mean[case.mask])
    return out.mean[case.mask]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", type=Path, required=True)
    p.add_argument("--seeds", nargs=2, type=int, default=[0, 1])
    p.add_argument("--subjects", nargs="+", default=list(PATIENTS))
    p.add_argument("--kinds", nargs="+", default=["real-ms", "real-stroke", "ms", "tumour"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--section", default=SECTION)
    p.add_argument("--no-record", action="store_true", help="print only")
    args = p.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    from bidsfill.evaluate.metrics import brats_normalize, image_metrics

    start, load = time.perf_counter(), os.getloadavg()[0]
    cache = PATIENT_CACHE / "spread"
    cache.mkdir(parents=True, exist_ok=True)
    cases = patient_cases(args.subjects, args.kinds, PATIENT_CACHE, PATIENT_MASKS)
    lines = [
        "| model | sha256 | PSNR01, one fill (seed "
        f"{args.seeds[0]} / {args.seeds[1]}) | PSNR01, mean of the two | "
        "RMS between the two draws |",
        "|---|---|---|---|---|",
    ]
    for model in args.models:
        sha = hashlib.sha256(model.read_bytes()).hexdigest()[:12]
        psnr: dict[str, list[float]] = {"a": [], "b": [], "mean": []}
        rms = []
        for case in cases:
            a, b = (one_fill(case, model, s, cache, args.threads) for s in args.seeds)
            truth = case.volume.image
            voided = np.where(case.mask, 0.0, truth)  # the range PSNR01 normalises with
            na, nb = (brats_normalize(f, voided) for f in (a, b))
            rms.append(float(np.sqrt(np.mean((na - nb) ** 2))))
            for key, fill in (("a", a), ("b", b), ("mean", (a + b) / 2)):
                filled = truth.astype(np.float32).copy()
                filled[case.mask] = fill
                psnr[key].append(image_metrics(truth, filled, case.mask)["brats_psnr_01"])
        row = (f"| `{model.name}` | `{sha}…` | {np.mean(psnr['a']):.3f} / "
               f"{np.mean(psnr['b']):.3f} | {np.mean(psnr['mean']):.3f} | "
               f"{np.mean(rms):.4f} |")  # fmt: skip
        print(row, flush=True)
        lines.append(row)
    body = "\n".join(
        [
            f"{len(cases)} kept cases on patients no model trained on ({', '.join(args.subjects)};"
            f" kinds {', '.join(args.kinds)}); each model fills each case once per seed from "
            "the unmirrored crop (one DDIM step, no flip, no taper). RMS: between the two "
            "draws inside the mask, both normalised as PSNR01 normalises (percentiles of "
            "the scan outside the mask), averaged over the cases.",
            "",
            *lines,
            "",
            run_line("bench_noise_spread.py", args.threads, load, start) + ".",
        ]
    )
    print(body)
    if not args.no_record:
        write_section(HERE / "RESULTS.md", args.section, body)


if __name__ == "__main__":
    main()
