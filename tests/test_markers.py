"""Marker geometry of Denner et al. (MIDL 2025), pixel by pixel, on the 256x256 render."""

import numpy as np
import pytest
from scipy import ndimage

from napari_vip.core.errors import VipInputError
from napari_vip.core.markers import (
    COLORS,
    RENDER_SIZE,
    Marker,
    arrow_from_box,
    arrow_mask,
    box_outline_mask,
    clip_markers,
    crop_box,
    ellipse_outline_mask,
    render_marker,
)

RED = np.array(COLORS["red"], np.uint8)


def black(h=256, w=256):
    return np.zeros((h, w, 3), np.uint8)


def drawn(img, color="red"):
    return np.all(img == np.array(COLORS[color], np.uint8), axis=-1)


def test_render_size_and_colors_are_the_papers():
    assert RENDER_SIZE == 256
    assert COLORS == {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0),
                      "orange": (255, 165, 0), "white": (255, 255, 255), "black": (0, 0, 0)}


def test_bbox_outline_lies_exactly_on_the_box():
    out = render_marker(black(), Marker((50, 60, 150, 200), "bbox"))
    m = drawn(out)
    expected = np.zeros((256, 256), bool)
    expected[60, 50:151] = expected[200, 50:151] = True
    expected[60:201, 50] = expected[60:201, 150] = True
    np.testing.assert_array_equal(m, expected)


def test_bbox_line_width_grows_inward():
    m = box_outline_mask((50, 60, 150, 200), (256, 256), width=3)
    assert m[60:63, 100].all() and not m[63, 100] and not m[59, 100]
    assert m[100, 148:151].all() and not m[100, 147] and not m[100, 151]
    assert m.sum() == 2 * 3 * 101 + 2 * 3 * (141 - 6)


def test_circle_is_the_ellipse_inscribed_in_the_box():
    box = (40, 80, 200, 160)  # a = 80.5, b = 40.5 around (120, 120)
    m = drawn(render_marker(black(), Marker(box, "circle")))
    rows, cols = np.nonzero(m)
    # inside the box, touching its four edges at the axis ends
    assert cols.min() == 40 and cols.max() == 200 and rows.min() == 80 and rows.max() == 160
    assert m[120, 40] and m[120, 200] and m[80, 120] and m[160, 120]
    # every drawn pixel is within one pixel of the ideal ellipse
    r = np.hypot((cols - 120) / 80.5, (rows - 120) / 40.5)
    assert r.max() <= 1.0 and r.min() >= 1.0 - 1.5 / 40.5
    # closed curve: the centre is not connected to the corner through undrawn pixels
    lab, _ = ndimage.label(~m)
    assert lab[120, 120] != lab[0, 0]
    # no pixel outside the box corners region (the corners of the box stay empty)
    assert not m[80, 40] and not m[160, 200]


def test_circle_line_width_grows_inward():
    thin = ellipse_outline_mask((40, 40, 200, 200), (256, 256), 1)
    thick = ellipse_outline_mask((40, 40, 200, 200), (256, 256), 4)
    assert (thick & thin).sum() == thin.sum()  # same outer edge
    assert thick[120, 40:44].all() and not thick[120, 44]


def test_arrow_tip_at_box_centre_tail_back_toward_image_centre():
    box = (180, 40, 220, 80)  # centre (200, 60), up-right of the image centre (127.5, 127.5)
    tail, tip = arrow_from_box(box, (256, 256))
    # the formula: u = (box centre - image centre) / |...|, tail = tip - u * 0.25 * min(W, H)
    u = np.array([200 - 127.5, 60 - 127.5])
    u /= np.hypot(*u)
    np.testing.assert_allclose(tip, [200, 60])
    np.testing.assert_allclose(tail, np.array([200, 60]) - u * 64.0)
    # the tail lies between the image centre and the tip: the arrow points outward at the finding
    assert np.hypot(*(tail - [127.5, 127.5])) < np.hypot(*(tip - np.array([127.5, 127.5])))


def test_arrow_tail_five_pixels_below_tip_when_centres_coincide():
    tail, tip = arrow_from_box((117.5, 117.5, 137.5, 137.5), (256, 256))
    np.testing.assert_allclose(tip, [127.5, 127.5])
    np.testing.assert_allclose(tail, [127.5, 132.5])


def test_arrow_head_is_a_filled_triangle_10_long_10_wide():
    m = arrow_mask((100, 200), (100, 100), (256, 256), 1)  # pointing up, tip at row 100
    head = m[100:111]
    assert m[100, 100]
    widths = head.sum(axis=1)
    assert widths[-1] >= 9 and widths[-1] <= 11  # base: 10 px wide
    assert np.all(np.diff(widths[1:]) >= 0)  # widens from tip to base
    # filled: every row of the head is one contiguous run
    for row in head:
        idx = np.nonzero(row)[0]
        assert idx.max() - idx.min() + 1 == idx.size
    # shaft: one pixel wide between base and tail
    assert m[150, 100] and m[150].sum() == 1
    assert m[200, 100] and not m[201].any()


def test_arrow_render_uses_derived_arrow_and_color():
    out = render_marker(black(), Marker((180, 40, 220, 80), "arrow", "green"))
    m = drawn(out, "green")
    assert m[60, 200]  # tip at the box centre
    tail, _ = arrow_from_box((180, 40, 220, 80), (256, 256))
    assert m[int(round(tail[1])), int(round(tail[0]))]
    assert not drawn(out, "red").any()


def test_crop_is_square_around_box_with_the_papers_half_size():
    img = np.arange(1000 * 800 * 3, dtype=np.uint32).reshape(1000, 800, 3).astype(np.uint8)
    # small box: half-size = 0.2 * max(W, H) = 200 -> 400x400 square around (400, 500)
    out = render_marker(img, Marker((390, 490, 410, 510), "crop"))
    assert out.shape == (400, 400, 3)
    x0, y0, x1, y1 = crop_box((390, 490, 410, 510), (1000, 800))
    np.testing.assert_array_equal(out, img[y0:y1 + 1, x0:x1 + 1])
    # large box: half-size = 0.5 * w
    assert crop_box((100, 450, 500, 550), (1000, 800)) == (100, 300, 499, 699)


def test_crop_is_clipped_at_the_image_border():
    assert crop_box((0, 0, 10, 10), (1000, 800)) == (0, 0, 204, 204)


def test_markers_scale_from_full_resolution_to_256():
    img = black(512, 1024)
    out = render_marker(img, Marker((511.5 - 0.5, 255.5 - 0.5, 767.5 - 0.5, 383.5 - 0.5), "bbox"))
    assert out.shape == (256, 256, 3)
    rows, cols = np.nonzero(drawn(out))
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (127, 191, 127, 191)


def test_none_style_is_the_plain_resized_image():
    img = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
    np.testing.assert_array_equal(render_marker(img, None), render_marker(img, Marker((1, 1, 9, 9), "none")))
    assert render_marker(img, None).shape == (256, 256, 3)


def test_drawn_arrow_is_drawn_as_given():
    m = Marker.from_arrow((20, 200), (100, 100))
    out = drawn(render_marker(black(), m))
    assert out[100, 100] and out[200, 20]
    assert m.box_xyxy[0] < 100 < m.box_xyxy[2]


@pytest.mark.parametrize("kwargs,msg", [({"style": "star"}, "style"), ({"color": "pink"}, "colour"),
                                        ({"line_width": 0}, "line width")])
def test_bad_marker_options_are_refused(kwargs, msg):
    with pytest.raises(VipInputError, match=msg):
        Marker((0, 0, 5, 5), **kwargs)


def test_zero_area_box_is_refused_and_outside_box_clipped():
    with pytest.raises(VipInputError, match="zero area"):
        render_marker(black(), Marker((10, 10, 10, 40), "bbox"))
    with pytest.raises(VipInputError, match="outside"):
        render_marker(black(), Marker((300, 300, 400, 400), "bbox"))
    out = drawn(render_marker(black(), Marker((200, 200, 400, 400), "bbox")))
    assert out[200, 255] and out[255, 200]


def test_clip_markers_keeps_style_and_arrow_and_says_which_was_clipped():
    arrow = Marker.from_arrow((5, 5), (30, 30), "green", 2)
    inside = Marker((1, 1, 10, 10), "bbox")
    out, notes = clip_markers([inside, arrow, Marker((90, 20, 40, 120), "circle")], (100, 100))
    assert out[0] == inside and out[1].arrow_xy == arrow.arrow_xy and out[1].color == "green"
    assert out[2].box_xyxy == (40, 20, 90, 99) and out[2].style == "circle"
    assert len(notes) == 1 and notes[0].startswith("marker 3:") and "clipped to (40.0, 20.0, 90.0, 99.0)" in notes[0]
    with pytest.raises(VipInputError, match="zero area"):
        clip_markers([Marker((3, 3, 3, 9))], (100, 100))
