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
    assert math.isnan(rows[0]["seconds"]) and math.isnan(rows[0]["rss_mib"])  # not a fill
    nawm = rows[1]
    assert nawm["seconds"] > 0 and 0.0 <= nawm["rss_fill_mib"] <= nawm["rss_mib"]
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
    assert [c.strip() for c in lines[-1].strip("|").split("|")][0] == (
        f"*{cm.ANCHORS[-1]['method']}*"
    )

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


def test_unavailable_method_is_a_row_with_a_note(cm, tmp_path):
    case = _case(cm)
    missing = str(tmp_path / "absent.safetensors")  # every method ships weights now
    rows = cm.compare(
        [case],
        [cm.MethodSpec("wdm3d DDIM 10", "wdm3d", {"steps": 10, "model": missing})],
        tissues=False,
        isolate=False,
    )
    assert rows[0]["note"] and "brats_ssim" not in rows[0]
    summary = cm.summarise(rows)
    assert summary[0]["n"] == 0 and summary[0]["brats_ssim"] is None
    assert "| wdm3d DDIM 10 | 0 | – |" in cm.table(summary)


def test_default_specs_cover_every_method_and_sampler_setting(cm):
    from bidsfill.fill import available_methods

    specs = cm.default_specs((10, 20), (1, 3))
    labels = [s.label for s in specs]
    assert labels[0] == cm.BASELINE and specs[0].method == cm.BASELINE
    # Every registered method has a row, in the canonical order.
    assert {s.method for s in specs} == {cm.BASELINE, *available_methods()}
    assert labels[1:4] == ["nawm", "ring", "nonlocal"]
    assert [x for x in labels if x.startswith("pseudo3d")] == [
        "pseudo3d DDIM 10",
        "pseudo3d DDIM 20",
        "pseudo3d DDIM 10 ×3",
    ]
    by_label = {s.label: s for s in specs}
    assert by_label["pseudo3d DDIM 10 ×3"].params == {
        "sampler": "ddim",
        "steps": 10,
        "n_samples": 3,
        "omp_nthreads": 1,
    }
    assert by_label["pseudo3d DDIM 20"].params["steps"] == 20
    assert by_label["nawm"].params == {}
    # A method without shipped weights gets one row (it only says so), at the first steps.
    for name in cm.NO_WEIGHTS:
        assert [x for x in labels if x.split()[0] == name] == [f"{name} DDIM 10"]


def test_default_specs_for_chosen_methods_and_sampler(cm):
    specs = cm.default_specs((5,), (1, 2, 4), "ddpm", methods=["wdm3d", "pseudo3d", "ring"])
    assert [s.label for s in specs] == [
        "ring",
        "pseudo3d DDPM 5",
        "pseudo3d DDPM 5 ×2",
        "pseudo3d DDPM 5 ×4",
        "wdm3d DDPM 5",
    ]
    assert {s.params["sampler"] for s in specs if s.params} == {"ddpm"}
    assert [s.params.get("n_samples") for s in specs] == [None, 1, 2, 4, 1]


def test_rss_sampler_sees_memory_allocated_in_the_block(cm):
    import time

    with cm._RssSampler() as rss:
        block = np.ones(200 * 2**20 // 8)  # 200 MiB, every page written
        time.sleep(0.2)
        del block  # freed before the block ends: only the sampling thread saw it
    assert (rss.peak - rss.start) / 2**20 > 150
    with cm._RssSampler() as idle:
        pass
    assert (idle.peak - idle.start) / 2**20 < 20


def _rows(cm):
    """Hand-made comparison rows: three scored cases of A, B that never ran, C once."""
    nan = math.nan
    a = [
        # brats_ssim, mae, dice_WM, vol_diff_pct_WM, seconds, rss_mib, rss_fill_mib, calls
        (0.5, 0.1, nan, 1.0, 1.0, 100.0, 10.0, 4),
        (0.7, 0.3, 0.8, 3.0, 3.0, 300.0, 5.0, 6),
        (0.9, 0.2, 0.6, nan, 2.0, 200.0, 20.0, 8),
    ]
    rows = []
    for i, (ssim, mae, dice, dv, sec, rss, grow, calls) in enumerate(a):
        rows.append(
            {
                "method": "A",
                "case": f"c{i}",
                "seconds": sec,
                "rss_mib": rss,
                "rss_fill_mib": grow,
                "note": f'{{"ModelCalls": {calls}}}',
                "brats_ssim": ssim,
                "mae": mae,
                "dice_WM": dice,
                "vol_diff_pct_WM": dv,
            }
        )
        if i < 2:
            rows.append(
                {"method": "B", "case": f"c{i}", "seconds": nan, "rss_mib": nan,
                 "note": "no weights shipped"}
            )  # fmt: skip
    rows.append(
        {"method": "C", "case": "c0", "seconds": 4.0, "rss_mib": 50.0, "note": "",
         "brats_ssim": 0.25, "vol_diff_pct_WM": -1.5}
    )  # fmt: skip
    rows.append({"method": "C", "case": "c1", "seconds": nan, "rss_mib": nan,
                 "note": "crashed | out of memory"})  # fmt: skip
    return rows


def _table_rows(text: str) -> list[dict[str, str]]:
    lines = text.splitlines()
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    return [
        dict(zip(head, (c.strip() for c in line.strip("|").split("|")), strict=True))
        for line in lines[2:]
    ]


def test_summarise_means_sds_and_costs_of_the_rows(cm):
    summary = cm.summarise(_rows(cm))
    assert [s["method"] for s in summary] == ["A", "B", "C"]  # first-seen order
    a, b, c = summary
    assert a["n"] == 3 and b["n"] == 0 and c["n"] == 1
    assert a["brats_ssim"] == pytest.approx((0.7, 0.2))
    assert a["mae"] == pytest.approx((0.2, 0.1))
    assert a["dice_WM"] == pytest.approx((0.7, math.sqrt(0.02)))  # the NaN case is left out
    assert a["vol_diff_pct_WM"] == pytest.approx((2.0, math.sqrt(2.0)))
    assert a["dice_GM"] is None  # no case has it
    assert a["seconds"] == pytest.approx((2.0, 1.0))
    assert a["rss_mib"] == 300.0 and a["rss_fill_mib"] == 20.0  # peaks, not means
    assert a["note"] == "model calls per case: 4, 6, 8"
    assert all(b[k] is None for k, _, _ in cm.METRICS)
    assert b["seconds"] is None and b["rss_mib"] is None and b["rss_fill_mib"] is None
    assert b["note"] == "no weights shipped"  # once, not per case
    assert c["brats_ssim"][0] == 0.25 and math.isnan(c["brats_ssim"][1])  # one case: no sd
    assert c["seconds"][0] == 4.0 and math.isnan(c["seconds"][1])
    assert c["rss_mib"] == 50.0 and c["rss_fill_mib"] is None
    assert c["note"] == "crashed | out of memory"


def test_table_renders_the_summary_and_the_anchor_rows(cm):
    summary = cm.summarise(_rows(cm))
    anchors = [{"method": "paper: X (Table 9)", "brats_psnr": 12.3456, "dice_CSF": 0.5}]
    text = cm.table(summary, anchors=anchors)
    rows = _table_rows(text)
    head = list(rows[0])
    assert head == [
        "method", "n", *(h for _, h, _ in cm.METRICS), "seconds", "peak RSS (MiB)", "notes"
    ]  # fmt: skip
    assert [r["method"] for r in rows] == ["A", "B", "C", "*paper: X (Table 9)*"]
    a, b, c, x = rows
    assert a["n"] == "3" and a["BraTS SSIM"] == "0.7000 ± 0.2000"
    assert a["MAE"] == "0.2000 ± 0.1000" and a["Dice WM"] == "0.700 ± 0.141"
    assert a["ΔV WM (%)"] == "+2.00 ± 1.41"  # signed mean, unsigned sd
    assert a["Dice GM"] == "–" and a["seconds"] == "2.0 ± 1.0"
    assert a["peak RSS (MiB)"] == "300 (+20)"
    assert a["notes"] == "model calls per case: 4, 6, 8"
    assert b["n"] == "0"
    assert all(b[h] == "–" for _, h, _ in cm.METRICS) and b["peak RSS (MiB)"] == "–"
    assert b["notes"] == "no weights shipped"
    assert c["BraTS SSIM"] == "0.2500" and c["ΔV WM (%)"] == "-1.50" and c["seconds"] == "4.0"
    assert c["peak RSS (MiB)"] == "50"
    assert c["notes"] == "crashed / out of memory"  # a '|' would split the cell
    # An anchor fills only the columns it has numbers for, formatted as ours.
    assert x["BraTS PSNR (dB)"] == "12.35" and x["Dice CSF"] == "0.500"
    filled = {"method", "BraTS PSNR (dB)", "Dice CSF", "notes"}
    assert all(v == "–" for k, v in x.items() if k not in filled)
    assert "published" in x["notes"]


def test_table_default_anchors_are_the_papers_numbers_in_their_columns(cm):
    rows = _table_rows(cm.table([]))
    assert len(rows) == len(cm.ANCHORS) > 0
    for anchor, row in zip(cm.ANCHORS, rows, strict=True):
        assert row["method"] == f"*{anchor['method']}*"
        assert set(anchor) - {"method"} <= {k for k, _, _ in cm.METRICS}  # no key dropped
        for key, head, fmt in cm.METRICS:
            expected = format(anchor[key], fmt) if key in anchor else "–"
            assert row[head] == expected, head
