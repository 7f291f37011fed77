"""Prompt wording of the visual-prompting paper, exactly."""

import pytest

from napari_vip.core.errors import VipInputError
from napari_vip.core.prompts import DEFAULT_TEMPLATE, build_prompt, check_classes, marker_suffix


def test_default_prompt_is_the_papers():
    assert build_prompt("pneumonia") == "A chest x-ray with signs of pneumonia."
    assert DEFAULT_TEMPLATE.format(modality="chest x-ray", c="{c}", suffix="{suffix}") == \
        "A chest x-ray with signs of {c}{suffix}."


@pytest.mark.parametrize("style,color,expected", [
    ("arrow", "red", " indicated by a red arrow"),
    ("bbox", "red", " indicated by a red bounding box"),
    ("circle", "red", " indicated by a red circle"),
    ("circle", "green", " indicated by a green circle"),
    ("crop", "red", ""),
    ("none", "red", ""),
])
def test_marker_suffixes(style, color, expected):
    assert marker_suffix(style, color) == expected


def test_suffix_can_be_switched_off():
    assert marker_suffix("circle", "red", enabled=False) == ""


def test_prompt_with_suffix_and_modality():
    s = marker_suffix("circle", "red")
    assert build_prompt("pneumonia", s) == "A chest x-ray with signs of pneumonia indicated by a red circle."
    assert build_prompt("microaneurysm", marker_suffix("arrow", "yellow"), modality="fundus photograph") == \
        "A fundus photograph with signs of microaneurysm indicated by a yellow arrow."


def test_template_without_suffix_field_gets_it_before_full_stop():
    assert build_prompt("edema", " indicated by a red circle", "Signs of {c}.") == "Signs of edema indicated by a red circle."


@pytest.mark.parametrize("template,msg", [("A photo.", r"\{c\}"), ("A {x} of {c}", "unknown"), ("{c", "format")])
def test_bad_templates(template, msg):
    with pytest.raises(VipInputError, match=msg):
        build_prompt("a", "", template)


def test_classes_are_checked():
    assert check_classes([" pneumonia ", "", "normal"]) == ["pneumonia", "normal"]
    with pytest.raises(VipInputError, match="No classes"):
        check_classes(["", "  "])
    with pytest.raises(VipInputError, match="Duplicate.*Normal"):
        check_classes(["normal", "Normal"])
