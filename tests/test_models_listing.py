"""Installed models: ``bidsfill --list-models`` (no torch) and what every shipped card
must say (issue 17): its training data, its held-out subjects, a sha256 that matches."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys

import pytest

from bidsfill.cli.models import describe_model, installed_models, list_models

SHIPPED = installed_models()


def test_list_models_runs_without_torch():
    code = ("import sys; from bidsfill.cli.run import run; rc = run(['--list-models']); "
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH'); sys.exit(rc)")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "NO-TORCH" in proc.stdout
    for path in SHIPPED:
        card = json.loads(path.with_suffix(".json").read_text())
        if card.get("task") == "synthesize":
            assert f"{path.stem}: --synthesize {card['target']}" in proc.stdout
            continue
        assert f"{path.stem}: --method {path.stem}" in proc.stdout
        assert "held out:" in proc.stdout and "DIFFERS" not in proc.stdout


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_card_names_its_data_and_matches_its_weights(path):
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    training = card["training"]
    data = training["training_data"]
    assert data and all(d.get("name") and d.get("source") and d.get("licence") for d in data)
    held = training["held_out"]
    assert held and all(h.get("participant") for h in held)
    trained = {d["name"].split("_")[0] for d in data}
    assert trained.isdisjoint({h["participant"] for h in held})  # never trained on
    assert not any(str(d["source"]).startswith("/") for d in data)  # holds on any machine


def test_a_damaged_model_is_flagged(tmp_path):
    if not SHIPPED:
        pytest.skip("no model is shipped")
    src = SHIPPED[0]
    dst = tmp_path / src.name
    shutil.copy(src.with_suffix(".json"), dst.with_suffix(".json"))
    data = bytearray(src.read_bytes())
    data[-1] ^= 0xFF
    dst.write_bytes(bytes(data))
    assert "sha256 DIFFERS from its card" in describe_model(dst)
    assert "No diffusion models are installed" in list_models(tmp_path / "empty")


def test_every_diffusion_method_has_shipped_weights_of_its_kind():
    """Issue 17: no --method is refused for missing weights; each file is that method's
    architecture (RePaint: an unconditional model), and their weights stay under 60 MB."""
    from bidsfill.diffusion.card import ModelCard
    from bidsfill.diffusion.weights import default_model_path
    from bidsfill.fill.methods import FILL_METHODS

    for name, method in FILL_METHODS.items():
        if not method.uses_model:
            continue
        path = default_model_path(name)
        assert path is not None, f"--method {name} has no shipped weights"
        card = ModelCard.coerce(json.loads(path.with_suffix(".json").read_text()))
        assert card.conditional == method.conditional, name
        if method.conditional:
            assert card.architecture == name
    fill_models = [default_model_path(n) for n, m in FILL_METHODS.items() if m.uses_model]
    total = sum(p.stat().st_size for p in fill_models)
    assert total < 60e6, f"shipped fill-method weights {total / 1e6:.1f} MB"


def test_a_model_without_a_scorecard_shows_its_comparison_row(tmp_path):
    """The architecture family has no scorecard of its own; --list-models shows its row of
    the architecture comparison (compare_architectures.py --write-cards) instead."""
    src = next((p for p in SHIPPED if p.stem == "wdm3d"), None)
    if src is None:
        pytest.skip("wdm3d is not shipped")
    dst = tmp_path / src.name
    shutil.copy(src, dst)
    card = json.loads(src.with_suffix(".json").read_text())
    card.pop("scorecard", None)
    card.pop("comparison", None)
    dst.with_suffix(".json").write_text(json.dumps(card))
    assert "scorecard: none" in describe_model(dst)
    row = {"brats_psnr_01": 19.06, "brats_ssim": 0.771, "brats_mse": 0.0153, "ssim3d": 0.675}
    card["comparison"] = {"label": "wdm3d", "cases": 4, "fillers": {
        "wdm3d": row, "pseudo3d": {**row, "brats_psnr_01": 20.55},
        "nonlocal": {**row, "brats_psnr_01": 18.91}}}  # fmt: skip
    dst.with_suffix(".json").write_text(json.dumps(card))
    assert ("scorecard: 4 held-out cases of the architecture comparison: PSNR01 19.06 dB, "
            "pseudo3d 20.55, nonlocal 18.91, SSIM 0.771") in describe_model(dst)  # fmt: skip


def test_the_listing_says_what_each_model_sees(tmp_path):
    """The default's channels: its prefill and the contralateral side with the mask's
    reflection hidden; a card without extras sees only the masked scan."""
    default = next(p for p in SHIPPED if p.stem == "pseudo3d")
    card = json.loads(default.with_suffix(".json").read_text())
    pre = card["preprocessing"]
    seen = describe_model(default)
    for name, words in (("mirror", "reflected about its mid-sagittal plane"),
                        ("prefill", "nonlocal prefill it corrects")):  # fmt: skip
        assert (words in seen) == (name in pre["extras"])
    assert ("the prefill where that shows the mask" in seen) == bool(pre.get("mirror_hides_mask"))
    dst = tmp_path / "plain.safetensors"
    shutil.copy(default, dst)
    card["preprocessing"] = {**pre, "extras": [], "mirror_hides_mask": False}
    dst.with_suffix(".json").write_text(json.dumps(card))
    assert "  sees: the masked scan\n" in describe_model(dst)
