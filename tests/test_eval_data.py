"""Evaluation samples: the project's CSV, class folders and the four public layouts, on files made here."""

import json

import numpy as np
import pytest
from PIL import Image

from napari_vip.core.errors import VipInputError
from napari_vip.io.eval_loading import load_eval_data


def _png(path, w=40, h=30):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((h, w), np.uint8)).save(path)
    return path


def test_project_csv_reads_boxes_patients_and_reports_bad_rows(tmp_path):
    for n in ("a.png", "b.png", "c.png"):
        _png(tmp_path / n)
    (tmp_path / "d.csv").write_text(
        "path,label,x0,y0,x1,y1,patient_id,split\n"
        "a.png,nodule,1,2,10,12,p1,test\n"
        "b.png,normal,0,0,5,5,p2,test\n"
        "missing.png,normal,0,0,5,5,p3,test\n"
        "c.png,normal,x,0,5,5,p3,test\n"
        "c.png,normal,9,0,5,5,p3,test\n")
    data = load_eval_data(tmp_path / "d.csv")
    assert data.classes == ["nodule", "normal"]
    assert [s.box_xyxy for s in data.samples] == [(1, 2, 10, 12), (0, 0, 5, 5)]
    assert [s.patient_id for s in data.samples] == ["p1", "p2"]
    reasons = {d["path"].rsplit("/", 1)[-1]: d["reason"] for d in data.skipped}
    assert reasons["missing.png"] == "file does not exist"
    assert "four numbers" in next(d["reason"] for d in data.skipped if "line 5" in d["reason"])
    assert any("no area" in d["reason"] for d in data.skipped)
    assert len(data.source_sha256) == 64


def test_unknown_label_skipped_and_one_class_refused(tmp_path):
    _png(tmp_path / "a.png")
    _png(tmp_path / "b.png")
    (tmp_path / "d.csv").write_text("path,label\na.png,x\nb.png,y\n")
    data = load_eval_data(tmp_path / "d.csv", classes=["x", "z"])
    assert [d["reason"] for d in data.skipped] == ["label 'y' is not one of the classes ['x', 'z']"]
    (tmp_path / "e.csv").write_text("path,label\na.png,x\n")
    with pytest.raises(VipInputError, match="at least 2"):
        load_eval_data(tmp_path / "e.csv")


def test_folder_per_class_has_no_boxes(tmp_path):
    _png(tmp_path / "cat" / "1.png")
    _png(tmp_path / "dog" / "2.png")
    data = load_eval_data(tmp_path)
    assert data.classes == ["cat", "dog"] and not data.has_boxes


def test_nih14_bbox_list(tmp_path):
    _png(tmp_path / "img" / "00000001_000.png")
    _png(tmp_path / "img" / "00000002_001.png")
    (tmp_path / "BBox_List_2017.csv").write_text(
        "Image Index,Finding Label,Bbox [x,y,w,h],,,\n"
        "00000001_000.png,Atelectasis,225.084745762712,547.019216763771,86.7796610169491,79.1864406779661,,,\n"
        "00000002_001.png,Nodule,10,20,30,40,,,\n")
    data = load_eval_data(tmp_path / "BBox_List_2017.csv", layout="nih14", images=str(tmp_path / "img"))
    s = {x.label: x for x in data.samples}
    assert s["Nodule"].box_xyxy == (10, 20, 40, 60) and s["Nodule"].patient_id == "00000002"
    assert s["Atelectasis"].box_xyxy[2] == pytest.approx(225.084745762712 + 86.7796610169491)


def test_vindr_readers_combined_and_repeats_dropped(tmp_path):
    for i in ("a1", "b2", "c3"):
        _png(tmp_path / "img" / f"{i}.png")
    (tmp_path / "annotations_train.csv").write_text(
        "image_id,rad_id,class_name,x_min,y_min,x_max,y_max\n"
        "a1,R1,Nodule/Mass,10,10,20,20\n"
        "a1,R2,Nodule/Mass,12,8,25,18\n"
        "b2,R1,Aortic enlargement,1,1,5,5\n"
        "b2,R3,No finding,,,,\n"
        "c3,R1,Aortic enlargement,1,1,5,5\n"
        "c3,R1,Aortic enlargement,2,2,6,6\n")
    data = load_eval_data(tmp_path / "annotations_train.csv", layout="vindr", images=str(tmp_path / "img"))
    assert {s.id: s.box_xyxy for s in data.samples} == {"a1:Nodule/Mass": (10, 8, 25, 20),
                                                       "b2:Aortic enlargement": (1, 1, 5, 5)}
    assert data.skipped[0]["path"].endswith("c3.png") and "more than once" in data.skipped[0]["reason"]


def test_padchest_gr_fraction_boxes_with_metadata(tmp_path):
    _png(tmp_path / "img" / "x.png", w=200, h=100)
    _png(tmp_path / "img" / "y.png", w=200, h=100)
    (tmp_path / "grounded.json").write_text(json.dumps([
        {"ImageID": "x.png", "findings": [{"labels": ["nodule"], "boxes": [[0.1, 0.2, 0.5, 0.6]]}]},
        {"ImageID": "y.png", "findings": [{"labels": ["cardiomegaly"], "boxes": [[0.0, 0.5, 1.0, 1.0]]}]},
    ]))
    (tmp_path / "meta.csv").write_text("ImageID,label_group,label\nx.png,nodule,nodule\n"
                                       "y.png,cardiomegaly,cardiomegaly\ny.png,other,pleural effusion\n")
    data = load_eval_data(tmp_path / "grounded.json", layout="padchest-gr", images=str(tmp_path / "img"),
                          metadata=str(tmp_path / "meta.csv"))
    assert {s.label: s.box_xyxy for s in data.samples} == {"nodule": (20, 20, 100, 60),
                                                          "cardiomegaly": (0, 50, 200, 100)}
    assert "no grounded box for 'pleural effusion'" in data.skipped[0]["reason"]


def test_jsrt_nodule_list(tmp_path):
    (tmp_path / "img").mkdir()
    for name in ("JPCLN001.IMG", "JPCLN002.IMG"):
        (tmp_path / "img" / name).write_bytes(b"\0" * 16)
    (tmp_path / "CLNDAT_EN.txt").write_text(
        "JPCLN001.IMG\t15\t2\t53\tmale\t1634\t692\tmalignant\tl.upper lobe\tlung cancer\n"
        "JPCLN002.IMG\t30\t5\t60\tfemale\t1000\t1000\tbenign\tr.lower lobe\thamartoma\n")
    data = load_eval_data(tmp_path / "CLNDAT_EN.txt", layout="jsrt", images=str(tmp_path / "img"))
    half = 5 * int(15 / 0.175)
    assert data.classes == ["benign", "malignant"]
    assert data.samples[0].box_xyxy == (1634 - half, 692 - half, 1634 + half, 692 + half)
