"""What a participant run shows while it runs, and what ``--resource-monitor`` records.

Nipype calls a *status callback* in the main process when a node starts, ends or fails
(Linear and MultiProc alike). :class:`NodeProgress` turns those calls into console lines
naming the subject and the node: on a terminal a line when a node starts and one when it
ends; elsewhere (a log file, a batch job) only the line when it ends, so logs stay short.
With a resource log it also appends each finished node's peak memory and CPU use, which
Nipype measures when its resource monitor is enabled, as JSON lines.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

__all__ = ["NodeProgress", "node_subject", "RESOURCE_LOG"]

RESOURCE_LOG = "resource_monitor.jsonl"
"""File name of the per-subject resource log, in ``sub-<label>/log/<run_uuid>/``."""


def node_subject(fullname: str) -> tuple[str, str]:
    """``("sub-01", "fill_sub01_ses1_wf.fill")`` from ``bidsfill_wf.sub_01_wf.fill_...``.

    The subject workflows are named ``sub_<label>_wf`` (labels are alphanumeric, so the
    name gives the label back); a node outside them keeps its full name.
    """
    parts = fullname.split(".")
    if len(parts) >= 3 and parts[1].startswith("sub_") and parts[1].endswith("_wf"):
        return f"sub-{parts[1][4:-3]}", ".".join(parts[2:])
    return "", fullname


class NodeProgress:
    """A Nipype ``status_callback``: one console line per node (two on a terminal).

    Parameters
    ----------
    stream
        Where the lines go (stderr by default, beside the log).
    tty
        Whether ``stream`` is a terminal (default: ask it).
    resource_logs
        Subject (``sub-01``) -> JSON-lines file for each finished node's measured peak
        memory and CPU (``--resource-monitor``); None records nothing.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        tty: bool | None = None,
        resource_logs: dict[str, Path] | None = None,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.tty = bool(isatty and isatty()) if tty is None else tty
        self.resource_logs = resource_logs
        self._started: dict[str, float] = {}
        self._done = 0
        self._lock = threading.Lock()  # MultiProc calls back from its result threads too

    def __call__(self, node: Any, status: str) -> None:
        subject, name = node_subject(str(node.fullname))
        who = f"{subject}: " if subject else ""
        with self._lock:
            now = time.monotonic()
            if status == "start":
                self._started[node.fullname] = now
                if self.tty:
                    self._write(f"{who}{name} started")
                return
            seconds = now - self._started.pop(node.fullname, now)
            if status == "end":
                self._done += 1
                self._write(f"{who}{name} done in {seconds:.0f} s ({self._done} nodes done)")
                if self.resource_logs is not None and subject in self.resource_logs:
                    self._record(self.resource_logs[subject], node, seconds)
            else:
                self._write(f"{who}{name} failed after {seconds:.0f} s")

    def _write(self, text: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        print(f"{stamp} bidsfill: {text}", file=self.stream, flush=True)

    @staticmethod
    def _record(path: Path, node: Any, seconds: float) -> None:
        runtime = getattr(getattr(node, "result", None), "runtime", None)
        row = {
            "node": str(node.fullname),
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "seconds": round(seconds, 2),
            "n_procs": getattr(node, "n_procs", None),
            "mem_gb_requested": getattr(node, "mem_gb", None),
            # Measured by Nipype's resource monitor in the node's own process.
            "mem_peak_gb": getattr(runtime, "mem_peak_gb", None),
            "cpu_percent": getattr(runtime, "cpu_percent", None),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
