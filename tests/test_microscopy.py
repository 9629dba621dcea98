"""Histology repair library (issue 18): I/O, masks, cells, baselines, the DDPM repair.

Real components on generated data; the network is the real "histology2d" U-Net, small.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bidsfill.microscopy.baselines import BASELINES
from bidsfill.microscopy.cells import cell_stats, detect_cells
from bidsfill.microscopy.io import (
    MicroscopyInputError,
    check_mask,
    create_like,
    iter_tiles,
    open_lazy,
    read_image,
    write_image,
)
from bidsfill.microscopy.masks import KINDS, artefact_mask
from bidsfill.microscopy.metrics import masked_psnr, masked_ssim, spectrum_distance
from bidsfill.microscopy.model import new_card, repaint_image
from bidsfill.microscopy.train import heldout_quarter, train

SMALL = {"channels": [16, 16], "norm_num_groups": 8}


def cells_image(shape=(96, 96), n=25, seed=0, dtype=np.uint8) -> np.ndarray:
    """Bright background with dark round 'cell bodies' and grain, like a Nissl field."""
    rng = np.random.default_rng(seed)
    yy, xx = np.indices(shape)
    img = np.full(shape, 200.0) + rng.normal(0, 6, shape)
    for _ in range(n):
        cy, cx, r = rng.uniform(0, shape[0]), rng.uniform(0, shape[1]), rng.uniform(3, 6)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = 60 + rng.normal(0, 5)
    if dtype == np.uint16:
        img = img * 200
    return np.clip(img, 0, np.iinfo(dtype).max).astype(dtype)


def small_net(seed=0, pointwise=False):
    card = new_card(patch=32, config=SMALL)
    torch.manual_seed(seed)
    net = card.spec.build(**card.config)
    torch.nn.init.normal_(net.out[-1].weight, std=0.05)
    if pointwise:  # a network that sees one pixel only: tiles must equal one pass exactly

        class Pointwise(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.a = torch.nn.Conv2d(1, 1, 1)

            def forward(self, x, t):
                return torch.tanh(self.a(x)) * (1 + t.float()[:, None, None, None] / 300)

        net = Pointwise()
    return net.eval(), card


# -- I/O ------------------------------------------------------------------------------
@pytest.mark.parametrize("ext", [".png", ".tif", ".ome.tif"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_read_write_keeps_dtype_and_metadata(tmp_path, ext, dtype):
    import tifffile

    img = cells_image(dtype=dtype)
    path = tmp_path / f"a{ext}"
    if ext == ".png":
        from PIL import Image, PngImagePlugin

        info = PngImagePlugin.PngInfo()
        info.add_text("Comment", "scanned at INM-1")
        Image.fromarray(img).save(path, pnginfo=info, dpi=(25400, 25400))
    else:
        desc = '<?xml version="1.0"?><OME><Image ID="Image:0"/></OME>' if ext == ".ome.tif" else "x"
        tifffile.imwrite(path, img, description=desc, resolution=(1e4, 1e4),
                         resolutionunit=3, metadata=None)  # fmt: skip
    arr, meta = read_image(path)
    assert arr.dtype == dtype and np.array_equal(arr, img)
    out = tmp_path / f"b{ext}"
    write_image(out, arr, meta)
    arr2, meta2 = read_image(out)
    assert arr2.dtype == dtype and np.array_equal(arr2, img)
    if ext == ".png":
        assert meta2.png_text["Comment"] == "scanned at INM-1"
        assert meta2.dpi and abs(meta2.dpi[0] - 25400) < 1
    else:
        assert meta2.description == meta.description and meta2.resolution == meta.resolution


def test_rgb_and_3d_images_are_refused(tmp_path):
    import tifffile
    from PIL import Image

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(MicroscopyInputError, match="RGB") as err:
        read_image(tmp_path / "rgb.png")
    assert err.value.kind == "rgb"
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((8, 8, 3), np.uint8), photometric="rgb")
    with pytest.raises(MicroscopyInputError, match="RGB"):
        read_image(tmp_path / "rgb.tif")


def test_large_tiff_tile_by_tile(tmp_path):
    import tifffile

    img = cells_image((300, 260), n=80, dtype=np.uint16)
    tifffile.imwrite(tmp_path / "big.tif", img, metadata=None, description="big")
    lazy, meta = open_lazy(tmp_path / "big.tif")
    assert isinstance(lazy, np.memmap)
    out = create_like(tmp_path / "out.tif", meta)
    wins = list(iter_tiles(img.shape, 64, 16))
    cover = np.zeros(img.shape, int)
    for ys, xs in wins:
        out[ys, xs] = lazy[ys, xs]
        cover[ys, xs] += 1
    out.flush()
    del out
    assert cover.min() >= 1
    back, meta2 = read_image(tmp_path / "out.tif")
    assert np.array_equal(back, img) and meta2.description == "big"


# -- masks ----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_artefact_masks_cover_the_fraction_and_are_seeded(kind):
    for frac in (0.05, 0.2, 0.5):
        m = artefact_mask((80, 120), frac, kind, rng=3)
        assert abs(m.mean() - frac) < 1 / m.size + 1e-9
        assert np.array_equal(m, artefact_mask((80, 120), frac, kind, rng=3))
    assert not np.array_equal(artefact_mask((80, 120), 0.2, kind, rng=3),
                              artefact_mask((80, 120), 0.2, kind, rng=4))  # fmt: skip


def test_a_tear_is_thin_and_a_border_touches_the_edge():
    from scipy import ndimage

    tear = artefact_mask((128, 128), 0.06, "tear", rng=0)
    # thin: the distance to the nearest intact pixel stays small compared with the image
    assert ndimage.distance_transform_edt(tear).max() < 12
    border = artefact_mask((128, 128), 0.2, "border", rng=0)
    edges = [border[0].mean(), border[-1].mean(), border[:, 0].mean(), border[:, -1].mean()]
    assert max(edges) > 0.9


# -- bad masks ------------------------------------------------------------------------
def test_bad_masks_get_one_sentence_each():
    shape = (20, 30)
    with pytest.raises(MicroscopyInputError, match="must have the image's size") as e:
        check_mask(np.zeros((20, 20)), shape)
    assert e.value.kind == "size"
    with pytest.raises(MicroscopyInputError, match="not binary") as e:
        check_mask(np.arange(600).reshape(shape) % 3, shape)
    assert e.value.kind == "nonbinary"
    with pytest.raises(MicroscopyInputError, match="whole image") as e:
        check_mask(np.full(shape, 255), shape)
    assert e.value.kind == "everything"
    with pytest.raises(MicroscopyInputError, match="RGB") as e:
        check_mask(np.zeros((20, 30, 3)), shape)
    assert check_mask(np.where(np.eye(20, 30) > 0, 255, 0), shape).sum() == 20


# -- cells and metrics ----------------------------------------------------------------
def test_cell_detector_counts_separate_discs():
    img = np.full((100, 100), 210, np.uint8)
    yy, xx = np.indices(img.shape)
    centres = [(20, 20), (20, 70), (70, 20), (70, 70), (45, 45)]
    for cy, cx in centres:
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < 36] = 50
    assert detect_cells(img).max() == 5
    stats = cell_stats(img, np.ones(img.shape, bool))
    assert stats["count"] == 5 and abs(stats["mean_size_um2"] - np.pi * 36) < 25
    assert stats["density_per_mm2"] == pytest.approx(5 / (100 * 100) * 1e6)


def test_metrics_are_perfect_for_the_reference():
    img = cells_image()
    m = artefact_mask(img.shape, 0.3, "hole", rng=0)
    assert masked_ssim(img, img, m, 255) == pytest.approx(1.0)
    assert masked_psnr(img, img, m, 255) == float("inf")
    assert spectrum_distance(img, img, m) == 0.0
    smooth = BASELINES["biharmonic"](img, m)
    assert spectrum_distance(img, smooth, m) > 0.05


# -- repair ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_outside_the_mask_is_bit_identical(dtype):
    img = cells_image((80, 72), dtype=dtype)
    m = artefact_mask(img.shape, 0.25, "tear", rng=1)
    net, card = small_net()
    for kw in ({"tile": -1}, {"tile": None}, {"pixel_size_um": 0.7}):
        out, info = repaint_image(net, card, img, m, steps=4, seed=0, **kw)
        assert out.dtype == dtype and np.array_equal(out[~m], img[~m])
        assert not np.array_equal(out[m], img[m])
    assert info.resampled
    for fn in BASELINES.values():
        out = fn(img, m)
        assert out.dtype == dtype and np.array_equal(out[~m], img[~m])


def test_tiling_equals_one_pass():
    """Tiles are denoised in lockstep with shared noise and blended predictions.

    Exact (to 1 grey level, from float rounding) for a network that sees one pixel; for
    the U-Net, whose receptive field reaches across tile borders, the mean in-mask
    difference stays within 3 % of the intensity range (stated tolerance).
    """
    img = cells_image((96, 96), n=40)
    m = artefact_mask(img.shape, 0.3, "hole", rng=2)
    net, card = small_net(pointwise=True)
    one, _ = repaint_image(net, card, img, m, steps=6, seed=5, tile=None)
    tiled, info = repaint_image(net, card, img, m, steps=6, seed=5, tile=32, overlap=16)
    assert info.tiles > 1
    assert np.abs(one.astype(int) - tiled.astype(int)).max() <= 1
    net, card = small_net()
    one, _ = repaint_image(net, card, img, m, steps=6, seed=5, tile=None)
    tiled, _ = repaint_image(net, card, img, m, steps=6, seed=5, tile=32, overlap=16)
    diff = np.abs(one.astype(float) - tiled.astype(float))[m]
    assert diff.mean() < 0.03 * 255


def test_a_few_training_steps_reduce_the_loss():
    """On generated textures, away from the held-out quarter."""
    images = [cells_image((128, 128), n=60, seed=s) for s in range(2)]
    card = new_card(patch=32, config=SMALL)
    _, card2, losses = train(images, card=card, steps=60, batch=8, lr=2e-3, seed=0)
    assert np.mean(losses[-15:]) < 0.6 * np.mean(losses[:15])
    assert card2.training["steps"] == 60
    hy, hx = heldout_quarter((128, 128))
    assert (hy.start, hx.start) == (64, 64)


def test_the_shipped_model_and_its_card():
    from bidsfill.diffusion.weights import file_sha256
    from bidsfill.microscopy.model import default_model_path, load_model

    path = default_model_path()
    assert path.is_file() and path.stat().st_size < 10e6
    net, card = load_model()
    assert card.architecture == "histology2d" and card.sha256 == file_sha256(path)
    assert card.schedule.beta_schedule == "cosine"
    tr = card.training
    assert {d["name"] for d in tr["training_data"]} == set(tr["heldout_regions"])
    assert all("licence" in d for d in tr["training_data"])
    assert "Very little data" in tr["note"] and "25 minutes" in tr["budget"]


def _half_glass(shape=(128, 128)) -> np.ndarray:
    """Cell texture on the left half, constant bright glass on the right half."""
    img = cells_image(shape, n=60, seed=3)
    img[:, shape[1] // 2 :] = 235
    return img


def test_tissue_mask_finds_the_glass():
    from bidsfill.microscopy.model import intensity_window
    from bidsfill.microscopy.tissue import tissue_grid

    img = _half_glass()
    grid = tissue_grid(img, *intensity_window(img))
    assert grid.tissue[:, :4].all() and not grid.tissue[:, 4:].any()
    assert grid.fraction(0, 0, 32) == 1.0 and grid.fraction(0, 96, 32) == 0.0
    assert grid.fraction(0, 48, 32) == 0.5  # overlap-weighted: 16 px of texture in 32
    full = cells_image((128, 128), n=60, seed=4)
    assert tissue_grid(full, *intensity_window(full)).fraction_of_image == 1.0


def test_training_patches_come_from_the_tissue():
    """Half glass, half texture: with the filter every patch is mostly texture; without it
    about half are mostly glass. Draws are bounded: an all-glass image still gives patches."""
    from bidsfill.microscopy.train import _Source, sample_batch

    img = _half_glass()
    rng = np.random.default_rng(0)
    kept = _Source(img, heldout=False, min_tissue=0.5)
    xs = np.array([kept.corner(32, rng)[1] for _ in range(300)])
    assert (xs + 32 - 64 <= 16).all()  # at least half of each patch left of the glass
    assert kept.rejected > 100 and kept.fallbacks == 0
    off = _Source(img, heldout=False, min_tissue=0.0)
    xs = np.array([off.corner(32, rng)[1] for _ in range(300)])
    assert (xs + 32 - 64 > 16).mean() > 0.3
    batch = sample_batch([kept], 64, 32, rng, augment=False).numpy()
    glass = (235 - kept.lo) / (kept.hi - kept.lo) * 2 - 1
    assert (np.isclose(batch, glass).mean(axis=(1, 2, 3)) <= 0.5 + 1e-9).all()
    glass_only = _Source(np.full((96, 96), 235, np.uint8), heldout=False, min_tissue=0.5)
    assert glass_only.tissue.fraction_of_image == 0.0
    glass_only.corner(32, rng)
    assert glass_only.fallbacks == 1 and glass_only.rejected == 20


def test_the_card_records_the_tissue_filter():
    card = new_card(patch=32, config=SMALL)
    _, card2, _ = train([_half_glass()], card=card, steps=2, batch=4, seed=0, heldout=False)
    tf = card2.training["tissue_filter"]
    assert tf["min_tissue_fraction"] == 0.5 and "16 px" in tf["rule"]
    assert tf["tissue_fraction_per_image"] == [0.5] and tf["patches"] == 8
    assert tf["rejected_draws"] > 0 and tf["patches_after_all_draws_failed"] == 0
    _, card3, _ = train([_half_glass()], card=card, steps=1, batch=2, seed=0, min_tissue=0)
    assert card3.training["tissue_filter"]["rule"].startswith("off")
