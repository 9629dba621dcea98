"""The microscopy report's zoomable before/after viewer (issue 18): the HTML and its
figures, then the page in headless Chromium (zoom and pan keep both panes in sync)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from test_report_browser import (
    browser,  # noqa: F401 - the shared Chromium fixture
    check_page,
)

from bidsfill.bids.microscopy import MicroscopyImage
from bidsfill.report.microscopy import write_microscopy_report
from bidsfill.report.render import CONTOUR_RGB

H, W = 120, 160  # the crop is the whole image: the mask's bounding box + 48 px reaches the edges


@pytest.fixture
def report(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    yy, xx = np.indices((H, W))
    image = np.clip(180 + rng.normal(0, 25, (H, W)), 0, 255).astype(np.uint8)
    for cy, cx in rng.uniform((0, 0), (H, W), (30, 2)):
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < 16] = 50
    mask = (yy - 60) ** 2 / 20**2 + (xx - 80) ** 2 / 35**2 < 1
    repaired = image.copy()
    repaired[mask] = 120
    out = tmp_path / "out"
    img = MicroscopyImage(tmp_path / "bids/sub-01/micr/sub-01_sample-01_BF.png", "01",
                          {"sub": "01", "sample": "01"}, "BF", ".png", pixel_size_um=1.0,
                          mask=tmp_path / "masks/sub-01_sample-01_desc-artefact_mask.png")  # fmt: skip
    item = {"img": img, "array": image, "mask": mask, "repaired": repaired,
            "dst": out / "sub-01/micr/sub-01_sample-01_desc-repaired_BF.png"}  # fmt: skip
    card = SimpleNamespace(name="tiny-histology", sha256="ab" * 32)
    return write_microscopy_report(out, "01", [item], card)


def test_report_html_has_a_zoom_viewer_and_its_figures(report):
    page = report.read_text()
    for needle in ('class="zv"', f'data-width="{W}" data-height="{H}"', 'data-zoom="fit"',
                   'data-zoom="1"', 'data-zoom="2"', 'data-zoom="4"', 'data-zoom="in"',
                   'data-zoom="out"', "image-rendering:pixelated", "addEventListener('wheel'",
                   "pointermove", 'class="zv-outline"', "<td>repaired area (after)</td>",
                   "intact ring around it"):  # fmt: skip
        assert needle in page, needle
    assert page.count('class="zv-pane"') == 2 and page.count("<script>") == 1
    assert "http://" not in page and "https://" not in page and "<link" not in page
    fig = report.parent / "sub-01/figures"
    before = np.asarray(Image.open(fig / "sub-01_sample-01_BF_before.png"))
    after = np.asarray(Image.open(fig / "sub-01_sample-01_BF_after.png"))
    outline = np.asarray(Image.open(fig / "sub-01_sample-01_BF_outline.png"))
    assert before.shape == after.shape == (H, W) and outline.shape == (H, W, 4)
    yy, xx = np.indices((H, W))
    mask = (yy - 60) ** 2 / 20**2 + (xx - 80) ** 2 / 35**2 < 1
    assert np.array_equal(before[~mask], after[~mask])  # one intensity window for both
    assert not np.array_equal(before[mask], after[mask])
    drawn = outline[..., 3] > 0
    assert drawn.any() and not (drawn & ~mask).any() and not drawn[30:90, 60:100].all()
    assert (outline[drawn][:, :3] == CONTOUR_RGB).all()


def _geometry(driver) -> list[list[float]]:
    """Per pane: the stage's left, top, width and height relative to the pane."""
    return driver.execute_script(
        "return [...document.querySelectorAll('.zv-pane')].map(p => {"
        "const a = p.getBoundingClientRect(), s = p.querySelector('.zv-stage')"
        ".getBoundingClientRect(); return [s.left - a.left, s.top - a.top, s.width, s.height];});"
    )


def _click(driver, zoom: str) -> None:
    driver.find_element("css selector", f'button[data-zoom="{zoom}"]').click()


@pytest.mark.slow
def test_viewer_zooms_and_pans_both_panes_together(report, browser):  # noqa: F811
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.actions.wheel_input import ScrollOrigin

    check_page(browser, report, "sub-01-microscopy.png")
    browser.set_window_size(1300, 900)
    pane_w = browser.execute_script("return document.querySelector('.zv-pane').clientWidth")
    fit = _geometry(browser)
    assert fit[0] == fit[1] and abs(fit[0][2] - pane_w) <= 1  # fitted to the pane width

    _click(browser, "2")
    two = _geometry(browser)
    assert two[0] == two[1] and two[0][2:] == [2 * W, 2 * H]
    _click(browser, "4")
    four = _geometry(browser)
    assert four[0] == four[1] and four[0][2:] == [4 * W, 4 * H]
    assert browser.find_element("css selector", ".zv-zoom").text == "400 %"

    # nearest-neighbour pixels: at 4x most neighbouring screen pixels are equal
    shot = browser.find_element("css selector", ".zv-pane").screenshot_as_png
    from io import BytesIO

    rgb = np.asarray(Image.open(BytesIO(shot)).convert("L"), np.int16)
    assert (np.diff(rgb, axis=1) == 0).mean() > 0.6

    pane = browser.find_elements("css selector", ".zv-pane")[1]
    ActionChains(browser).scroll_from_origin(ScrollOrigin.from_element(pane), 0, -300).perform()
    wheel = _geometry(browser)
    assert wheel[0] == wheel[1] and wheel[0][2] > 4 * W  # zoomed in about the cursor
    zoom = float(browser.execute_script("return document.querySelector('.zv').dataset.zoom"))
    assert zoom > 4 and wheel[0][2] == round(W * zoom)

    ActionChains(browser).click_and_hold(pane).move_by_offset(-40, -30).release().perform()
    moved = _geometry(browser)
    assert moved[0] == moved[1]  # the other pane followed
    assert moved[0][0] == wheel[0][0] - 40 and moved[0][1] == wheel[0][1] - 30
    assert moved[0][2:] == wheel[0][2:]

    _click(browser, "fit")
    assert _geometry(browser) == fit
    browser.find_element("css selector", ".zv-outline").click()
    hidden = browser.execute_script(
        "return getComputedStyle(document.querySelector('.zv-mask')).display"
    )
    assert hidden == "none"
    assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
