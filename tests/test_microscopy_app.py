"""BIDS microscopy through the app (issue 18): demo, discovery, repair, outputs, errors.

The demo dataset is built from the shared real fields (skipped when they are absent);
the model is a tiny real "histology2d" network saved with its card, so the run is quick.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bidsfill.cli.run import run
from bidsfill.microscopy.demo import SHARED_HISTOLOGY, make_microscopy_demo
from bidsfill.microscopy.io import read_image, write_image

pytestmark = pytest.mark.skipif(not (SHARED_HISTOLOGY / "dataset_description.json").is_file(),
                                reason="the shared histology fields are not here")  # fmt: skip

MASKS = "derivatives/artefacts"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from bidsfill.diffusion.weights import save_weights
    from bidsfill.microscopy.model import new_card

    card = new_card(patch=32, config={"channels": [16, 16], "norm_num_groups": 8})
    torch.manual_seed(0)
    net = card.spec.build(**card.config)
    torch.nn.init.normal_(net.out[-1].weight, std=0.05)
    return save_weights(net, card, tmp_path_factory.mktemp("model") / "tiny.safetensors")


@pytest.fixture
def demo(tmp_path) -> Path:
    return make_microscopy_demo(tmp_path / "demo", seed=0)


def _run(capsys, bids, out, model, *extra):
    code = run([str(bids), str(out), "participant", "--model", str(model), "--steps", "3",
                "--nthreads", "1", *map(str, extra)])  # fmt: skip
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def _pairs(bids: Path, out: Path):
    for src in sorted(bids.glob("sub-*/micr/*_BF.*")):
        if src.suffix == ".json":
            continue
        ext = "".join(src.suffixes)
        stem = src.name[: -len(ext)].rsplit("_", 1)[0]
        mask = bids / MASKS / src.parent.relative_to(bids) / f"{stem}_desc-artefact_mask.png"
        dst = out / src.parent.relative_to(bids) / f"{stem}_desc-repaired_BF{ext}"
        yield src, mask, dst


def test_demo_repairs_end_to_end_and_validates(demo, tmp_path, tiny_model, capsys):
    from official_validator import validator_errors

    out = tmp_path / "out"
    code, err = _run(capsys, demo, out, tiny_model, "--n-samples", "2")
    assert code == 0, err
    pairs = list(_pairs(demo, out))
    assert {p[0].suffix for p in pairs} == {".png", ".tif"}
    for src, mask_path, dst in pairs:
        img, meta = read_image(src)
        rep, meta2 = read_image(dst)
        mask = read_image(mask_path)[0] > 0
        assert rep.dtype == img.dtype and meta2.format == meta.format
        assert np.array_equal(rep[~mask], img[~mask])  # bit-identical outside the mask
        assert not np.array_equal(rep[mask], img[mask])
        side = json.loads(dst.with_name(dst.name.split(".")[0] + ".json").read_text())
        assert side["RepairMethod"] == "ddpm-repaint" and len(side["ModelSHA256"]) == 64
        assert side["Sampler"]["Name"] == "repaint" and side["Sampler"]["JumpLength"] == 5
        assert side["RepairSeconds"] > 0 and side["PixelSize"] == [1.0, 1.0]
        assert side["Sources"][0].startswith("bids:raw:")
        std = dst.with_name(dst.name.replace("desc-repaired", "desc-repairstd"))
        assert std.is_file() and np.all(read_image(std)[0][~mask] == 0)
    page = (out / "sub-demics01.html").read_text()
    assert page.count('class="zv"') == 1 and "_outline.png" in page  # the zoomable viewer
    assert validator_errors(out) == []


def _break(demo: Path, what: str) -> str:
    """Corrupt sub-demics01's image or mask; the phrase its sentence holds."""
    src = demo / "sub-demics01/micr/sub-demics01_sample-01_BF.png"
    mask = demo / MASKS / "sub-demics01/micr/sub-demics01_sample-01_desc-artefact_mask.png"
    img = read_image(src)[0]
    if what == "size":
        write_image(mask, np.zeros((50, 60), np.uint8))
        return "it must have the image's size"
    if what == "rgb":
        from PIL import Image

        Image.fromarray(np.repeat(img[..., None], 3, -1)).save(src)
        return "is an RGB image"
    if what == "everything":
        write_image(mask, np.full(img.shape, 255, np.uint8))
        return "covers the whole image"
    m = read_image(mask)[0].copy()
    m[:5, :5] = 128
    write_image(mask, m)
    return "is not binary"


@pytest.mark.parametrize("what", ["size", "rgb", "everything", "nonbinary"])
def test_each_bad_input_gets_one_sentence_and_exit_16(demo, tmp_path, tiny_model, capsys, what):
    phrase = _break(demo, what)
    out = tmp_path / "out"
    code, err = _run(capsys, demo, out, tiny_model)
    assert code == 16, err
    assert phrase in err and err.count("\n") == 1
    assert not list(out.glob("sub-*/micr/*")) if out.exists() else True


def test_large_tiff_is_repaired_window_by_window(tmp_path, tiny_model, monkeypatch):
    """The memory-mapped path equals the rules: outside identical, every mask pixel set."""
    import tifffile

    from bidsfill.diffusion.weights import load_weights
    from bidsfill.microscopy.io import create_like, open_lazy
    from bidsfill.microscopy.masks import artefact_mask
    from bidsfill.microscopy.model import repaint_large

    img = read_image(SHARED_HISTOLOGY / "sub-demics02/micr/"
                     "sub-demics02_sample-01_acq-bestfocus_BF.png")[0][:200, :180]  # fmt: skip
    tifffile.imwrite(tmp_path / "big.tif", img, metadata=None)
    lazy, meta = open_lazy(tmp_path / "big.tif")
    mask = artefact_mask(img.shape, 0.2, "tear", rng=0)
    out = create_like(tmp_path / "out.tif", meta)
    out[:] = lazy[:]
    net, card = load_weights(tiny_model)
    info = repaint_large(net, card, lazy, mask, out, window=96, steps=2)
    out.flush()
    rep = read_image(tmp_path / "out.tif")[0]
    assert info.tiles > 1
    assert np.array_equal(rep[~mask], img[~mask])
    assert np.mean(rep[mask] != img[mask]) > 0.5


def test_demo_command_writes_the_dataset(tmp_path, capsys):
    from bidsfill.cli.demo import main

    assert main(["--microscopy", str(tmp_path / "d")]) == 0
    assert "BIDS-microscopy" in capsys.readouterr().out
    masks = sorted((tmp_path / "d/bids" / MASKS).rglob("*_desc-artefact_mask.png"))
    assert len(masks) == 2
    for m in masks:
        frac = (read_image(m)[0] > 0).mean()
        assert 0.05 <= frac <= 0.5


def test_bidsfill_train_microscopy_writes_weights_and_card(tmp_path):
    from bidsfill.cli.train import main
    from bidsfill.diffusion.weights import load_weights

    rng = np.random.default_rng(0)
    paths = []
    for i in range(2):
        img = np.clip(190 + rng.normal(0, 20, (96, 96)), 0, 255).astype(np.uint8)
        paths.append(write_image(tmp_path / f"f{i}.tif", img))
    out = tmp_path / "m" / "h.safetensors"
    assert main(["--microscopy", *map(str, paths), "--out", str(out), "--steps", "4",
                 "--batch", "2", "--patch", "32", "--save-every", "0"]) == 0  # fmt: skip
    net, card = load_weights(out)
    assert card.architecture == "histology2d" and card.training["steps"] == 4
    assert "quarter" in card.training["heldout"]
    assert card.training["tissue_filter"]["min_tissue_fraction"] == 0.5
    assert main(["--microscopy", *map(str, paths), "--out", str(out), "--steps", "1",
                 "--batch", "2", "--patch", "32", "--save-every", "0", "--min-tissue", "0"]) == 0  # fmt: skip
    assert load_weights(out)[1].training["tissue_filter"]["rule"].startswith("off")
    with pytest.raises(SystemExit) as err:
        main(["--microscopy", str(paths[0]), "--out", str(out), "--min-tissue", "1.5"])
    assert err.value.code == 2
