"""How much of the default's correction to keep, and where, decided on scans that are
neither in its training set nor in its scorecard.

    python benchmarks/bench_correction_gate.py [--subjects ms07 ms19 ms26 tcgadu7294]
        [--model W] [--gates 0 --alphas 1 --tapers 0 3 --section NAME]

The default is residual: its fill is the ``nonlocal`` prefill plus a learned correction.
Three ways of trusting that correction less are measured here, on the multi-contrast
patients' T1w scans (``shared/data/multicontrast``) with one mask per kind in their
healthy tissue (their own lesions cut out, as in bench_flip.py):

- a size gate: lesion components smaller than N voxels keep the prefill (an earlier
  per-component look found the model's correction hurt the smallest ones);
- a shrinkage: prefill + alpha x correction;
- an edge taper (``--edge-taper MM``): the correction rises from the mask edge to full
  strength at MM mm deep (``bidsfill.diffusion.inference.taper_correction``).

Each case is filled once by the prefill and once by the model (its card's sampling with
the taper off); every variant is then scored from those two fills, so the table costs
two fills per case. Metrics in the mask; no tissue segmentation. Recorded in "## Correction gate on
unseen patients" of RESULTS.md.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time
from pathlib import Path

import numpy as np
from _heldout import DATA, PATIENT_CACHE, PATIENT_MASKS, PATIENTS, patient_cases
from _results import metric_cells, run_line, write_section

from bidsfill.diffusion.card import MODEL_VOXEL_MM, ModelCard

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MODEL = ROOT / "bidsfill" / "data" / "models" / "pseudo3d.safetensors"
SECTION = "Correction gate on unseen patients"
COLUMNS = [
    ("brats_psnr_01", "PSNR01", "{:.3f}"),
    ("brats_ssim", "SSIM", "{:.4f}"),
    ("ssim3d", "3D SSIM", "{:.4f}"),
    ("band_psnr_01", "edge PSNR01", "{:.2f}"),
]
GATES = (0, 300)
ALPHAS = (0.8, 1.0)
TAPERS = (0.0, 2.0, 3.0, 4.0)
#: Per-case PSNR01 columns: (gate, alpha, taper) -> heading.
PER_CASE = {(0, 0.0, 0.0): "prefill", (0, 1.0, 0.0): "full correction",
            (0, 1.0, 3.0): "3 mm taper"}  # fmt: skip


def _fills(
    case, model: Path, cache: Path, threads: int, shift: int | None = None,
    n_samples: int | None = None, antithetic: bool | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The case's prefill and default fill, cached by mask, model, crop shift and samples."""
    import torch

    from bidsfill.diffusion.inference import inpaint_volume
    from bidsfill.diffusion.weights import load_weights
    from bidsfill.fill.diffusion import mirror_images
    from bidsfill.fill.prefill import classical_prefill

    digest = hashlib.sha256(np.packbits(case.mask).tobytes())
    digest.update(hashlib.sha256(model.read_bytes()).digest())
    if shift is not None:  # the card's shift otherwise (none in the fills cached before)
        digest.update(f"shift={shift}".encode())
    if n_samples is not None:
        digest.update(f"n_samples={n_samples}".encode())
    card = ModelCard.load(model.with_suffix(".json"))
    if antithetic if antithetic is not None else card.sampling.antithetic:
        digest.update(b"antithetic=True")  # off in the fills cached before
    voxel = card.preprocessing.voxel_size  # None: the scan's own grid
    grid = None if voxel is None else [float(v) for v in voxel]
    if grid != list(MODEL_VOXEL_MM):  # a card-only variant (the fills cached before: 1 mm)
        digest.update(f"grid={grid}".encode())
    if grid is not None and not np.allclose(case.volume.zooms, grid, rtol=0.05):
        # resampled crops show the prefill, not the masked voxels, as context (session 15)
        digest.update(b"context=prefill")
    path = cache / f"{case.name.replace('#', '_').replace(':', '_')}-{digest.hexdigest()[:12]}.npz"
    if path.exists():
        got = np.load(path)
        return got["prefill"], got["model"]
    image, zooms = case.volume.image.astype(np.float32), case.volume.zooms
    prefill = classical_prefill(image, case.mask, zooms)
    net, card = load_weights(model, device="cpu")
    torch.set_num_threads(threads)
    extra, _ = mirror_images(image, case.mask, zooms, case.volume.affine, card,
                             {"prefill": prefill}, seed=0, n_threads=threads)  # fmt: skip
    out = inpaint_volume(image, case.mask, net, card, zooms=zooms, seed=0, edge_taper_mm=0,
                         shift_voxels=shift, n_samples=n_samples, antithetic=antithetic,
                         extra_images=extra)  # fmt: skip
    np.savez_compressed(path, prefill=prefill[case.mask], model=out.mean[case.mask])
    return prefill[case.mask], out.mean[case.mask]


def variant(
    case,
    prefill: np.ndarray,
    model: np.ndarray,
    sizes: np.ndarray,
    gate: int,
    alpha: float,
    taper: float,
) -> np.ndarray:
    """The case's image with the mask filled by prefill + alpha x correction, the
    correction dropped in components smaller than ``gate`` voxels (``sizes``: each mask
    voxel's component size) and tapered over ``taper`` mm from the mask edge."""
    from bidsfill.diffusion.inference import taper_correction

    mask = case.mask
    keep = sizes >= gate
    image = case.volume.image.astype(np.float32)
    first, out = image.copy(), image.copy()
    first[mask] = prefill
    out[mask] = prefill + np.where(keep, alpha * (model - prefill), 0.0)
    if taper:
        out, _ = taper_correction(first, out, mask, case.volume.zooms, taper)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--subjects", nargs="+", default=list(PATIENTS))
    p.add_argument("--kinds", nargs="+", default=["real-ms", "real-stroke", "ms", "tumour"])
    p.add_argument("--model", type=Path, default=MODEL)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cache-dir", type=Path, default=PATIENT_CACHE,
                   help="registrations (shared with compare_flair.py and bench_flip.py)")  # fmt: skip
    p.add_argument("--gates", nargs="+", type=int, default=list(GATES), metavar="VOXELS")
    p.add_argument("--alphas", nargs="+", type=float, default=list(ALPHAS))
    p.add_argument("--tapers", nargs="+", type=float, default=list(TAPERS), metavar="MM")
    p.add_argument("--dataset", type=Path, default=DATA / "multicontrast",
                   help="the patients' dataset; another one (make_coarse_patients.py) keeps "
                        "its masks in benchmarks/<its name>_masks.npz and its registrations "
                        "in <it>/cache")  # fmt: skip
    p.add_argument("--shift", type=int, default=None, metavar="VOXELS",
                   help="crop shift of the samples after the first (default: the card's)")
    p.add_argument("--n-samples", type=int, default=None,
                   help="fills averaged (default: the card's)")
    p.add_argument("--antithetic", action=argparse.BooleanOptionalAction, default=None,
                   help="antithetic starting noise on or off (default: the card's)")
    p.add_argument("--section", default=SECTION, help="the RESULTS.md section to write")
    p.add_argument("--no-record", action="store_true", help="print only")
    args = p.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    from bidsfill.diffusion.crops import lesion_components
    from bidsfill.evaluate.metrics import image_metrics

    start, load = time.perf_counter(), os.getloadavg()[0]
    masks_file = PATIENT_MASKS
    if args.dataset.resolve() != (DATA / "multicontrast").resolve():
        masks_file = HERE / f"{args.dataset.name}_masks.npz"
        if args.cache_dir == PATIENT_CACHE:
            args.cache_dir = args.dataset / "cache"
    fills = args.cache_dir / "gate"
    fills.mkdir(parents=True, exist_ok=True)
    cases = patient_cases(args.subjects, args.kinds, args.cache_dir, masks_file, args.dataset)
    sha = hashlib.sha256(args.model.read_bytes()).hexdigest()[:12]
    scores: dict[tuple[int, float, float], list[dict[str, float]]] = {}
    grid = [(0, 0.0, 0.0)]  # alpha 0: the prefill alone
    grid += [(g, a, t) for g in args.gates for a in args.alphas for t in args.tapers]
    per_case_keys = {key: name for key, name in PER_CASE.items() if key in grid}
    per_case = ["| case | voxels | " + " | ".join(per_case_keys.values()) + " |",
                "|---|---|" + "---|" * len(per_case_keys)]  # fmt: skip
    for case in cases:
        prefill, model = _fills(case, args.model, fills, args.threads, args.shift,
                                args.n_samples, args.antithetic)
        truth = case.volume.image
        labels = lesion_components(case.mask)[case.mask]
        sizes = np.bincount(labels)[labels]
        for key in grid:
            m = image_metrics(truth, variant(case, prefill, model, sizes, *key), case.mask)
            scores.setdefault(key, []).append(m)
        cells = [f"{scores[key][-1]['brats_psnr_01']:.2f}" for key in per_case_keys]
        per_case.append(f"| {case.name} | {int(case.mask.sum())} | " + " | ".join(cells) + " |")
        print(per_case[-1])
    head = ["gate (voxels)", "alpha", "edge taper (mm)", *(c[1] for c in COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (gate, alpha, taper), rows in scores.items():
        means = {k: float(np.mean([r[k] for r in rows])) for k, *_ in COLUMNS}
        lines.append(f"| {gate} | {alpha:g} | {taper:g} | "
                     + " | ".join(metric_cells(means, COLUMNS)) + " |")  # fmt: skip
    body = "\n".join(
        [
            f"Model `{args.model.name}` (sha256 `{sha}…`), its card's sampling"
            + ("" if args.shift is None else f" with crops shifted {args.shift} voxels")
            + ("" if args.n_samples is None else f", {args.n_samples} fills")
            + ("" if args.antithetic is None
               else f", antithetic noise {'on' if args.antithetic else 'off'}")
            + f". {len(cases)} "
            f"cases on patients it never saw ({', '.join(args.subjects)}; dataset "
            f"{args.dataset.name}; kinds "
            f"{', '.join(args.kinds)}). Alpha 0: the nonlocal prefill alone; gate 0, alpha "
            "1, taper 0: the model's full correction.",
            "",
            *lines,
            "",
            "PSNR01 per case:",
            "",
            *per_case,
            "",
            run_line("bench_correction_gate.py", args.threads, load, start) + ".",
        ]
    )
    print(body)
    if not args.no_record:
        write_section(HERE / "RESULTS.md", args.section, body)


if __name__ == "__main__":
    main()
