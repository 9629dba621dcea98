"""Subject and group reports opened in a real headless Chromium; ``--reports-only``.

Chromium and chromedriver come from Debian (``scripts/install-test-deps.sh``, which the
fixture runs when they are missing). Screenshots are kept in ``tests/artifacts/``.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from report_outputs import write_outputs
from test_report_figures import has_contour, svg_frames

from bidsfill.cli.run import run
from bidsfill.report.group import write_group_table
from bidsfill.report.group_html import write_group_report
from bidsfill.report.rebuild import summary_from_outputs
from bidsfill.report.subject import write_subject_report

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage")  # fmt: skip


def _chromium() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (browser and driver):
        subprocess.run(["bash", str(ROOT / "scripts" / "install-test-deps.sh")], check=True)
        browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert browser and driver, "chromium and chromedriver are needed for the report tests"
    return browser, driver


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = _chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def check_page(driver, page: Path, shot_name: str) -> dict:
    """Open ``page``; every image must load and no script error may occur. Screenshot it."""
    driver.set_window_size(1300, 900)
    driver.get(page.as_uri())
    driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "Promise.all([...document.images].map(i => i.complete ? 0 : new Promise(r => {"
        "i.onload = i.onerror = r;}))).then(done);"
    )
    images = driver.execute_script(
        "return [...document.images].map(i => [i.getAttribute('src').slice(0, 80), "
        "i.complete, i.naturalWidth, i.naturalHeight]);"
    )
    assert images, f"{page.name} shows no image"
    broken = [src for src, complete, w, h in images if not (complete and w > 0 and h > 0)]
    assert not broken, f"images that did not load in {page.name}: {broken}"
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, f"browser errors on {page.name}: {errors}"
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1300, min(int(height) + 100, 12000))
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / ".gitignore").write_text("*\n")
    shot = ARTIFACTS / shot_name
    driver.save_screenshot(str(shot))
    print(f"screenshot: {shot}")
    rgb = np.asarray(Image.open(shot).convert("RGB"))
    assert rgb.std() > 0, "the screenshot is blank"
    assert has_contour(rgb), "no lesion outline is visible on the page"
    return {"images": images, "text": driver.find_element("tag name", "body").text}


@pytest.mark.slow
def test_subject_and_group_reports_in_chromium(tiny_bids, tmp_path, browser):
    out = tmp_path / "out"
    deriv = tmp_path / "lesions"
    sidecars = write_outputs(tiny_bids, out, [deriv], method="pseudo3d", with_std=True)
    log = out / "sub-01" / "log" / "20260101-000000_x"
    log.mkdir(parents=True)
    (log / "bidsfill.toml").write_text(
        '[execution]\ncmdline = ["bids", "out", "participant", "--seed", "7"]\n'
        "reports_only = false\n[seeds]\nmaster = 7\n"
    )
    (log / "crash-20260101-seg_orig-x.txt").write_text("Node: seg_orig\nTraceback: it broke\n")
    summaries = [summary_from_outputs(out, s) for s in sidecars if "sub-01_" in s.name]
    assert len(summaries) == 2 and all("bids_dir" in s for s in summaries)
    report = write_subject_report(subject="01", output_dir=out, summaries=summaries,
                                  warnings=["a discovery warning"], log_dir=log)  # fmt: skip
    assert report == out / "sub-01.html"
    figures = out / "sub-01" / "figures"
    names = {p.name for p in figures.iterdir()}
    for stem in ("sub-01_ses-1", "sub-01_ses-2"):
        assert {f"{stem}_desc-lesions_T1w.png", f"{stem}_desc-lesion01_T1w.svg",
                f"{stem}_desc-lesion02_T1w.svg", f"{stem}_desc-fillstd_T1w.png",
                f"{stem}_desc-intensity_T1w.png", f"{stem}_desc-segmentation_dseg.svg"} <= names  # fmt: skip
    assert not list(out.rglob("*.part"))
    for svg in figures.glob("*_desc-lesion0*_T1w.svg"):
        for frame in svg_frames(svg.read_text()):
            assert frame.std() > 0 and has_contour(frame), svg.name
    mosaic = np.asarray(Image.open(figures / "sub-01_ses-1_desc-lesions_T1w.png").convert("RGB"))
    assert mosaic.std() > 0 and has_contour(mosaic)
    citation = (out / "logs" / "CITATION.md").read_text()
    assert "Durrer" in citation and "Atropos" in citation

    page = check_page(browser, report, "sub-01.png")
    text = page["text"]
    for needle in ("bidsfill-pseudo3d-test", "ab" * 32, "ddim / 10", "bidsfill bids out "
                   "participant --seed 7", "crash-20260101-seg_orig-x.txt", "a discovery warning",
                   "Uncertainty of the fill", "nibabel", "torch", "antspyx", "nipype"):  # fmt: skip
        assert needle in text, needle
    # 2 runs x (mosaic + 2 lesions + std + histogram + segmentation)
    assert len(page["images"]) == 12

    table, rows = write_group_table(out)
    group = write_group_report(out, rows)
    assert group == out / "group.html" and table.exists() and len(rows) == 3
    page = _group_page(browser, group)
    assert "pseudo3d" in page["text"] and "sub-02" in page["text"]


def _group_page(driver, group: Path) -> dict:
    """The group page has plots, not lesion outlines: check images and errors only."""
    driver.set_window_size(1300, 900)
    driver.get(group.as_uri())
    images = driver.execute_script(
        "return [...document.images].map(i => [i.complete, i.naturalWidth]);"
    )
    assert len(images) == 3 and all(c and w > 0 for c, w in images)
    assert not [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1300, int(height) + 100)
    ARTIFACTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / "group.png"))
    print(f"screenshot: {ARTIFACTS / 'group.png'}")
    return {"text": driver.find_element("tag name", "body").text}


@pytest.mark.slow
def test_reports_only_rebuilds_from_outputs(tiny_bids, tmp_path):
    out, deriv = tmp_path / "out", tmp_path / "lesions"
    write_outputs(tiny_bids, out, [deriv])
    filled = sorted(p.name for p in out.rglob("*_desc-filled_T1w.nii.gz"))
    code = run([str(tiny_bids), str(out), "participant", "--derivatives", str(deriv),
                "-w", str(tmp_path / "work"), "--skip-bids-validation", "--reports-only"])  # fmt: skip
    assert code == 0
    for subject in ("01", "02"):
        html = (out / f"sub-{subject}.html").read_text()
        assert "Battaglini" in html and "_desc-lesions_T1w.png" in html
        assert list((out / f"sub-{subject}" / "figures").glob("*_desc-lesion01_T1w.svg"))
    assert not (out / "sub-03.html").exists()
    assert sorted(p.name for p in out.rglob("*_desc-filled_T1w.nii.gz")) == filled
    assert not (tmp_path / "work" / "bidsfill_wf").exists(), "reports-only ran the workflow"
