"""Intensity check of a fill: the filled voxels should look like normal-appearing white
matter (NAWM), not like the lesion they replace, nor only like the lesion's ring.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from bidsfill.io.atomic import part_file

__all__ = ["histogram_figure", "intensity_samples", "intensity_table", "fill_warning"]

_COLOURS = {"lesion (original)": "#d62728", "filled": "#1f77b4", "NAWM": "#2ca02c",
            "ring": "#ff7f0e"}  # fmt: skip


def intensity_samples(
    original: np.ndarray,
    filled: np.ndarray,
    mask: np.ndarray,
    dseg_orig: np.ndarray,
    zooms: tuple[float, ...],
    ring_mm: float = 3.0,
    nawm_gap_mm: float = 4.0,
) -> dict[str, np.ndarray]:
    """Voxel values of the lesion before and after filling, of NAWM and of the ring.

    Args:
        dseg_orig: tissue labels of the original (2 = WM); NAWM is WM at least
            ``nawm_gap_mm`` from any lesion, the ring the brain within ``ring_mm`` of one.
    """
    mask = mask.astype(bool)
    step = float(min(zooms[:3]))
    near = ndimage.binary_dilation(mask, iterations=max(1, round(nawm_gap_mm / step)))
    ring = ndimage.binary_dilation(mask, iterations=max(1, round(ring_mm / step))) & ~mask
    ring &= dseg_orig > 0
    return {
        "lesion (original)": original[mask],
        "filled": filled[mask],
        "NAWM": original[(dseg_orig == 2) & ~near],
        "ring": original[ring],
    }


def intensity_table(samples: dict[str, np.ndarray]) -> list[dict[str, object]]:
    """Voxel count, median and interquartile range of each sample."""
    rows = []
    for name, values in samples.items():
        if values.size:
            q1, med, q3 = np.percentile(values, [25, 50, 75])
            rows.append({"region": name, "voxels": int(values.size), "median": round(float(med), 2),
                         "iqr": f"{q1:.1f} - {q3:.1f}"})  # fmt: skip
        else:
            rows.append({"region": name, "voxels": 0, "median": "n/a", "iqr": "n/a"})
    return rows


def fill_warning(samples: dict[str, np.ndarray]) -> str | None:
    """A sentence when the filled voxels sit nearer the lesion's intensity than NAWM's."""
    lesion, filled, nawm = (samples[k] for k in ("lesion (original)", "filled", "NAWM"))
    if not (lesion.size and filled.size and nawm.size):
        return None
    m_lesion, m_filled, m_nawm = (float(np.median(v)) for v in (lesion, filled, nawm))
    if abs(m_filled - m_nawm) > abs(m_filled - m_lesion):
        return (f"The filled voxels (median {m_filled:.1f}) are closer to the lesion's intensity "
                f"({m_lesion:.1f}) than to normal-appearing white matter ({m_nawm:.1f}).")  # fmt: skip
    return None


def histogram_figure(samples: dict[str, np.ndarray], out_file: Path) -> Path:
    """Overlaid density histograms of the samples, on one shared intensity axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    present = {k: v for k, v in samples.items() if v.size}
    pooled = np.concatenate(list(present.values())) if present else np.zeros(1)
    lo, hi = np.percentile(pooled, [0.5, 99.5])
    bins = np.linspace(lo, hi if hi > lo else lo + 1, 60)
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for name, values in present.items():
        ax.hist(values, bins=bins, density=True, histtype="step", linewidth=1.8,
                color=_COLOURS.get(name), label=f"{name} (n={values.size})")  # fmt: skip
        ax.axvline(float(np.median(values)), color=_COLOURS.get(name), linestyle=":", linewidth=1)
    ax.set_xlabel("T1w intensity")
    ax.set_ylabel("density")
    ax.legend(fontsize=8, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    out_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        with part_file(out_file) as tmp:
            fig.savefig(tmp, dpi=90, format="png")
    finally:
        plt.close(fig)
    return out_file
