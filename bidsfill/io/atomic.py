"""Write a file whole or not at all: through a ``.part`` file beside it.

A reader never sees half a file under the final name, and a write that fails (a full
disk, a killed figure) removes its ``.part`` file instead of leaving it in the dataset.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

__all__ = ["PART_SUFFIX", "part_file"]

PART_SUFFIX = ".part"


@contextlib.contextmanager
def part_file(path: str | Path, tag: str = "") -> Iterator[Path]:
    """Yield ``<path>[.tag].part`` to write; on success it becomes ``path``.

    On any error (or interruption) the ``.part`` file is removed and the error goes on;
    ``path`` keeps what it held before. ``tag`` keeps writers of the same file apart.
    """
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{tag}{PART_SUFFIX}" if tag else path.name + PART_SUFFIX)
    try:
        yield tmp
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise
