"""Report building blocks: figures show the lesion, intensity checks, provenance, citation."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
from conftest import lesion_mask, phantom
from PIL import Image

from bidsfill.report.figures import cluster_flickers, find_clusters, lesion_mosaic
from bidsfill.report.flicker import flicker_svg
from bidsfill.report.intensity import fill_warning, intensity_samples
from bidsfill.report.provenance import citation_markdown, find_run_log
from bidsfill.report.render import CONTOUR_RGB, Volume, lesion_slices, render_tile

ZOOMS = (2.0, 2.0, 2.0)


def svg_frames(svg: str) -> list[np.ndarray]:
    """The embedded PNG frames of a flicker SVG, as RGB arrays."""
    datas = re.findall(r'href="data:image/png;base64,([^"]+)"', svg)
    return [np.asarray(Image.open(io.BytesIO(base64.b64decode(d))).convert("RGB")) for d in datas]


def has_contour(rgb: np.ndarray) -> bool:
    return bool((rgb.reshape(-1, 3) == CONTOUR_RGB).all(axis=1).any())


def _data():
    original = phantom(1)
    mask = lesion_mask()
    original[mask] = 40.0
    filled = original.copy()
    filled[mask] = 100.0
    return Volume(original, ZOOMS), filled, mask


def test_tile_draws_contour_only_where_there_is_lesion():
    vol, _, mask = _data()
    k = lesion_slices(mask, 2, 1)[0]
    tile = render_tile(vol.data, ZOOMS, 2, k, vrange=(0, 120), mask=mask, px_per_mm=2)
    assert tile.shape == (28 * 4, 24 * 4, 3) and has_contour(tile)
    empty = render_tile(vol.data, ZOOMS, 2, 0, vrange=(0, 120), mask=mask, px_per_mm=2)
    assert not has_contour(empty)


def test_lesion_slices_hit_the_lesions():
    mask = lesion_mask()
    for axis in range(3):
        picks = lesion_slices(mask, axis, 5)
        assert picks and all(np.take(mask, k, axis=axis).any() for k in picks)
    assert lesion_slices(np.zeros((4, 4, 4), bool), 0, 3) == [2]


def test_clusters_match_the_lesion_count_and_volume():
    mask = lesion_mask()
    clusters = find_clusters(mask, ZOOMS)
    assert len(clusters) == 2
    assert sum(c.voxels for c in clusters) == mask.sum()
    assert all(mask[c.centre] for c in clusters)
    assert clusters[0].volume_ml == round(clusters[0].voxels * 8 / 1000, 3)


def test_cluster_flicker_shows_the_lesion_before_and_after(tmp_path):
    vol, filled, mask = _data()
    clusters = find_clusters(mask, ZOOMS)
    written = cluster_flickers(vol, filled, mask, clusters, (0, 120), tmp_path, "sub-01")
    assert [p.name for _, p in written] == ["sub-01_desc-lesion01_T1w.svg",
                                            "sub-01_desc-lesion02_T1w.svg"]  # fmt: skip
    for _, path in written:
        before, after = svg_frames(path.read_text())
        for frame in (before, after):
            assert frame.std() > 0 and has_contour(frame)
        # The frames differ exactly because the lesion (dark) was filled (bright).
        assert after.mean() > before.mean()


def test_mosaic_has_three_rows_with_contours(tmp_path):
    vol, _, mask = _data()
    box = tuple(slice(0, n) for n in mask.shape)
    out = lesion_mosaic(vol, mask, (0, 120), box, tmp_path / "m.png", 4)
    rgb = np.asarray(Image.open(out).convert("RGB"))
    assert rgb.std() > 0 and has_contour(rgb)


def test_flicker_svg_is_valid_and_animated():
    png = io.BytesIO()
    Image.new("RGB", (4, 3)).save(png, format="PNG")
    svg = flicker_svg(png.getvalue(), png.getvalue(), 4, 3, title="a<b")
    assert svg.startswith("<svg") and 'width="4"' in svg and "@keyframes" in svg
    assert "a&lt;b" in svg and len(svg_frames(svg)) == 2


def test_intensity_check_flags_a_fill_that_looks_like_the_lesion():
    vol, filled, mask = _data()
    dseg = np.where(vol.data > 80, 2, np.where(vol.data > 0, 1, 0))
    good = intensity_samples(vol.data, filled, mask, dseg, ZOOMS)
    assert good["filled"].size == good["lesion (original)"].size == mask.sum()
    assert good["NAWM"].size and good["ring"].size
    assert fill_warning(good) is None
    bad = intensity_samples(vol.data, vol.data, mask, dseg, ZOOMS)  # "filled" = the lesion
    assert "closer to the lesion" in fill_warning(bad)


def test_citation_names_the_methods_papers():
    text = citation_markdown(
        [{"Method": "nawm"}, {"Method": "pseudo3d", "ModelName": "m", "ModelSHA256": "abc",
                              "Sampler": "ddim", "Steps": 50}],
        {"ants-atropos"},
    )  # fmt: skip
    for needle in ("Battaglini", "Durrer", "Atropos", "Nipype", "sha256 abc", "ddim with 50",
                   "Song J"):  # fmt: skip
        assert needle in text
    assert "Lugmayr" not in text and "Zhang Y" not in text
    for method, paper in (("ring", "ANTs"), ("nonlocal", "Guizard"), ("nonlocal", "Prados"),
                          ("wdm3d", "Friedrich"), ("repaint", "Lugmayr"),
                          ("slicewise", "Durrer")):  # fmt: skip
        assert paper in citation_markdown([{"Method": method}], set())
    assert "Zhang Y" in citation_markdown([], {"fsl-fast"})


def test_run_log_is_the_filling_run_not_a_rebuild(tmp_path):
    log = tmp_path / "sub-01" / "log"
    (log / "20260101-000000_a").mkdir(parents=True)
    (log / "20260101-000000_a" / "bidsfill.toml").write_text(
        '[execution]\nreports_only = false\ncmdline = ["/b", "/o", "participant"]\n'
    )
    (log / "20260101-000000_a" / "crash-1-fill.txt").write_text("Traceback: boom")
    (log / "20260102-000000_b").mkdir()
    (log / "20260102-000000_b" / "bidsfill.toml").write_text("[execution]\nreports_only = true\n")
    found = find_run_log(tmp_path, "01")
    assert found.folder.name == "20260101-000000_a"
    assert found.command_line == "bidsfill /b /o participant"
    assert [c.name for c in found.crashes] == ["crash-1-fill.txt"]
    assert find_run_log(tmp_path, "02").folder is None
