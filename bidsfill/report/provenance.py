"""Provenance for the reports: package versions, the run's config and command line, its
crash files, and the citation boilerplate (``<out>/logs/CITATION.md``).
"""

from __future__ import annotations

import json
import platform
import shlex
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from bidsfill.fill.methods import fill_method
from bidsfill.io.atomic import part_file
from bidsfill.references import REFERENCES

__all__ = [
    "RunLog",
    "citation_markdown",
    "find_run_log",
    "package_versions",
    "write_citation",
]

PACKAGES = ("bidsfill", "torch", "monai", "nipype", "antspyx", "nibabel", "pybids", "numpy")

_SEGMENTERS = {
    "ants-atropos": ("ANTs Atropos (antspyx)", ["atropos"]),
    "fsl-fast": ("FSL FAST", ["fast"]),
}


@dataclass(frozen=True)
class RunLog:
    """What ``sub-X/log/<run_uuid>/`` tells about the run that made the outputs."""

    folder: Path | None
    config_text: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    crashes: list[Path] = field(default_factory=list)

    @property
    def command_line(self) -> str:
        args = self.config.get("execution", {}).get("cmdline")
        return "bidsfill " + shlex.join(args) if args else "n/a"


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that shape the outputs (read, not imported)."""
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    try:
        return tomllib.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def find_run_log(output_dir: Path, subject: str, log_dir: Path | None = None) -> RunLog:
    """The log folder of the run (``log_dir``, else the newest that filled, not a rebuild)."""
    if log_dir is None:
        folders = sorted((Path(output_dir) / f"sub-{subject}" / "log").glob("*/"), reverse=True)
        filling = [
            f for f in folders
            if not _read_toml(f / "bidsfill.toml").get("execution", {}).get("reports_only")
        ]  # fmt: skip
        log_dir = (filling or folders or [None])[0]
    if log_dir is None or not Path(log_dir).exists():
        return RunLog(folder=None)
    config_file = Path(log_dir) / "bidsfill.toml"
    text = config_file.read_text() if config_file.exists() else ""
    return RunLog(
        folder=Path(log_dir),
        config_text=text,
        config=_read_toml(config_file) if text else {},
        crashes=sorted(Path(log_dir).glob("crash-*")),
    )


def citation_markdown(filled_sidecars: list[dict[str, Any]], segmenters: set[str]) -> str:
    """Methods text and references for the methods and segmenters actually used."""
    keys: list[str] = ["nipype"]
    sentences = []
    for method in sorted({str(s.get("Method")) for s in filled_sidecars}):
        entry = fill_method(method)
        text, refs = entry.text, list(entry.citations)
        models = sorted({f"{s.get('ModelName')} (sha256 {s.get('ModelSHA256')})"
                         for s in filled_sidecars if s.get("Method") == method
                         and s.get("ModelName")})  # fmt: skip
        samplers = sorted({f"{s.get('Sampler')} with {s.get('Steps')} steps"
                           for s in filled_sidecars if s.get("Method") == method
                           and s.get("Sampler")})  # fmt: skip
        if "ddim" in " ".join(samplers):
            refs = [*refs, "ddim"]
        cite = ", ".join(f"[{_ref_number(keys, r)}]" for r in refs)
        extra = ""
        if models:
            extra += f" The model weights were {', '.join(models)}."
        if samplers:
            extra += f" Sampling used {', '.join(samplers)}."
        sentences.append(f"Lesions were filled {text} {cite}.{extra}".replace(" .", "."))
    synthetic = sorted({c for s in filled_sidecars for c in s.get("SyntheticConditioning") or []})
    if synthetic:  # --synthesize fed a fill: the reader must know the contrast was not acquired
        sentences.append(
            f"Where a session had no {' or '.join(synthetic)}, the fill was conditioned on a "
            "synthetic one, computed from the session's other contrasts by a conditional "
            f"wavelet diffusion model (cWDM) [{_ref_number(keys, 'friedrich')}]."
        )
    for segmenter in sorted(segmenters):
        name, refs = _SEGMENTERS.get(segmenter, (segmenter, []))
        cite = ", ".join(f"[{_ref_number(keys, r)}]" for r in refs)
        sentences.append(
            f"Grey matter, white matter and cerebrospinal fluid were segmented with {name} "
            f"{cite} in the original and in the filled image.".replace(" .", ".")
        )
    version = package_versions()["bidsfill"]
    nipype_ref = _ref_number(keys, "nipype")
    lines = [
        "# Citing this bidsfill run",
        "",
        "The following boilerplate describes the processing; copy it into your methods.",
        "",
        f"Lesions in the T1-weighted images were filled with bidsfill {version}, which is "
        f"based on Nipype [{nipype_ref}]. " + " ".join(sentences),
        "",
        "## References",
        "",
        *(f"{i}. {REFERENCES[k]}" for i, k in enumerate(keys, start=1)),
        "",
    ]
    return "\n".join(lines)


def _ref_number(keys: list[str], key: str) -> int:
    if key not in keys:
        keys.append(key)
    return keys.index(key) + 1


def write_citation(output_dir: Path) -> Path:
    """Write ``<out>/logs/CITATION.md`` for every filled T1w in the dataset."""
    output_dir = Path(output_dir)
    sidecars, segmenters = [], set()
    for path in sorted(output_dir.glob("sub-*/**/anat/*_desc-filled_T1w.json")):
        sidecars.append(json.loads(path.read_text()))
    for path in sorted(output_dir.glob("sub-*/**/anat/*_dseg.json")):
        segmenter = json.loads(path.read_text()).get("Segmenter")
        if segmenter:
            segmenters.add(str(segmenter))
    out = output_dir / "logs" / "CITATION.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    with part_file(out, tag=str(id(sidecars))) as tmp:
        tmp.write_text(citation_markdown(sidecars, segmenters))
    return out
