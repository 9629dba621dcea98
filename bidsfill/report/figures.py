"""Report figures: the lesion region before and after filling, with the mask contour."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402

__all__ = ["before_after_figure"]


def _slices_through(mask: np.ndarray) -> tuple[int, int, int]:
    if not mask.any():
        return tuple(s // 2 for s in mask.shape)  # type: ignore[return-value]
    # The slice of each axis with the most lesion voxels shows the lesions best.
    return tuple(
        int(np.argmax(mask.sum(axis=tuple(a for a in range(3) if a != ax)))) for ax in range(3)
    )  # type: ignore[return-value]


def before_after_figure(
    original: np.ndarray, filled: np.ndarray, mask: np.ndarray, out_file: str | Path
) -> Path:
    """Axial, coronal and sagittal slices through the lesions: original (top) and filled.

    The lesion outline is drawn in red on both rows so a reader sees what was replaced.
    """
    mask = np.asarray(mask, bool)
    centre = _slices_through(mask)
    brain = original[original > 0]
    vmin, vmax = np.percentile(brain, [1, 99.5]) if brain.size else (0, 1)
    fig, axes = plt.subplots(2, 3, figsize=(9, 6), facecolor="black")
    for col, axis in enumerate((2, 1, 0)):
        for row, (image, title) in enumerate(((original, "original"), (filled, "filled"))):
            ax = axes[row, col]
            sl = [slice(None)] * 3
            sl[axis] = centre[axis]
            plane = np.rot90(image[tuple(sl)])
            outline = np.rot90(mask[tuple(sl)])
            ax.imshow(plane, cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
            if outline.any():
                edge = outline & ~ndimage.binary_erosion(outline)
                overlay = np.ma.masked_where(~edge, edge)
                ax.imshow(overlay, cmap="autumn", alpha=0.9, interpolation="nearest")
            ax.set_axis_off()
            if col == 0:
                ax.set_title(title, color="white", loc="left", fontsize=10)
    fig.tight_layout()
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_file, dpi=80, facecolor="black")
    plt.close(fig)
    return out_file
