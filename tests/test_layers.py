"""The layer rule (issue 14): core packages know nothing of Nipype, pybids or the CLI.

Each core package is imported, with every one of its modules, in a fresh interpreter;
the test fails if ``nipype``, ``bids`` or ``bidsfill.cli`` (or a layer above the core)
lands in ``sys.modules``.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

CORE = ["io", "fill", "diffusion", "train", "evaluate", "segment", "lesions", "synthesis", "microscopy"]
ABOVE_CORE = ("nipype", "bids", "bidsfill.cli", "bidsfill.interfaces", "bidsfill.workflows",
              "bidsfill.bids", "bidsfill.report")  # fmt: skip

PROBE = """
import importlib, pkgutil, sys
import bidsfill.{pkg} as pkg
for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
    importlib.import_module(info.name)
bad = sorted(m for m in sys.modules
             if any(m == top or m.startswith(top + ".") for top in {above!r}))
print("\\n".join(bad))
"""


@pytest.mark.parametrize("pkg", CORE)
def test_core_package_imports_no_upper_layer(pkg):
    code = PROBE.format(pkg=pkg, above=ABOVE_CORE)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"bidsfill.{pkg} pulls in:\n{proc.stdout}"


def test_the_probe_sees_an_upper_layer():
    """The probe itself works: the workflow layer does pull in Nipype."""
    code = PROBE.replace("bidsfill.{pkg}", "bidsfill.workflows").format(above=ABOVE_CORE)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "nipype" in proc.stdout.split()
