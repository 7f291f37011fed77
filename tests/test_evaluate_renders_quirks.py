"""``napari-vip evaluate --save-renders DIR`` and ``--released-quirks``.

Expected images and metrics are computed here from the released code of Denner et al. (MIDL 2025):
``BaseImageDataset.load_image`` (min-max, RGB, Pillow's default resize to 256), ``annotate_image`` (crop and
ImageDraw), the VinDr-CXR / NIH14 ``get_box_coordinates`` (``t_h, t_w = image.size``) and ``process.py``'s metric
block (AUROC, AUPRC and MCC in one ``try``: all ``None`` when scikit-learn refuses).
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image, ImageDraw
from test_evaluate import ContrastModel, make_set

from napari_vip.cli.main import main
from napari_vip.models.spec import ModelSpec
from napari_vip.worker.engine import Engine
from napari_vip.worker.evaluate import EvaluateRequest


@pytest.fixture
def model(monkeypatch):
    m = ContrastModel()
    monkeypatch.setattr(Engine, "clip", lambda self, spec, device, progress=None: m)
    return m


def released_load_image(path, resize=256):
    image = np.array(Image.open(path))
    image = (image - image.min()) / (image.max() - image.min())
    image = Image.fromarray((image * 255).astype(np.uint8)).convert("RGB")
    return image.resize((resize, resize)) if resize else image


def released_crop(image, x1, y1, x2, y2):
    w, h = image.size
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    size = max(0.5 * (x2 - x1), 0.5 * (y2 - y1), 0.2 * w, 0.2 * h)
    return image.crop((max(0, int(cx - size)), max(0, int(cy - size)), min(w, int(cx + size)),
                       min(h, int(cy + size))))


def test_save_renders_writes_every_sample_and_condition_as_the_model_saw_it(tmp_path, model, capsys):
    data = make_set(tmp_path / "d", n=6)
    renders = tmp_path / "renders"
    args = ["evaluate", str(data), "--checkpoint", "none.pt", "--conditions", "none", "bbox", "bbox+text", "crop",
            "--bootstrap", "0", "--out", str(tmp_path / "out"), "--save-renders", str(renders), "--json"]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    with open(renders / "renders.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 * 4 and result["files"]["renders"] == str(renders / "renders.csv")
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["files"]["renders"] == result["files"]["renders"]
    lines = (tmp_path / "d" / "data.csv").read_text().splitlines()[1:]
    for n, line in enumerate(lines, start=1):
        path, label, *box = line.split(",")[:6]
        x0, y0, x1, y1 = (float(v) for v in box)
        plain = released_load_image(tmp_path / "d" / path)
        saved = {c: np.asarray(Image.open(renders / f"{n}__{c}.png")) for c in ("none", "bbox", "bbox+text", "crop")}
        np.testing.assert_array_equal(saved["none"], np.asarray(plain))
        ratio = 64 / 256
        ImageDraw.Draw(plain).rectangle([int(x0 / ratio), int(y0 / ratio), int(x1 / ratio), int(y1 / ratio)],
                                        outline="red", width=1)
        np.testing.assert_array_equal(saved["bbox"], np.asarray(plain))
        np.testing.assert_array_equal(saved["bbox+text"], saved["bbox"])
        full = released_load_image(tmp_path / "d" / path, resize=None)
        np.testing.assert_array_equal(saved["crop"], np.asarray(released_crop(full, int(x0), int(y0), int(x1),
                                                                              int(y1))))
    # a second run embeds nothing (the store has it all) and still writes every render
    (renders / "1__none.png").unlink()
    model.embedded = 0
    assert main(args) == 0
    assert model.embedded == 0 and (renders / "1__none.png").exists()


def _nih14(root, n=8):
    """A wide (96x64) NIH14-like set: ``Nodule`` has a high-contrast box, ``Mass`` none."""
    rng = np.random.default_rng(1)
    (root / "img").mkdir(parents=True)
    rows = ["Image Index,Finding Label,Bbox [x,y,w,h],,,"]
    for i in range(n):
        img = np.clip(128 + rng.normal(0, 10, (64, 96)), 1, 254)
        x, y = 50 + i, 10 + i
        if i % 2:
            img[y:y + 12, x:x + 20] = np.where(rng.random((12, 20)) > 0.5, 220, 30)
        img[0, 0], img[-1, -1] = 0, 255
        name = f"0000000{i}_000.png"
        Image.fromarray(img.astype(np.uint8)).save(root / "img" / name)
        rows.append(f"{name},{'Nodule' if i % 2 else 'Mass'},{x},{y},20,12,,,")
    (root / "BBox_List_2017.csv").write_text("\n".join(rows) + "\n")
    return root / "BBox_List_2017.csv"


@pytest.mark.parametrize("quirks", [False, True])
def test_released_quirks_crop_nih14_with_the_axes_swapped(tmp_path, model, quirks):
    data = _nih14(tmp_path)
    res = Engine().run(EvaluateRequest(str(data), ModelSpec("x", checkpoint="none.pt"), ("none", "crop"),
                                       layout="nih14", images=str(tmp_path / "img"), bootstrap=0, threads=1,
                                       save_renders=str(tmp_path / "r"), released_quirks=quirks))
    assert res.provenance.extra["released_quirks"] is quirks
    assert res.provenance.extra["pillow"] == Image.__version__
    for s in res.samples:
        full = released_load_image(s.path, resize=None)
        bx, by, bw, bh = s.box_xyxy[0], s.box_xyxy[1], s.box_xyxy[2] - s.box_xyxy[0], s.box_xyxy[3] - s.box_xyxy[1]
        if quirks:  # NIH14Dataset.get_box_coordinates on the full-resolution image
            w, h = full.size
            t_h, t_w = full.size
            w_ratio, h_ratio = w / t_w, h / t_h
            box = (int(bx / w_ratio), int(by / h_ratio), int((bx + bw) / w_ratio), int((by + bh) / h_ratio))
        else:
            box = (int(bx), int(by), int(bx + bw), int(by + bh))
        stem = s.id.replace(":", "_")
        saved = np.asarray(Image.open(tmp_path / "r" / f"{stem}__crop.png"))
        np.testing.assert_array_equal(saved, np.asarray(released_crop(full, *box)))


def released_metric_block(labels, probs, n_classes):
    """``process.py``: accuracy, balanced accuracy, then AUROC, AUPRC, MCC in one try block, under the released
    code's scikit-learn 1.6.1, where an undefined AUROC raises (later versions warn: made an error here)."""
    import warnings

    from sklearn.exceptions import UndefinedMetricWarning
    from sklearn.metrics import average_precision_score, balanced_accuracy_score, matthews_corrcoef, roc_auc_score

    pred = np.argmax(probs, 1)
    out = {"accuracy": float(np.mean(labels == pred)), "balanced_accuracy": balanced_accuracy_score(labels, pred)}
    with warnings.catch_warnings():
        warnings.simplefilter("error", UndefinedMetricWarning)
        out.update(_released_try(labels, pred, probs, n_classes, roc_auc_score, average_precision_score,
                                 matthews_corrcoef))
    return out


def _released_try(labels, pred, probs, n_classes, roc_auc_score, average_precision_score, matthews_corrcoef):
    out = {}
    try:
        truth = np.zeros((len(labels), n_classes))
        truth[np.arange(len(labels)), labels] = 1
        out["auroc"] = roc_auc_score(truth, probs, average="macro", multi_class="ovr")
        out["auprc"] = average_precision_score(truth, probs, average="macro")
        out["mcc"] = matthews_corrcoef(labels, pred)
    except Exception:  # noqa: BLE001 - as the released code
        out["auroc"] = out["auprc"] = out["mcc"] = None
    return out


@pytest.mark.parametrize("quirks", [False, True])
def test_a_class_without_samples(tmp_path, model, quirks):
    data = make_set(tmp_path / "d", n=8)
    res = Engine().run(EvaluateRequest(str(data), ModelSpec("x", checkpoint="none.pt"), ("none",),
                                       classes=["lesion", "normal", "other"], bootstrap=5, threads=1,
                                       released_quirks=quirks))
    m = res.metrics["none"]
    expected = released_metric_block(res.labels, res.probabilities["none"], 3)
    assert expected["auroc"] is None and m["auroc"] is None and m["auprc"] is None
    assert m["accuracy"] == pytest.approx(expected["accuracy"])
    if quirks:
        assert m["mcc"] is None and m["mcc"] == expected["mcc"]
    else:  # the default keeps the MCC scikit-learn can compute
        from sklearn.metrics import matthews_corrcoef

        assert m["mcc"] == pytest.approx(matthews_corrcoef(res.labels, res.probabilities["none"].argmax(1)))
