"""The first baseline anyone would try: voxelwise linear regression between contrasts.

``target ~ b0 + sum_i b_i * source_i`` on normalised intensities (:mod:`.normalise`),
fitted by least squares on the brain voxels of the training subjects, then applied voxel
by voxel to a new subject's sources.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["LinearBaseline"]


@dataclass(frozen=True)
class LinearBaseline:
    """Intercept and one coefficient per source, in source order."""

    intercept: float
    coefficients: tuple[float, ...]

    @classmethod
    def fit(
        cls,
        sources: Sequence[Sequence[np.ndarray]],
        targets: Sequence[np.ndarray],
        masks: Sequence[np.ndarray],
        *,
        max_voxels: int = 2_000_000,
        seed: int = 0,
    ) -> LinearBaseline:
        """Fit on subjects: ``sources[s]`` the source images of subject s, ``targets[s]``
        its target, ``masks[s]`` its brain; at most ``max_voxels`` voxels in all."""
        rng = np.random.default_rng(seed)
        rows, ys = [], []
        per = max(1, max_voxels // max(1, len(targets)))
        for srcs, tgt, mask in zip(sources, targets, masks, strict=False):
            idx = np.flatnonzero(np.asarray(mask, bool))
            if idx.size > per:
                idx = rng.choice(idx, per, replace=False)
            rows.append(np.stack([np.asarray(s).ravel()[idx] for s in srcs], axis=1))
            ys.append(np.asarray(tgt).ravel()[idx])
        x = np.concatenate(rows).astype(np.float64)
        y = np.concatenate(ys).astype(np.float64)
        design = np.column_stack([np.ones(len(x)), x])
        beta, *_ = np.linalg.lstsq(design, y, rcond=None)
        return cls(float(beta[0]), tuple(float(b) for b in beta[1:]))

    def predict(self, sources: Sequence[np.ndarray]) -> np.ndarray:
        out = np.full(np.asarray(sources[0]).shape, self.intercept, dtype=np.float64)
        for b, s in zip(self.coefficients, sources, strict=False):
            out += b * np.asarray(s, dtype=np.float64)
        return out.astype(np.float32)

    def to_dict(self) -> dict[str, object]:
        return {"intercept": self.intercept, "coefficients": list(self.coefficients)}
