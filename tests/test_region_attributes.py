"""CoTexNet's region attributes without a model: ROI image, region count, released question, answer check,
released sentence, and the editable sentence CSV.  Expected values are written out from the released code
(Rango-bit/CoTexNet ``llava_inference/*.py``), not taken from ours."""

from __future__ import annotations

import numpy as np
import pytest

from napari_vip.core.errors import VipInputError
from napari_vip.core.region_attributes import (
    AnswerRejected,
    RegionAttributes,
    SentenceRow,
    attribute_sentence,
    check_answer,
    external_contour_count,
    keyword_for,
    mask_attributes,
    position_description,
    question,
    read_sentence_csv,
    roi_image,
    write_sentence_csv,
)


def disc(hw, center_rc, r):
    yy, xx = np.mgrid[: hw[0], : hw[1]]
    return (yy - center_rc[0]) ** 2 + (xx - center_rc[1]) ** 2 <= r * r


def test_external_contours_count_outer_objects_8_connected():
    m = np.zeros((40, 40), bool)
    assert external_contour_count(m) == 0
    m |= disc((40, 40), (10, 10), 5)
    m |= disc((40, 40), (30, 30), 5)
    assert external_contour_count(m) == 2
    d = np.zeros((10, 10), bool)  # two squares touching at a corner: one 8-connected object
    d[1:4, 1:4] = True
    d[4:7, 4:7] = True
    assert external_contour_count(d) == 1
    ring = disc((40, 40), (20, 20), 15) & ~disc((40, 40), (20, 20), 10)
    ring |= disc((40, 40), (20, 20), 4)  # an island in the ring's hole is not external
    assert external_contour_count(ring) == 1
    assert external_contour_count(ring.astype(np.uint8) * 255) == 1


def test_roi_image_keeps_the_region_and_zeroes_the_rest():
    rng = np.random.default_rng(0)
    img = rng.integers(1, 256, (12, 16, 3), dtype=np.uint8)
    m = np.zeros((12, 16), np.uint8)
    m[3:7, 5:9] = 255
    roi = roi_image(img, m)
    assert roi.dtype == np.uint8 and roi.shape == img.shape
    assert np.array_equal(roi[3:7, 5:9], img[3:7, 5:9])
    assert roi[m == 0].max() == 0
    with pytest.raises(VipInputError, match="mask has shape"):
        roi_image(img, m[:5])


def test_question_is_the_released_wording():
    released_prompt = (
        "Please provide a single JSON format message containing a general description of the area information (only one result is needed). "
        "Use the following format: {'number': xxx, 'location': xxx, 'shape': xxx, 'size': xxx, 'color': xxx}. "
        "Note: Use words in the 'location' item to describe the approximate location of the region in the image. Only one description should be provided.")
    assert question("polyp area") == "The image shows the " + "polyp area" + "s. " + released_prompt
    assert keyword_for("Kvasir") == "polyp area" and keyword_for("busi") == "tumor area"
    with pytest.raises(VipInputError, match="keyword"):
        keyword_for("chest")


def test_check_answer_accepts_json_python_literals_and_bracketed_answers():
    a = check_answer('{"number": 1, "location": "center", "shape": "oval", "size": "large", "color": "pink"}', 1)
    assert a.as_dict() == {"number": 1, "location": "center", "shape": "oval", "size": "large", "color": "pink"}
    assert a.corrections == []
    b = check_answer("[{'number': 1, 'location': 'top left', 'shape': 'round', 'size': 'small', 'color': 'red'}]", 2)
    assert b.location == "top left" and b.number == 1
    c = check_answer('```json\n{"number": 1, "location": "center", "shape": "oval", "size": "large", "color": "red"}\n```', 1)
    assert c.color == "red"


@pytest.mark.parametrize("answer, why", [
    ("The polyp is oval and pink.", "not a dict"),
    ('{"number": 1, "location": "center", "shape": "oval", "size": "large"}', "incomplete"),
    ('{"number": 1, "location": "center", "shape": "oval", "size": "large", "color": "pink", "texture": "smooth"}',
     "incomplete"),
    ("['oval', 'pink']", "not a dict"),
    ('{"number": "several", "location": "center", "shape": "oval", "size": "large", "color": "pink"}', "not a number"),
    ("", "empty"),
])
def test_check_answer_rejects_what_the_released_check_rejects(answer, why):
    with pytest.raises(AnswerRejected, match=why):
        check_answer(answer, 1)


def test_check_answer_caps_number_at_the_region_count_and_names_box_locations():
    a = check_answer('{"number": 3, "location": "center", "shape": "oval", "size": "large", "color": "pink"}', 1)
    assert a.number == 1 and "set to 1" in a.corrections[0]
    b = check_answer('{"number": 2, "location": [0.6, 0.1, 0.9, 0.3], "shape": "oval", "size": "small", "color": "red"}', 2)
    assert b.number == 2 and b.location == "top right"


def test_position_description_as_released():
    assert position_description([0.4, 0.45, 0.6, 0.55]) == "center"
    assert position_description([0.0, 0.0, 0.2, 0.2]) == "top left"
    assert position_description([0.0, 0.7, 0.2, 0.9]) == "bottom left"
    assert position_description([0.0, 0.4, 0.2, 0.6]) == "left"
    assert position_description([0.7, 0.7, 0.9, 0.9]) == "bottom right"
    assert position_description([0.4, 0.0, 0.6, 0.2]) == "top center"


def released_sentence(number, location, shape, size, color, keyword):
    """``text_to_csv.check_csv`` written out."""
    location = location.replace("of the image", "").replace("of image", "")
    if int(number) > 1:
        keyword = keyword + "s"
    loc_describe = "." if "image" in location else "of the image."
    return f"{number} {shape} {size} {color} {keyword}, located in the {location} {loc_describe}"


@pytest.mark.parametrize("attrs", [
    {"number": 1, "location": "center", "shape": "oval", "size": "large", "color": "pink"},
    {"number": 1, "location": "left side of the image", "shape": "oval", "size": "small", "color": "pink"},
    {"number": 2, "location": "lower right corner", "shape": "round", "size": "small", "color": "red"},
    {"number": 1, "location": "middle of image", "shape": "curved", "size": "large", "color": "pink"},
    {"number": 1, "location": "image centre", "shape": "oval", "size": "large", "color": "pink"},
])
def test_sentence_is_the_released_one(attrs):
    got = attribute_sentence(attrs, "polyp area")
    assert got == released_sentence(attrs["number"], attrs["location"], attrs["shape"], attrs["size"],
                                     attrs["color"], "polyp area")
    # the released Kvasir file's wording for its rows 0 and 7 (two spaces where "of the image" was cut)
    if attrs["location"] == "center":
        assert got == "1 oval large pink polyp area, located in the center of the image."
    if attrs["location"] == "left side of the image":
        assert got == "1 oval small pink polyp area, located in the left side  of the image."


def test_mask_attributes_measure_the_region():
    img = np.zeros((64, 64, 3), np.uint8)
    img[..., 0] = 200
    img[..., 1] = 30
    img[..., 2] = 30
    m = disc((64, 64), (14, 50), 6) | disc((64, 64), (40, 50), 6)
    a = mask_attributes(img, m)
    assert a.number == 2 and a.source == "mask"
    assert a.color == "red" and a.shape == "round"
    assert a.location in ("top right", "center right", "bottom right")
    s = a.sentence("disc")
    assert s.startswith("2 round ") and " red discs, located in the " in s and s.endswith(" of the image.")


def test_sentence_csv_round_trip_and_user_edits(tmp_path):
    a = RegionAttributes(number=1, location="center", shape="oval", size="large", color="pink", source="llm:m",
                         answer="{...}")
    p = write_sentence_csv(tmp_path / "s.csv", [SentenceRow("img1", a.sentence("polyp area"), a),
                                                SentenceRow("img2", "1 round small red polyp area, located in "
                                                            "the top left of the image.", None)])
    got = read_sentence_csv(p)
    assert got == {"img1": "1 oval large pink polyp area, located in the center of the image.",
                   "img2": "1 round small red polyp area, located in the top left of the image."}
    text = p.read_text(encoding="utf-8").replace("oval large pink", "flat large pale")
    p.write_text(text, encoding="utf-8")
    assert read_sentence_csv(p)["img1"] == "1 flat large pale polyp area, located in the center of the image."


@pytest.mark.parametrize("content, match", [
    ("id,text\na,b\n", "no 'sample_id' column"),
    ("sample_id,sentence\na,\n", "row 2 \\(a\\): empty sentence"),
    ("sample_id,sentence\na,x\na,y\n", "appears twice"),
])
def test_bad_sentence_csv_names_the_file_and_row(tmp_path, content, match):
    p = tmp_path / "bad.csv"
    p.write_text(content, encoding="utf-8")
    with pytest.raises(VipInputError, match=match) as exc:
        read_sentence_csv(p)
    assert str(p) in str(exc.value)
    with pytest.raises(VipInputError, match="does not exist"):
        read_sentence_csv(tmp_path / "none.csv")
