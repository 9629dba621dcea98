"""benchmarks/compare_methods.py: the comparison core on a tiny synthetic case."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import lesion_mask, phantom

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cm():
    spec = importlib.util.spec_from_file_location(
        "compare_methods", ROOT / "benchmarks" / "compare_methods.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["compare_methods"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _case(cm):
    truth = phantom(0)
    mask = lesion_mask()
    lesioned = truth.copy()
    lesioned[mask] *= 0.5
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    return cm.Case("tiny", truth, lesioned, mask, affine, brain_mask=truth > 10)


def test_compare_two_classical_methods(cm, tmp_path):
    case = _case(cm)
    specs = [cm.MethodSpec(cm.BASELINE, cm.BASELINE), cm.MethodSpec("nawm", "nawm")]
    specs.append(cm.MethodSpec("ring", "ring"))
    rows = cm.compare([case], specs, tissues=True, isolate=False)
    assert [r["method"] for r in rows] == [cm.BASELINE, "nawm", "ring"]
    assert rows[0]["lesion_ml"] == pytest.approx(case.mask.sum() * 8 / 1000)
    for r in rows:
        assert 0.0 <= r["brats_ssim"] <= 1.0 and 0.0 <= r["brats_mse"] <= 1.0
        assert 0.0 <= r["mae"] <= 1.0 and -1.0 <= r["ssim3d"] <= 1.0
        for tissue in ("GM", "WM", "CSF"):
            d = r[f"dice_{tissue}"]
            assert math.isnan(d) or 0.0 <= d <= 1.0
    nawm = rows[1]
    assert nawm["seconds"] > 0 and nawm["rss_mib"] > 10
    # Filling with the surrounding WM must beat leaving the lesion dark.
    assert nawm["brats_psnr"] > rows[0]["brats_psnr"]
    assert nawm["mae"] < rows[0]["mae"]

    summary = cm.summarise(rows)
    assert [s["method"] for s in summary] == [cm.BASELINE, "nawm", "ring"]
    assert all(s["n"] == 1 for s in summary)
    text = cm.table(summary)
    lines = text.splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header[:3] == ["method", "n", "BraTS SSIM"]
    assert header[-3:] == ["seconds", "peak RSS (MiB)", "notes"]
    assert len(lines) == 2 + len(summary) + len(cm.ANCHORS)
    assert all(len(line.strip("|").split("|")) == len(header) for line in lines)
    nawm_cells = [c.strip() for c in lines[3].strip("|").split("|")]
    assert float(nawm_cells[2]) == pytest.approx(nawm["brats_ssim"], abs=1e-4)
    assert "0.8527" in text and "0.523" in text

    tsv = tmp_path / "rows.tsv"
    cm.write_tsv(rows, tsv)
    lines = tsv.read_text().splitlines()
    assert len(lines) == 1 + len(rows) and "brats_psnr_01" in lines[0]
    back = cm.read_tsv(tsv)
    assert [r["method"] for r in back] == [r["method"] for r in rows]
    assert back[1]["mae"] == pytest.approx(nawm["mae"], rel=1e-5)
    png = tmp_path / "plot.png"
    cm.plot(back, png)
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_unavailable_method_is_a_row_with_a_note(cm):
    case = _case(cm)
    rows = cm.compare(
        [case],
        [cm.MethodSpec("wdm3d DDIM 10", "wdm3d", {"steps": 10})],
        tissues=False,
        isolate=False,
    )
    assert rows[0]["note"] and "brats_ssim" not in rows[0]
    summary = cm.summarise(rows)
    assert summary[0]["n"] == 0 and summary[0]["brats_ssim"] is None
    assert "| wdm3d DDIM 10 | 0 | – |" in cm.table(summary)


def test_default_specs_cover_every_method_and_sampler_setting(cm):
    from bidsfill.fill import available_methods

    labels = [s.label for s in cm.default_specs((10, 20), (1, 3))]
    assert labels[0] == cm.BASELINE
    assert {"nawm", "ring", "nonlocal"} <= set(labels)
    assert [x for x in labels if x.startswith("pseudo3d")] == [
        "pseudo3d DDIM 10",
        "pseudo3d DDIM 20",
        "pseudo3d DDIM 10 ×3",
    ]
    for name in ("slicewise", "wdm3d", "repaint"):
        if name in available_methods():
            assert sum(x.split()[0] == name for x in labels) == 1
