"""The symptom library: bundled contents, load/save/merge, the user's library, malformed files."""

from __future__ import annotations

import json

import pytest

from napari_vip.core.errors import VipInputError
from napari_vip.core.symptoms import (
    add_to_user_library,
    bundled_library_path,
    descriptors_for,
    load_library,
    merge_libraries,
    parse_library,
    save_library,
    user_library_path,
)

REQUIRED = ["normal lung", "pneumonia", "atelectasis", "cardiomegaly", "consolidation", "edema", "effusion",
            "emphysema", "fibrosis", "hernia", "infiltration", "mass", "nodule", "pleural thickening",
            "pneumothorax", "melanoma", "nevus", "microaneurysm", "haemorrhage", "exudate",
            "diabetic retinopathy", "glaucoma", "normal"]


@pytest.fixture(autouse=True)
def user_dir(tmp_path, monkeypatch):
    """Every test gets its own (empty) user config folder."""
    d = tmp_path / "config"
    monkeypatch.setenv("NAPARI_VIP_CONFIG_DIR", str(d))
    return d


def test_bundled_library_has_every_class_with_four_to_six_distinct_descriptors():
    lib = load_library(bundled_library_path())
    for c in REQUIRED:
        assert c in lib, c
        ds = lib[c]
        assert 4 <= len(ds) <= 6, (c, ds)
        assert len({d.casefold() for d in ds}) == len(ds)
        assert all(c.casefold() not in d.casefold() for d in ds if c != "normal"), (c, ds)


def test_normal_follows_the_modality():
    lib = load_library()
    fundus = descriptors_for(lib, "normal")
    chest = descriptors_for(lib, "Normal", "chest x-ray")
    assert any("optic disc" in d for d in fundus)
    assert any("lung" in d for d in chest)
    assert descriptors_for(lib, "hemorrhage") == lib["haemorrhage"]
    assert descriptors_for(lib, "no such finding") == []


def test_save_then_load_round_trips(tmp_path):
    lib = {"Pneumonia": ["  patchy   opacity. ", "air bronchogram", "Air Bronchogram"], "nodule": ["coin lesion"]}
    path = save_library(lib, tmp_path / "sub" / "mine.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["version"] == 1
    assert load_library(path) == {"Pneumonia": ["patchy opacity", "air bronchogram"], "nodule": ["coin lesion"]}
    assert not (tmp_path / "sub" / "mine.json.tmp").exists()


def test_merge_keeps_order_matches_case_insensitively_and_drops_duplicates():
    a = {"Pneumonia": ["consolidation", "air bronchogram"], "nodule": ["coin lesion"]}
    b = {"pneumonia": ["Consolidation", "lobar opacity"], "mass": ["large opacity"]}
    merged = merge_libraries(a, b)
    assert merged == {"Pneumonia": ["consolidation", "air bronchogram", "lobar opacity"],
                      "nodule": ["coin lesion"], "mass": ["large opacity"]}
    assert a["Pneumonia"] == ["consolidation", "air bronchogram"]  # inputs untouched


def test_default_library_is_bundled_merged_with_the_users(user_dir):
    bundled = load_library(bundled_library_path())
    assert load_library() == bundled  # no user file yet
    add_to_user_library("pneumonia", ["my own descriptor"])
    add_to_user_library("my finding", ["bright ring"])
    assert user_library_path() == user_dir / "symptoms.json"
    lib = load_library()
    assert lib["pneumonia"] == bundled["pneumonia"] + ["my own descriptor"]
    assert lib["my finding"] == ["bright ring"]
    add_to_user_library("my finding", ["bright ring", "dark core"])
    assert load_library(user_library_path())["my finding"] == ["bright ring", "dark core"]


@pytest.mark.parametrize("text, line, reason", [
    ('{"version": 1,\n "classes": {\n  "a": ["x",]\n }\n}', 3, "not valid JSON"),
    ('{"version": 1,\n "classes": {\n  "a": ["x"],\n  "b": ["y",\n        42]\n }\n}', 4,
     "descriptor 2 of class 'b' is a number"),
    ('{"version": 1,\n "classes": {\n  "a": ["x"],\n  "b": "y"\n }\n}', 4, "class 'b' has a string"),
    ('{"version": 1,\n "classes": {\n  "a": ["x"],\n  "b": ["  "]\n }\n}', 4, "descriptor 1 of class 'b' is empty"),
    ('{"version": 1,\n "classes": {\n  "a": ["x"],\n  "a": ["y"]\n }\n}', 4, "appears twice (first on line 3)"),
    ('{"version": 1,\n "classes": {\n  "Nodule": ["x"],\n  "nodule": ["y"]\n }\n}', 4, "case-insensitive"),
    ('{\n "version": 2,\n "classes": {}\n}', 2, "version 2 is not supported"),
    ('{"classes": {}}', 1, 'no "version"'),
    ('{"version": 1}', 1, 'no "classes"'),
    ('{"version": 1,\n "classes": ["a"]}', 2, '"classes" is a list'),
    ('["a", "b"]', 1, "holds a list"),
])
def test_malformed_files_name_the_line_and_reason(tmp_path, text, line, reason):
    path = tmp_path / "bad.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(VipInputError) as err:
        load_library(path)
    msg = str(err.value)
    assert f"line {line}:" in msg
    assert reason in msg
    assert "bad.json" in msg


def test_missing_and_non_utf8_files(tmp_path):
    with pytest.raises(VipInputError, match="does not exist"):
        load_library(tmp_path / "nope.json")
    p = tmp_path / "latin.json"
    p.write_bytes('{"version": 1, "classes": {"h\xe9": ["x"]}}'.encode("latin-1"))
    with pytest.raises(VipInputError, match="not UTF-8"):
        load_library(p)


def test_malformed_user_library_is_reported_not_ignored(user_dir):
    user_dir.mkdir(parents=True)
    (user_dir / "symptoms.json").write_text('{"version": 1, "classes": {"a": [1]}}', encoding="utf-8")
    with pytest.raises(VipInputError, match="symptoms.json.*line 1"):
        load_library()


def test_save_refuses_bad_libraries(tmp_path):
    with pytest.raises(VipInputError):
        save_library({"a": "not a list"}, tmp_path / "x.json")
    with pytest.raises(VipInputError):
        save_library({"": ["x"]}, tmp_path / "x.json")
    assert not (tmp_path / "x.json").exists()


def test_parse_library_ignores_extra_top_level_keys():
    assert parse_library('{"version": 1, "comment": "mine", "classes": {"a": ["x"]}}') == {"a": ["x"]}


PLAIN = '{\n "pneumonia": ["patchy consolidation", "air bronchogram"],\n "normal": ["clear lung fields"]\n}\n'


def test_plain_descriptor_file_of_vip_and_cupl_is_read(tmp_path):
    path = tmp_path / "plain.json"
    path.write_text(PLAIN, encoding="utf-8")
    assert load_library(path) == {"pneumonia": ["patchy consolidation", "air bronchogram"],
                                  "normal": ["clear lung fields"]}


def test_plain_file_reaches_the_cli_and_learning(tmp_path, capsys):
    import json

    from napari_vip.cli.main import main
    from napari_vip.worker.learn import LearnRequest, descriptors_of

    path = tmp_path / "plain.json"
    path.write_text(PLAIN, encoding="utf-8")
    assert main(["symptoms", "pneumonia", "--library", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["classes"]["pneumonia"] == ["patchy consolidation", "air bronchogram"]
    req = LearnRequest(str(tmp_path), None, str(tmp_path / "p.pt"), descriptors_path=str(path))
    assert descriptors_of(req)["normal"] == ["clear lung fields"]


@pytest.mark.parametrize("text, line, reason", [
    ('{\n "a": ["x"],\n "b": "y"\n}', 3, "'b' holds a string, not a list"),
    ('{}', 1, "not a plain descriptor file (empty)"),
])
def test_bad_plain_files_say_which_forms_are_accepted(tmp_path, text, line, reason):
    path = tmp_path / "bad.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(VipInputError) as err:
        load_library(path)
    msg = str(err.value)
    assert f"line {line}:" in msg and reason in msg
    assert '"version": 1' in msg and "plain form of ViP/CuPL descriptor files" in msg
