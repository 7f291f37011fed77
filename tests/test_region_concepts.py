"""Region concepts on synthetic masks with known answers; templates and progressive variants."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import disk, ellipse

from napari_vip.core.errors import VipInputError
from napari_vip.core.region_concepts import (
    VARIANTS,
    box_region,
    color_name,
    describe_box,
    describe_mask,
    describe_region,
    fill_template,
    location_name,
    plural,
)

H, W = 200, 300


def gray(background=60):
    return np.full((H, W), background, dtype=np.uint8)


def disc_mask(center_rc, radius, hw=(H, W)):
    m = np.zeros(hw, dtype=bool)
    rr, cc = disk(center_rc, radius, shape=hw)
    m[rr, cc] = True
    return m


def test_bright_disc_top_left_is_one_round_small_bright_nodule_top_left():
    m = disc_mask((40, 50), 15)  # 707 px = 1.2 % of the image
    img = gray()
    img[m] = 220
    rc = describe_mask(img, m, "nodule")
    assert rc.sentence() == "1 round small bright nodule, located in the top left of the image."
    assert rc.number == 1 and rc.shape == "round" and rc.location == "top left"
    assert rc.contrast == pytest.approx((220 - 60) / 160)


def test_exact_variants_p1_to_p6():
    m = disc_mask((40, 50), 15)
    img = gray()
    img[m] = 220
    assert describe_mask(img, m, "nodule").variants() == {
        "p1": "nodule",
        "p2": "round nodule",
        "p3": "round bright nodule",
        "p4": "round small bright nodule",
        "p5": "1 round small bright nodule",
        "p6": "1 round small bright nodule, located in the top left of the image.",
    }
    assert list(VARIANTS) == ["p1", "p2", "p3", "p4", "p5", "p6"]


def test_two_blobs_are_two_and_the_keyword_is_plural():
    m = disc_mask((150, 230), 10) | disc_mask((160, 270), 10)
    img = gray(200)
    img[m] = 40
    rc = describe_mask(img, m, "nodule")
    assert rc.number == 2
    assert rc.sentence() == "2 round small dark nodules, located in the bottom right of the image."
    assert rc.sentence("{number} {keyword}") == "2 nodules"
    rc.number_words = True
    assert rc.variants()["p5"] == "two round small dark nodules"


def test_specks_are_not_counted_as_objects():
    m = disc_mask((100, 150), 20)
    m[5, 5] = True  # one stray pixel
    rc = describe_mask(gray(), m, "mass")
    assert rc.number == 1
    assert any("speck" in n for n in rc.notes)


def test_a_thin_bar_is_elongated():
    m = np.zeros((H, W), dtype=bool)
    m[95:100, 60:240] = True
    assert describe_mask(gray(), m, "line").shape == "elongated"


def test_an_ellipse_two_to_one_is_oval_and_a_crescent_irregular():
    m = np.zeros((H, W), dtype=bool)
    rr, cc = ellipse(100, 150, 20, 40, shape=(H, W))
    m[rr, cc] = True
    assert describe_mask(gray(), m, "lesion").shape == "oval"
    crescent = disc_mask((100, 150), 40) & ~disc_mask((100, 170), 40)
    assert describe_mask(gray(), crescent, "lesion").shape == "irregular"


@pytest.mark.parametrize("radius, size", [(5, "tiny"), (12, "small"), (40, "medium"), (90, "large")])
def test_size_from_the_area_share(radius, size):
    m = disc_mask((100, 150), radius)
    frac = m.sum() / m.size
    assert describe_mask(gray(), m, "x").size == size, frac


def test_brightness_similar_when_no_contrast():
    m = disc_mask((100, 150), 20)
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, size=(H, W)).astype(np.uint8)  # same statistics inside and around
    assert describe_mask(img, m, "x").color == "similar"


@pytest.mark.parametrize("xy, where", [
    ((150, 100), "center"), ((170, 110), "center"),  # within 0.1 of the middle
    ((20, 20), "top left"), ((150, 10), "top center"), ((290, 30), "top right"),
    ((20, 190), "bottom left"), ((150, 195), "bottom center"), ((280, 180), "bottom right"),
])
def test_location_grid(xy, where):
    assert location_name(xy, (H, W)) == where


def test_colour_images_get_colour_names():
    img = np.zeros((H, W, 3), dtype=np.uint8)
    img[:] = (190, 70, 30)  # orange-red fundus background
    m = disc_mask((60, 220), 12)
    img[m] = (240, 225, 80)
    rc = describe_mask(img, m, "exudate")
    assert rc.color == "yellow"
    assert rc.sentence() == "1 round small yellow exudate, located in the top right of the image."
    assert color_name((110, 20, 20)) == "dark red"
    assert color_name((240, 240, 240)) == "white"


def test_rgb_with_equal_channels_counts_as_grayscale():
    m = disc_mask((100, 150), 20)
    g = gray()
    g[m] = 230
    rc = describe_mask(np.stack([g] * 3, axis=-1), m, "x")
    assert rc.color == "bright" and rc.mean_color is None


def test_box_is_described_through_its_inscribed_ellipse():
    img = gray()
    rc = describe_box(img, (20, 10, 80, 40), "nodule")  # 61 x 31 px box: 2:1 ellipse
    assert rc.source == "box" and rc.shape == "oval" and rc.location == "top left"
    region = box_region((20, 10, 80, 40), (H, W))
    assert region[25, 50] and not region[10, 20]  # centre in, corner out
    assert rc.area_fraction == pytest.approx(np.pi * 30.5 * 15.5 / (H * W), rel=0.05)


def test_front_door_prefers_the_mask_and_falls_back_to_the_box_when_it_is_empty():
    img = gray()
    m = disc_mask((150, 250), 10)
    assert describe_region(img, m, (0, 0, 50, 50), "n").location == "bottom right"
    rc = describe_region(img, np.zeros((H, W), bool), (0, 0, 50, 50), "n")
    assert rc.source == "box" and rc.location == "top left" and "empty" in rc.notes[0]


def test_bad_input():
    img = gray()
    with pytest.raises(VipInputError, match="empty"):
        describe_mask(img, np.zeros((H, W), bool), "nodule")
    with pytest.raises(VipInputError, match=r"shape \(100, 100\).*\(200, 300\)"):
        describe_mask(img, np.ones((100, 100), bool), "nodule")
    with pytest.raises(VipInputError, match="keyword"):
        describe_mask(img, disc_mask((50, 50), 5), "  ")
    with pytest.raises(VipInputError, match="Nothing to describe"):
        describe_region(img)
    with pytest.raises(VipInputError, match="outside"):
        describe_box(img, (400, 400, 500, 500))
    with pytest.raises(VipInputError, match="unknown field"):
        fill_template("{number} {colour} {keyword}", {"number": "1", "keyword": "x"})


def test_plural():
    assert [plural(w) for w in ("nodule", "mass", "opacity", "pleural effusion", "ray")] == \
        ["nodules", "masses", "opacities", "pleural effusions", "rays"]
