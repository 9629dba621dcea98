"""The derivatives of one T1w run as one table, and the run summary read back from them.

Each row of :data:`OUTPUTS` names one output: the entities it adds to the source T1w's,
its suffix, the writer input holding its image, the blocks its sidecar is made of and what
it was made from (its ``Sources``). :func:`write_run` writes the rows (the
``WriteRunDerivatives`` node calls it) and :func:`read_run_summary` reads the written files
back into the one summary the reports use, after a run and for ``--reports-only`` alike.
Adding an output is adding a row.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from bids.layout import parse_file_entities
from bids.layout.writing import build_path

from bidsfill import __version__
from bidsfill.bids.derivatives import write_file, write_json
from bidsfill.segment.tissues import LABELS

__all__ = [
    "LESION_KEYS",
    "OUTPUTS",
    "Output",
    "RunRecord",
    "RunSummary",
    "SYNTHESIS_OUTPUTS",
    "output_path",
    "read_run_summary",
    "source_entities",
    "write_run",
    "write_synthesis",
]

# pybids' own derivative patterns leave out ``run`` (and ``echo``, ``part``, ``chunk``),
# which would give two runs one name, so the pattern is ours: every entity pybids parses
# from a raw file name, then the ``label`` and ``desc`` the outputs add, each as
# (key in the name, pybids entity) in the order of the BIDS entity table.
_ENTITIES = (
    ("ses", "session"), ("sample", "sample"), ("task", "task"), ("tracksys", "tracksys"),
    ("acq", "acquisition"), ("nuc", "nucleus"), ("voi", "volume"), ("ce", "ceagent"),
    ("trc", "tracer"), ("stain", "staining"), ("rec", "reconstruction"), ("dir", "direction"),
    ("run", "run"), ("mod", "modality"), ("echo", "echo"), ("flip", "flip"), ("inv", "inv"),
    ("mt", "mt"), ("part", "part"), ("proc", "proc"), ("space", "space"),
    ("recording", "recording"), ("chunk", "chunk"), ("label", "label"), ("desc", "desc"),
)  # fmt: skip
PATTERN = (
    "sub-{subject}[/ses-{session}]/anat/sub-{subject}"
    + "".join(f"[_{key}-{{{name}}}]" for key, name in _ENTITIES)
    + "_{suffix}{extension}"
)
_NOT_SOURCE = ("label", "desc", "suffix", "extension")
LESION_KEYS = ("MaskAlignment", "Dilation", "LesionCount", "LesionVolumeML")


@dataclass(frozen=True)
class RunRecord:
    """What one run computed: the material its sidecars are made of."""

    skull_stripped: bool
    fill: dict[str, Any]  # the fill node's JSON: method, parameters, device, seconds
    mask: dict[str, Any]  # the alignment node's JSON: LESION_KEYS and Warnings
    segmentation: dict[str, dict[str, Any]]  # "orig"/"filled" -> segmenter, volumes
    uris: dict[str, str]  # "raw": the source T1w, "lesion": the mask as found, and
    # "FLAIR"/"T2w": the session's references as found (or the synthetic one written)
    synthetic: tuple[str, ...] = ()  # suffixes of the references that are synthetic


Block = Callable[[RunRecord], dict[str, Any]]


def _skull(run: RunRecord) -> dict[str, Any]:
    return {"SkullStripped": bool(run.skull_stripped)}


def _fill(run: RunRecord) -> dict[str, Any]:
    return {"BidsfillVersion": __version__, **run.fill}


def _conditioning(run: RunRecord) -> dict[str, Any]:
    """The contrasts that conditioned the fill, as BIDS URIs of the images as found (the
    fill node names them by suffix), and which of them were synthesised (--synthesize)."""
    if "ConditioningImages" not in run.fill:
        return {}
    used = run.fill["ConditioningImages"]
    meta: dict[str, Any] = {"ConditioningImages": [run.uris[s] for s in used]}
    synthetic = [s for s in used if s in run.synthetic]
    if synthetic:
        meta["SyntheticConditioning"] = synthetic
    return meta


def _lesion(run: RunRecord) -> dict[str, Any]:
    return {k: run.mask[k] for k in LESION_KEYS}


def _raw_mask(run: RunRecord) -> dict[str, Any]:
    return {"RawSources": [run.uris["lesion"]]}


def _fixed(**meta: Any) -> Block:
    return lambda run: dict(meta)


def _segmentation(desc: str) -> Block:
    return lambda run: dict(run.segmentation[desc])


def _segmenter(desc: str) -> Block:
    return lambda run: {"Segmenter": run.segmentation[desc]["Segmenter"]}


@dataclass(frozen=True)
class Output:
    """One derivative of a run.

    ``sources`` are ``"raw"`` (the source T1w), ``"lesion"`` (the mask as found) or the
    key of another row, written as BIDS URIs. ``optional`` rows are skipped when their
    input is undefined (no std map from a classical fill; ``--skip-segmentation``).
    """

    key: str
    entities: Mapping[str, str]
    suffix: str
    input: str
    metadata: tuple[Block, ...]
    sources: tuple[str, ...]
    index: int | None = None  # item of a list input (one probseg per class)
    optional: bool = False


def _segmentation_rows(desc: str, image: str) -> tuple[Output, ...]:
    """The dseg, and a probseg per class (GM, WM, CSF: the dseg order), of one image."""
    dseg = Output(f"dseg_{desc}", {"desc": desc}, "dseg", input=f"dseg_{desc}", optional=True,
                  metadata=(_skull, _segmentation(desc)), sources=(image,))  # fmt: skip
    return dseg, *(
        Output(f"probseg_{desc}_{name}", {"label": name, "desc": desc}, "probseg",
               input=f"probseg_{desc}", index=i, metadata=(_skull, _segmenter(desc)),
               sources=(image,), optional=True)
        for i, name in enumerate(LABELS)
    )  # fmt: skip


_STD = "Voxelwise standard deviation of the independent diffusion fills."

OUTPUTS: tuple[Output, ...] = (
    Output("filled", {"desc": "filled"}, "T1w", input="filled",
           metadata=(_skull, _fill, _conditioning, _lesion), sources=("raw", "mask")),
    Output("fillstd", {"desc": "fillstd"}, "T1w", input="fill_std",
           metadata=(_skull, _fixed(Description=_STD)), sources=("raw", "mask"), optional=True),
    Output("mask", {"label": "lesion"}, "mask", input="mask",
           metadata=(_fixed(Type="Lesion"), _raw_mask, _lesion), sources=("lesion", "raw")),
    *_segmentation_rows("orig", image="raw"),
    *_segmentation_rows("filled", image="filled"),
)  # fmt: skip
_ROWS = {row.key: row for row in OUTPUTS}


def _parts(path: str) -> tuple[str, set[str]]:
    """The folder and the key-value parts of a file name, in any order."""
    return str(Path(path).parent), set(Path(path).name.split(".")[0].split("_")[:-1])


def source_entities(source: str | Path, root: str | Path) -> dict[str, Any]:
    """pybids entities of ``source`` (a file under ``root``), without label/desc/suffix.

    Raises ``ValueError`` when the name holds an entity the pattern cannot write back, so
    no entity is ever dropped from an output name (entities out of order are put in order).
    """
    rel = Path(source).resolve().relative_to(Path(root).resolve()).as_posix()
    entities = parse_file_entities(rel, config=["bids", "derivatives"])
    entities.pop("datatype", None)  # the pattern writes "anat" itself
    built = build_path(entities, [PATTERN], strict=True)
    if built is None or _parts(built) != _parts(rel):
        raise ValueError(f"{rel}: bidsfill cannot name derivatives of this file (it holds an "
                         "entity that pybids does not know)")  # fmt: skip
    return {k: v for k, v in entities.items() if k not in _NOT_SOURCE}


def output_path(row: Output | str, entities: Mapping[str, Any], extension: str = ".nii.gz") -> str:
    """Path of ``row``'s file relative to the derivatives root, built by pybids."""
    row = _ROWS[row] if isinstance(row, str) else row
    path = build_path(
        {**entities, **row.entities, "suffix": row.suffix, "extension": extension},
        [PATTERN],
        strict=True,
    )
    if path is None:  # source_entities() checked the source, so this is a bad row
        raise ValueError(f"output {row.key!r} does not fit the derivatives pattern")
    return path


def _sidecar(path: str | Path) -> Path:
    return Path(str(path).removesuffix(".nii.gz") + ".json")


def write_run(
    output_dir: Path,
    entities: Mapping[str, Any],
    run: RunRecord,
    images: Mapping[str, str | None],
) -> list[Path]:
    """Copy each row's image (``images[row.key]``) and write its sidecar; return the images.

    A row without an image is skipped when optional and refused otherwise.
    """
    output_dir = Path(output_dir)

    def uri(name: str) -> str:
        if name in run.uris:
            return run.uris[name]
        return f"bids::{output_path(name, entities)}"

    written = []
    for row in OUTPUTS:
        image = images.get(row.key)
        if not image:
            if row.optional:
                continue
            raise ValueError(f"no image for the {row.key!r} output")
        meta: dict[str, Any] = {"Sources": [uri(s) for s in row.sources]}
        for block in row.metadata:
            meta.update(block(run))
        dst = write_file(image, output_dir / output_path(row, entities))
        write_json(meta, _sidecar(dst))
        written.append(dst)
    return written


@dataclass
class RunSummary:
    """What the reports show of one run; read only from its derivatives.

    ``mask["Warnings"]`` holds the alignment warnings: the writer passes them, and a
    rebuild from the files (``--reports-only``) has none, as no sidecar keeps them; a
    conditioning fallback (the filled T1w's ``ConditioningFallback``) is added to them.
    """

    source: str  # the raw T1w, relative to bids_dir
    bids_dir: str  # "" when the output does not link its raw dataset
    mask_source: str  # BIDS URI of the mask as found
    filled: dict[str, Any]  # sidecar of the filled T1w
    mask: dict[str, Any]  # LESION_KEYS and Warnings
    segmentation: dict[str, dict[str, Any]] = field(default_factory=dict)  # desc -> dseg
    files: list[str] = field(default_factory=list)  # images, relative to output_dir

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def _linked_raw(output_dir: Path) -> str:
    links = _read(output_dir / "dataset_description.json").get("DatasetLinks", {})
    uri = urlparse(links.get("raw", ""))
    return unquote(uri.path) if uri.scheme == "file" else ""


def read_run_summary(
    output_dir: Path,
    filled_sidecar: Path,
    *,
    warnings: Sequence[str] = (),
    bids_dir: str | Path | None = None,
) -> RunSummary:
    """The summary of the run whose filled T1w has ``filled_sidecar``, from its files."""
    output_dir = Path(output_dir)
    entities = source_entities(filled_sidecar, output_dir)

    def sidecar(key: str) -> dict[str, Any]:
        return _read(output_dir / _sidecar(output_path(key, entities)))

    filled = sidecar("filled")
    mask = sidecar("mask")
    fallback = filled.get("ConditioningFallback")  # kept in the sidecar, so shown again
    warnings = [*warnings, *([fallback] if fallback and fallback not in warnings else [])]
    raw = next((s for s in filled.get("Sources", []) if s.startswith("bids:raw:")), "")
    return RunSummary(
        source=raw.removeprefix("bids:raw:"),
        bids_dir=str(Path(bids_dir).resolve()) if bids_dir else _linked_raw(output_dir),
        mask_source=(mask.get("RawSources") or ["n/a"])[0],
        filled=filled,
        mask={**{k: mask.get(k) for k in LESION_KEYS}, "Warnings": list(warnings)},
        segmentation={
            row.entities["desc"]: sidecar(row.key)
            for row in OUTPUTS
            if row.suffix == "dseg" and (output_dir / output_path(row, entities)).exists()
        },
        files=[
            output_path(row, entities)
            for row in OUTPUTS
            if (output_dir / output_path(row, entities)).exists()
        ],
    )


# -- missing-contrast synthesis (one output per session, not per T1w run) ------------------

#: Contrasts ``--synthesize`` can write: one row each, ``<entities>_desc-synthetic_<suffix>``.
SYNTHESIS_OUTPUTS: dict[str, Output] = {
    target: Output(f"synthetic_{target}", {"desc": "synthetic"}, target, input="synthetic",
                   metadata=(), sources=("sources",))
    for target in ("FLAIR", "T2w", "T1w")
}  # fmt: skip


def write_synthesis(
    output_dir: Path,
    entities: Mapping[str, Any],
    target: str,
    image: str | Path,
    source_uris: Sequence[str],
    info: Mapping[str, Any],
) -> Path:
    """Write one synthetic contrast and its sidecar (Sources: the source images as BIDS
    URIs; ``info``: the model and how it was run); return the image path."""
    row = SYNTHESIS_OUTPUTS[target]
    meta: dict[str, Any] = {"Sources": list(source_uris), "BidsfillVersion": __version__,
                            **dict(info)}  # fmt: skip
    dst = write_file(image, Path(output_dir) / output_path(row, entities))
    write_json(meta, _sidecar(dst))
    return dst


# -- histology repair (BIDS microscopy, issue 18): one output per micr image -------------

#: Derivatives of a microscopy image go to ``micr/`` with the source's suffix.
MICR_PATTERN = PATTERN.replace("/anat/", "/micr/")
_MICR_DESC = {"repaired": "repaired", "repairstd": "repairstd"}
#: The file-name keys of microscopy entities -> pybids entity names (for build_path).
_MICR_NAMES = {"sub": "subject", **dict(_ENTITIES)}

#: ``repaired``: the image with its artefact repaired (pixels outside the mask unchanged);
#: ``repairstd``: pixelwise standard deviation of ``--n-samples`` repairs (> 1 only).
MICROSCOPY_OUTPUTS: dict[str, Output] = {
    key: Output(key, {"desc": desc}, "<source suffix>", input=key, metadata=(),
                sources=("raw", "mask"), optional=key == "repairstd")
    for key, desc in _MICR_DESC.items()
}  # fmt: skip


def microscopy_output_path(key: str, entities: Mapping[str, str], suffix: str,
                           extension: str) -> str:  # fmt: skip
    """Path of a microscopy output relative to the derivatives root (``entities``: the
    source's file-name keys, e.g. ``{"sub": "01", "sample": "A"}``)."""
    row = MICROSCOPY_OUTPUTS[key]
    named = {_MICR_NAMES[k]: v for k, v in entities.items() if k in _MICR_NAMES}
    if len(named) != len(entities):
        unknown = sorted(set(entities) - set(_MICR_NAMES))
        raise ValueError(f"bidsfill cannot name derivatives of an image with entities {unknown}")
    path = build_path({**named, **row.entities, "suffix": suffix, "extension": extension},
                      [MICR_PATTERN], strict=True)  # fmt: skip
    if path is None:
        raise ValueError(f"output {key!r} does not fit the microscopy derivatives pattern")
    return path


def write_microscopy(output_dir: Path, key: str, entities: Mapping[str, str], suffix: str,
                     extension: str, write: Callable[[Path], Any],
                     sidecar: Mapping[str, Any]) -> Path:  # fmt: skip
    """Write one microscopy output through ``write(path)`` and its sidecar (the source's
    sidecar, e.g. PixelSize, plus how it was made); return the image path."""
    from bidsfill.io.atomic import part_file

    dst = Path(output_dir) / microscopy_output_path(key, entities, suffix, extension)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with part_file(dst) as part:
        write(part)
    meta = {**dict(sidecar), "BidsfillVersion": __version__}
    write_json(meta, dst.with_name(dst.name[: -len(extension)] + ".json"))
    return dst
