"""Rendering recipes: ``paper`` pixel for pixel as the paper's released code describes it, ``displayed`` as shown.

Every expected image here is written from the recipe's description with numpy and Pillow, step by step:
load (min-max of the stored values to 0..255, cast to uint8), RGB, bicubic 256x256, box scaled with int(),
drawn with ImageDraw; crop cut from the full-resolution image with int() corners.
"""

import json
import math

import numpy as np
import pytest
from PIL import Image, ImageDraw

from napari_vip.cli.main import main
from napari_vip.core.errors import VipInputError
from napari_vip.core.markers import Marker
from napari_vip.core.recipes import RECIPES, model_rgb, recipe_provenance, render_for_model


def paper_loaded(stored: np.ndarray) -> Image.Image:
    """The paper's loader: (v - min) / (max - min) * 255, uint8, RGB."""
    norm = (stored - stored.min()) / (stored.max() - stored.min())
    return Image.fromarray((norm * 255).astype(np.uint8)).convert("RGB")


def paper_256(stored: np.ndarray) -> Image.Image:
    return paper_loaded(stored).resize((256, 256), Image.BICUBIC)


def scaled_box(box, hw):
    h, w = hw
    return (int(box[0] / (w / 256)), int(box[1] / (h / 256)), int(box[2] / (w / 256)), int(box[3] / (h / 256)))


def formula_arrow(box256):
    """tip = box centre; u = (tip - (128, 128)) / |...|; tail = tip - u * 0.25 * 256; tail = tip + (0, 5) if u = 0."""
    x1, y1, x2, y2 = box256
    tip = ((x1 + x2) / 2, (y1 + y2) / 2)
    dx, dy = tip[0] - 128, tip[1] - 128
    d = math.hypot(dx, dy)
    tail = (tip[0], tip[1] + 5) if d == 0 else (tip[0] - dx / d * 64, tip[1] - dy / d * 64)
    return tail, tip


def draw_formula_arrow(img: Image.Image, tail, tip, color=(255, 0, 0), width=1) -> Image.Image:
    """Shaft tail -> tip, filled head: tip and the two corners 10 back along the shaft, 5 either side."""
    draw = ImageDraw.Draw(img)
    draw.line([tail, tip], fill=color, width=width)
    ux, uy = tip[0] - tail[0], tip[1] - tail[1]
    n = math.hypot(ux, uy)
    ux, uy = ux / n, uy / n
    bx, by = tip[0] - 10 * ux, tip[1] - 10 * uy
    draw.polygon([tip, (bx - 5 * uy, by + 5 * ux), (bx + 5 * uy, by - 5 * ux)], fill=color)
    return img


@pytest.fixture
def ct_plane():
    """``(300, 200)`` int16 in Hounsfield-like units with a bright blob: not square, not uint8."""
    rng = np.random.default_rng(3)
    plane = (rng.normal(-300, 200, (300, 200))).astype(np.int16)
    plane[100:140, 50:90] = 900
    return plane


def test_paper_recipe_normalises_min_max_and_resizes_bicubic(ct_plane):
    got = render_for_model(ct_plane, None, "paper")
    np.testing.assert_array_equal(got, np.asarray(paper_256(ct_plane)))


def test_paper_recipe_stretches_uint8_too():
    plane = np.linspace(40, 120, 64 * 48).reshape(64, 48).astype(np.uint8)
    got = model_rgb(plane, "paper").rgb
    assert got.min() == 0 and got.max() == 255
    np.testing.assert_array_equal(got, np.asarray(paper_loaded(plane)))
    # displayed keeps uint8 values as napari shows them
    assert model_rgb(plane, "displayed").rgb.max() == 120


@pytest.mark.parametrize("style,box", [("bbox", (30.7, 110.2, 95.9, 150.6)), ("circle", (30.7, 110.2, 95.9, 150.6)),
                                       ("bbox", (0, 0, 199, 299))])
@pytest.mark.parametrize("width", [1, 3])
def test_paper_bbox_and_circle_pixel_for_pixel(ct_plane, style, box, width):
    got = render_for_model(ct_plane, Marker(box, style, "red", width), "paper")
    want = paper_256(ct_plane)
    draw = ImageDraw.Draw(want)
    sb = scaled_box(box, ct_plane.shape)
    (draw.rectangle if style == "bbox" else draw.ellipse)(sb, outline=(255, 0, 0), width=width)
    np.testing.assert_array_equal(got, np.asarray(want))


@pytest.mark.parametrize("box", [(120, 30, 180, 70), (10, 200, 40, 280), (90, 140, 110, 160), (0, 0, 200, 300)])
def test_paper_arrow_matches_the_formula(ct_plane, box):
    got = render_for_model(ct_plane, Marker(box, "arrow", "red", 2), "paper")
    tail, tip = formula_arrow(scaled_box(box, ct_plane.shape))
    want = draw_formula_arrow(paper_256(ct_plane), tail, tip, width=2)
    np.testing.assert_array_equal(got, np.asarray(want))


def test_paper_arrow_points_outward_from_the_image_centre():
    plane = np.zeros((256, 256), dtype=np.uint8)
    plane[0, 0] = 1  # not constant
    got = render_for_model(plane, Marker((200, 20, 240, 60), "arrow"), "paper")
    red = np.all(got == [255, 0, 0], axis=-1)
    rows, cols = np.nonzero(red)
    # tip at (220, 40); tail 64 px back toward (128, 128): every arrow pixel lies between them
    assert red[40, 220]
    u = np.array([220 - 128, 40 - 128]) / math.hypot(220 - 128, 40 - 128)
    tail = np.array([220, 40]) - 64 * u
    ty, tx = int(round(tail[1])), int(round(tail[0]))
    assert red[ty - 1:ty + 2, tx - 1:tx + 2].any()
    assert cols.max() <= 221 and rows.min() >= 39  # nothing beyond the tip


def test_displayed_arrow_lies_on_the_papers_arrow():
    """The docks' rasteriser draws the same arrow: its pixels are within 1 px of the formula's."""
    plane = np.full((256, 256), 7, dtype=np.uint8)
    plane[0, 0] = 0
    from scipy.ndimage import distance_transform_edt

    for box in [(200, 20, 240, 60), (20, 180, 60, 220), (100, 10, 140, 30)]:
        shown = render_for_model(plane, Marker(box, "arrow"), "displayed", contrast_limits=(0, 255))
        mine = np.all(shown == [255, 0, 0], axis=-1)
        ref_img = draw_formula_arrow(Image.new("RGB", (256, 256)), *formula_arrow(box))
        ref = np.all(np.asarray(ref_img) == [255, 0, 0], axis=-1)
        near = distance_transform_edt(~ref) <= 1.5
        assert near[mine].mean() >= 0.95, box


def test_paper_crop_cuts_the_full_resolution_square_with_int_corners(ct_plane):
    box = (60.6, 101.3, 99.8, 139.9)
    got = render_for_model(ct_plane, Marker(box, "crop"), "paper")
    x1, y1, x2, y2 = (int(v) for v in box)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    s = max(0.5 * (x2 - x1), 0.5 * (y2 - y1), 0.2 * 200, 0.2 * 300)
    corners = (max(0, int(cx - s)), max(0, int(cy - s)), min(200, int(cx + s)), min(300, int(cy + s)))
    want = paper_loaded(ct_plane).crop(corners)
    np.testing.assert_array_equal(got, np.asarray(want))
    assert got.shape == (120, 120, 3)


def test_paper_colours_are_pillows_named_colours(ct_plane):
    got = render_for_model(ct_plane, Marker((20, 20, 120, 120), "bbox", "green"), "paper")
    assert np.all(got == [0, 128, 0], axis=-1).any()  # Pillow's "green", as the released code draws it


def test_unknown_recipe_is_refused(ct_plane):
    with pytest.raises(VipInputError, match="paper, displayed"):
        render_for_model(ct_plane, None, "fancy")
    assert RECIPES == ("paper", "displayed")
    assert recipe_provenance("paper")["recipe"] == "paper"


def test_paper_recipe_handles_nan_with_a_note():
    plane = np.arange(100, dtype=np.float32).reshape(10, 10)
    plane[0, 0] = np.nan
    image = model_rgb(plane, "paper")
    assert image.rgb[0, 0, 0] == 0 and "non-finite" in image.notes[0]


def test_cli_arrow_render_matches_the_formula_and_records_the_recipe(capsys, tmp_path, tiny_clip_checkpoint):
    arch, ckpt = tiny_clip_checkpoint
    stored = (np.random.default_rng(5).random((180, 240)) * 3000).astype(np.uint16)
    src = tmp_path / "scan.png"
    Image.fromarray(stored).save(src)
    seen = tmp_path / "seen.png"
    box = (150, 20, 200, 60)
    code = main(["classify", str(src), "--box", *map(str, box), "--marker", "arrow", "--classes", "a", "b",
                 "--model", arch, "--checkpoint", ckpt, "--device", "cpu", "--save-rendered", str(seen), "--json"])
    out = capsys.readouterr().out
    assert code == 0
    d = json.loads(out)
    assert d["provenance"]["recipe"] == "paper"
    reread = np.asarray(Image.open(src))
    want = draw_formula_arrow(paper_256(reread), *formula_arrow(scaled_box(box, stored.shape)))
    np.testing.assert_array_equal(np.asarray(Image.open(seen)), np.asarray(want))
    code = main(["classify", str(src), "--classes", "a", "b", "--model", arch, "--checkpoint", ckpt, "--device", "cpu",
                 "--recipe", "displayed", "--json"])
    assert json.loads(capsys.readouterr().out)["provenance"]["recipe"] == "displayed"
