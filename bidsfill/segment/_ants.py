"""Small bridges between (array, affine) pairs and antspyx, and its process-wide knobs."""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import nibabel as nib
import numpy as np

__all__ = ["ants_env", "to_ants"]

_LOCK = threading.Lock()


def to_ants(data: np.ndarray, affine: np.ndarray) -> Any:
    """An ANTsImage with the voxel order of ``data`` and the world geometry of ``affine``."""
    import ants

    img = nib.Nifti1Image(np.asarray(data, dtype=np.float32), np.asarray(affine, dtype=float))
    img.header.set_xyzt_units("mm", "sec")
    return ants.from_nibabel_nifti(img)


@contextmanager
def ants_env(seed: int, n_threads: int) -> Iterator[None]:
    """Run antspyx calls with a fixed seed, a thread count and a private temp folder.

    ``ANTS_RANDOM_SEED`` and ``ants.config._random_seed`` seed registration's metric
    sampling; ``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS`` bounds ITK's threads. antspyx's
    ``atropos`` writes its posteriors with ``tempfile.mktemp`` and never deletes them, so
    ``tempfile.tempdir`` points at a folder removed on exit. All three are process-wide,
    hence the lock and the restore.
    """
    import ants

    keys = ("ANTS_RANDOM_SEED", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS")
    with _LOCK, tempfile.TemporaryDirectory(prefix="bidsfill-ants-") as tmp:
        saved_env = {k: os.environ.get(k) for k in keys}
        saved_tmp, saved_seed = tempfile.tempdir, ants.config._random_seed
        os.environ["ANTS_RANDOM_SEED"] = str(int(seed))
        os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(max(1, int(n_threads)))
        tempfile.tempdir, ants.config._random_seed = tmp, int(seed)
        try:
            yield
        finally:
            tempfile.tempdir, ants.config._random_seed = saved_tmp, saved_seed
            for key, value in saved_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
