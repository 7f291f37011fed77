"""The medvlsm prompt ladder: synthetic masks with known attributes, and the released files' wording."""

import json
import random
from pathlib import Path

import numpy as np
import pytest

from napari_vip.core.errors import VipInputError
from napari_vip.core.prompt_ladder import (
    MEDVLSM_DEFINITIONS,
    LadderAttributes,
    choose_prompt,
    grid_location,
    ladder_attributes,
    ladder_from_attributes,
    prompt_ladder,
)

DATA = Path(__file__).parent / "data" / "medvlsm"
POLYP_DEFS = list(MEDVLSM_DEFINITIONS["polyp"])
PINK = (235, 150, 170)
WHITE = (245, 245, 245)


def disc(hw, center_rc, radius):
    rr, cc = np.mgrid[:hw[0], :hw[1]]
    return (rr - center_rc[0]) ** 2 + (cc - center_rc[1]) ** 2 <= radius ** 2


def paint(mask, color, hw=(90, 90)):
    img = np.empty((*hw, 3), np.uint8)
    img[:] = (90, 40, 40)  # a colour image (region concepts call an image with equal channels gray)
    img[mask] = color
    return img


def test_disc_on_the_right():
    # a disc of radius 8 at (row 45, col 75) on 90 x 90: area 201 px = 2.5 % (< 3 %: small); centroid column
    # (75 + 0.5) / 90 = 0.84 (right third), row 0.51 (middle third): "right"; one object; eccentricity 0: round
    m = disc((90, 90), (45, 75), 8)
    ladder = prompt_ladder(paint(m, PINK), m, "polyp")
    assert list(ladder) == [f"p{i}" for i in range(10)]
    assert ladder["p0"] == ""
    assert ladder["p1"] == "polyp"
    assert ladder["p2"] == "round polyp"
    assert ladder["p3"] == "pink round polyp"
    assert ladder["p4"] == "small pink round polyp"
    assert ladder["p5"] == "one small pink round polyp"
    assert ladder["p6"] == "one small pink round polyp, located in right of the image"
    assert ladder["p7"][0] == "polyp which is a projecting growth of tissue"
    assert ladder["p8"][0] == "one small pink round polyp which is a projecting growth of tissue"
    assert ladder["p9"][4] == ("one small pink round polyp which is an abnormal growth of tissues projecting from a "
                               "mucuos membrane located in right of the image")
    assert all(len(ladder[k]) == 5 for k in ("p7", "p8", "p9"))


def test_two_squares():
    # two 12 x 12 white squares (144 px = 1.8 % each: small) in the top-left and bottom-right cells;
    # each fills its bounding square: shape "square"; class stays singular after "two" (as released)
    m = np.zeros((90, 90), bool)
    m[5:17, 5:17] = True
    m[70:82, 70:82] = True
    ladder = prompt_ladder(paint(m, WHITE), m, "polyp", definition="a growth")
    assert ladder["p5"] == "two small white square polyp"
    assert ladder["p6"] == "two small white square polyp, located in top left, bottom right of the image"
    assert ladder["p7"] == ["polyp which is a growth"]
    assert ladder["p8"] == ["two small white square polyp which is a growth"]
    assert ladder["p9"] == ["two small white square polyp which is a growth located in top left, bottom right of "
                            "the image"]


def test_two_objects_of_two_sizes_and_a_rectangle():
    # raster order: the rectangle (first pixel at row 10) before the small square (row 40);
    # rectangle 30 x 12 = 360 px = 4.4 % (medium), centroid (15.5, 64.5) -> top right;
    # square 8 x 8 = 0.8 % (small), centroid (43.5, 43.5): (44 / 90 = 0.49) -> center; sizes smallest first
    m = np.zeros((90, 90), bool)
    m[10:22, 50:80] = True
    m[40:48, 40:48] = True
    a = ladder_attributes(paint(m, WHITE), m, "polyp")
    assert a.number == 2 and a.shape == "rectangle" and a.sizes == ["small", "medium"]
    assert a.locations == ["top right", "center"]
    assert prompt_ladder(paint(m, WHITE), m, "polyp")["p6"] == (
        "two small, medium white rectangle polyp, located in top right, center of the image")


def test_grid_cells():
    hw = (90, 120)
    assert grid_location((0, 0), hw) == "top left"
    assert grid_location((44, 60), hw) == "center"
    assert grid_location((89, 119), hw) == "bottom right"
    assert grid_location((29, 60), hw) == "top"  # (29.5) / 90 < 1/3
    assert grid_location((30, 60), hw) == "center"


def test_empty_mask_is_the_no_class_ladder_as_released():
    m = np.zeros((40, 40), bool)
    ladder = prompt_ladder(np.zeros((40, 40, 3), np.uint8), m, "polyp")
    released = json.loads((DATA / "bkai_polyp_test_head.json").read_text())[-1]["prompts"]
    assert ladder == released


def test_template_reproduces_released_entries():
    """The wording rules give exactly the released prompts when fed the released attributes."""
    kvasir = json.loads((DATA / "kvasir_polyp_test_head.json").read_text())[0]["prompts"]
    a = LadderAttributes("polyp", 1, shape="circle", color="pink", sizes=["small"], locations=["right"],
                         definitions=POLYP_DEFS)
    assert ladder_from_attributes(a) == kvasir
    bkai = json.loads((DATA / "bkai_polyp_test_head.json").read_text())[0]["prompts"]
    a = LadderAttributes("polyp", 1, shape="round", color="pink", sizes=["medium"], locations=["bottom right"],
                         definitions=POLYP_DEFS)
    assert ladder_from_attributes(a) == bkai
    # a released Kvasir training entry with two objects of two sizes (ck2bxknhjvs1x0794iogrq49k)
    p5 = "two small, medium white round polyp"
    where = "located in right, center of the image"
    a = LadderAttributes("polyp", 2, shape="round", color="white", sizes=["small", "medium"],
                         locations=["right", "center"], definitions=POLYP_DEFS)
    got = ladder_from_attributes(a)
    assert got["p4"] == "small, medium white round polyp" and got["p5"] == p5
    assert got["p6"] == f"{p5}, {where}"
    assert got["p9"][0] == f"{p5} which is a projecting growth of tissue {where}"


def test_definitions_from_the_symptom_library_and_errors():
    m = disc((60, 60), (30, 30), 10)
    img = paint(m, PINK, (60, 60))
    lib = {"nodule": ["a small rounded opacity", "a spot in the lung"]}
    ladder = prompt_ladder(img, m, "nodule", library=lib)
    assert ladder["p7"] == ["nodule which is a small rounded opacity", "nodule which is a spot in the lung"]
    assert ladder["p6"].endswith("located in center of the image")
    # the user's library wins over the released definitions; the released ones fill in for classes it lacks
    assert prompt_ladder(img, m, "polyp", library={"polyp": ["a growth"]})["p7"] == ["polyp which is a growth"]
    assert prompt_ladder(img, m, "polyp", library=lib)["p7"][0] == "polyp which is a projecting growth of tissue"
    with pytest.raises(VipInputError, match="No definition of 'zzz'"):
        prompt_ladder(img, m, "zzz", library={})
    partial = prompt_ladder(img, m, "zzz", library={}, missing_definition="omit")  # what a dock can offer
    assert list(partial) == [f"p{i}" for i in range(7)] and partial["p1"] == "zzz"
    with pytest.raises(VipInputError, match="shape"):
        prompt_ladder(img, m[:50], "polyp")
    with pytest.raises(VipInputError, match="class"):
        prompt_ladder(img, m, "  ")


def test_choose_prompt_as_the_released_datamodule():
    prompts = json.loads((DATA / "kvasir_polyp_test_head.json").read_text())[0]["prompts"]
    rng = random.Random(0)
    assert choose_prompt(prompts, "p6", rng) == prompts["p6"]
    assert choose_prompt(prompts, "p0", rng) == ""
    drawn = {choose_prompt(prompts, "p8", rng) for _ in range(200)}
    assert drawn == set(prompts["p8"])
    anything = {choose_prompt(prompts, "random", rng) for _ in range(2000)}
    allowed = {v for k, v in prompts.items() if k != "p0" and isinstance(v, str)}
    allowed |= {s for k, v in prompts.items() if isinstance(v, list) for s in v}
    assert "" not in anything and anything == allowed
    # the same draw as the released code: random.choice over values[1:], then over a list
    r1, r2 = random.Random(7), random.Random(7)
    expected = r2.choice(list(prompts.values())[1:])
    if isinstance(expected, list):
        expected = r2.choice(expected)
    assert choose_prompt(prompts, "random", r1) == expected
    with pytest.raises(VipInputError, match="p12"):
        choose_prompt(prompts, "p12", rng)


def test_cli_ladder(tmp_path, capsys):
    from PIL import Image

    from napari_vip.cli.main import main

    m = disc((90, 90), (45, 75), 8)
    Image.fromarray(paint(m, PINK)).save(tmp_path / "img.png")
    Image.fromarray((m * 255).astype(np.uint8)).save(tmp_path / "mask.png")
    assert main(["concepts", str(tmp_path / "img.png"), "--mask", str(tmp_path / "mask.png"), "--class", "polyp",
                 "--ladder", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["ladder"]["p6"] == "one small pink round polyp, located in right of the image"
    assert d["ladder"]["p7"][0] == "polyp which is a projecting growth of tissue"
    assert main(["concepts", str(tmp_path / "img.png"), "--mask", str(tmp_path / "mask.png"), "--class", "polyp",
                 "--ladder", "--definition", "a growth"]) == 0
    out = capsys.readouterr().out
    assert "p9: one small pink round polyp which is a growth located in right of the image" in out


def test_ladder_invariants_on_random_masks():
    """Whatever the mask: p2..p5 grow one word group at a time, p6/p9 add the same location, p7..p9 follow the
    definitions, and the number word counts the locations."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from napari_vip.core.prompt_ladder import NUMBER_WORDS

    @settings(max_examples=40, deadline=None)
    @given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 70), st.integers(1, 12), st.integers(1, 12)),
                    min_size=0, max_size=4), st.integers(0, 255))
    def check(rects, shade):
        m = np.zeros((60, 80), bool)
        for r, c, h, w in rects:
            m[r:r + h, c:c + w] = True
        img = paint(m, (shade, 255 - shade, 128), (60, 80))
        ladder = prompt_ladder(img, m, "polyp", definition=["a growth", "a lump"])
        if not m.any():
            assert ladder["p6"] == "no polyp" and ladder["p9"] == ["no polyp"]
            return
        assert ladder["p2"].endswith(" polyp") and ladder["p3"].endswith(ladder["p2"])
        assert ladder["p4"].endswith(ladder["p3"]) and ladder["p5"].endswith(" " + ladder["p4"])
        assert ladder["p6"].startswith(ladder["p5"] + ", located in ") and ladder["p6"].endswith(" of the image")
        where = ladder["p6"][len(ladder["p5"]) + 2:]
        assert ladder["p8"] == [f"{ladder['p5']} which is {d}" for d in ("a growth", "a lump")]
        assert ladder["p9"] == [f"{p8} {where}" for p8 in ladder["p8"]]
        n = NUMBER_WORDS.index(ladder["p5"].split()[0])
        assert len(where[len("located in "):-len(" of the image")].split(", ")) == n

    check()
