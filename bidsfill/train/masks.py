"""The mixture of lesion masks a training run draws: synthetic kinds and real masks.

The shapes themselves come from :mod:`bidsfill.lesions` (also used by the demo and
``bidsfill-simulate``); this module only mixes them for the training Dataset.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bidsfill.lesions.real import (
    RealMask,
    filter_real_masks,
    find_real_masks,
    place_mni_mask,
    warp_real_mask,
)
from bidsfill.lesions.synthetic import LesionSites, lesion_sites, sample_lesion_mask

__all__ = ["TRAINING_VOLUME_ML", "MaskGenerator"]



#: Volume ranges (ml) of the larger mask kinds in the shipped model's training, its
#: validation and its scorecard (the generator's own defaults are for other uses).
TRAINING_VOLUME_ML: dict[str, tuple[float, float]] = {"tumour": (3.0, 60.0), "cavity": (2.0, 40.0)}


class MaskGenerator:
    """Draws lesion masks for a training Dataset; caches the per-brain site maps.

    Example::

        gen = MaskGenerator(kinds={"ms": 0.6, "tumour": 0.2, "random": 0.2})
        mask = gen(wm_prob, zooms, rng, key=subject_id)

    Args:
        kinds: mapping of kind -> relative frequency ("ms", "tumour", "cavity",
            "random", "real"); "real" needs ``real_masks``.
        real_masks: a folder of real masks (see :func:`find_real_masks`) or a list.
        real_transform: ANTs transform used to place real masks ("SyN", "Affine", ...).
        volume_ml: optional per-kind override of the volume ranges.
        cache_size: how many brains' site maps (and real-mask warps) to keep.
        real_max_ml: leave out real masks larger than this (by the folder's index.tsv).
    """

    def __init__(
        self,
        kinds: dict[str, float] | Sequence[str] = ("ms",),
        *,
        real_masks: str | Path | Sequence[RealMask] | None = None,
        real_transform: str = "SyN",
        volume_ml: dict[str, tuple[float, float]] | None = None,
        cache_size: int = 8,
        real_max_ml: float | None = None,
    ) -> None:
        if not isinstance(kinds, dict):
            kinds = {k: 1.0 for k in kinds}
        unknown = set(kinds) - {"ms", "tumour", "cavity", "random", "real"}
        if unknown:
            raise ValueError(f"Unknown mask kinds: {sorted(unknown)}")
        if not kinds or sum(kinds.values()) <= 0:
            raise ValueError("kinds must give at least one kind a positive weight")
        if isinstance(real_masks, (str, Path)):
            folder = Path(real_masks)
            real_masks = filter_real_masks(
                find_real_masks(folder), real_max_ml, folder / "index.tsv"
            )
        self.real_masks = list(real_masks or [])
        if kinds.get("real", 0) > 0 and not self.real_masks:
            raise ValueError("kind 'real' needs a non-empty real_masks folder")
        self.kinds = dict(kinds)
        self.real_transform = real_transform
        self.volume_ml = dict(volume_ml or {})
        self.cache_size = int(cache_size)
        self._sites: dict[object, LesionSites] = {}
        self._real: dict[tuple[object, int], np.ndarray] = {}

    def sites(
        self,
        wm_prob: np.ndarray,
        zooms: Sequence[float],
        key: object = None,
        brain_mask: np.ndarray | None = None,
    ) -> LesionSites:
        """Site maps for one brain, cached under ``key`` (no caching when key is None)."""
        if key is not None and key in self._sites:
            return self._sites[key]
        sites = lesion_sites(wm_prob, zooms, brain_mask=brain_mask)
        if key is not None:
            if len(self._sites) >= self.cache_size:
                self._sites.pop(next(iter(self._sites)))
            self._sites[key] = sites
        return sites

    def __call__(
        self,
        wm_prob: np.ndarray,
        zooms: Sequence[float],
        rng: np.random.Generator,
        *,
        key: object = None,
        image: np.ndarray | None = None,
        affine: np.ndarray | None = None,
        brain_mask: np.ndarray | None = None,
        to_mni: np.ndarray | None = None,
    ) -> np.ndarray:
        """Draw one mask. ``image`` and ``affine`` are needed only for real masks;
        ``to_mni`` (the brain's RAS world -> MNI152 map) moves MNI-space masks without a
        registration of their own (:func:`place_mni_mask`)."""
        names = list(self.kinds)
        p = np.array([self.kinds[n] for n in names], dtype=np.float64)
        kind = names[int(rng.choice(len(names), p=p / p.sum()))]
        if kind == "real":
            if image is None or affine is None:
                raise ValueError("real masks need the target image and its affine")
            index = int(rng.integers(len(self.real_masks)))
            cache_key = (key, index)
            real = self.real_masks[index]
            if real.reference is None and to_mni is not None:
                return place_mni_mask(real, image.shape, affine, to_mni, brain_mask)
            if key is None or cache_key not in self._real:
                warped = warp_real_mask(
                    self.real_masks[index],
                    image,
                    affine,
                    seed=index,
                    transform=self.real_transform,
                    target_brain_mask=brain_mask,
                )
                if key is None:
                    return warped
                if len(self._real) >= self.cache_size:
                    self._real.pop(next(iter(self._real)))
                self._real[cache_key] = warped
            return self._real[cache_key].copy()
        sites = self.sites(wm_prob, zooms, key=key, brain_mask=brain_mask)
        return sample_lesion_mask(sites, zooms, rng, kind=kind, volume_ml=self.volume_ml.get(kind))
