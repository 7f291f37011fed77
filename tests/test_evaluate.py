"""Dataset evaluation: conditions ordered as the data's structure says, resume, outputs, metrics."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from napari_vip.cli.main import main
from napari_vip.core.errors import VipInputError
from napari_vip.models.clip import ClipModel
from napari_vip.models.spec import ModelSpec
from napari_vip.worker.engine import Engine, ProgressReporter
from napari_vip.worker.evaluate import EvaluateRequest
from napari_vip.worker.protocol import Cancelled

SIZE = 64


def make_set(root, n=24, seed=0, with_patients=True):
    """Images whose classes differ only inside the box: ``lesion`` has a high-contrast box; background noise
    amplitude varies per image, so the whole image says little and the box region a lot."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows = ["path,label,x0,y0,x1,y1,patient_id"]
    for i in range(n):
        label = "lesion" if i % 2 else "normal"
        sigma = rng.uniform(4, 30)
        img = np.clip(128 + rng.normal(0, sigma, (SIZE, SIZE)), 1, 254)
        x0, y0 = rng.integers(4, SIZE - 18, 2)
        if label == "lesion":
            img[y0:y0 + 12, x0:x0 + 12] = np.where(rng.random((12, 12)) > 0.5, 200, 56)
        img[0, 0], img[-1, -1] = 0, 255  # min-max normalisation keeps values as they are
        Image.fromarray(img.astype(np.uint8)).save(root / f"{i}.png")
        rows.append(f"{i}.png,{label},{x0},{y0},{x0 + 11},{y0 + 11},p{i // 2}")
    (root / "data.csv").write_text("\n".join(rows) + "\n")
    return root / "data.csv"


class ContrastModel(ClipModel):
    """A CLIP whose image features are the rendered image's gray-level spread (so they depend on the box
    region): ``lesion`` prompts point along it, ``normal`` prompts against it."""

    def __init__(self):
        super().__init__(None, None, None, ModelSpec("contrast-double", checkpoint="none.pt"), "0" * 64, "cpu")
        self.embedded = 0

    def encode_images(self, images):
        self.embedded += len(images)
        s = [(np.asarray(im, np.float64)[..., 0].std() - 20.0) / 10.0 for im in images]
        return torch.nn.functional.normalize(torch.tensor([[v, 1.0] for v in s], dtype=torch.float32), dim=-1)

    def encode_texts(self, prompts):
        return torch.tensor([[1.0, 0.0] if "lesion" in p else [-1.0, 0.0] for p in prompts])

    def logit_scale(self):
        return 10.0


@pytest.fixture
def contrast_engine(monkeypatch):
    model = ContrastModel()
    monkeypatch.setattr(Engine, "clip", lambda self, spec, device, progress=None: model)
    return Engine(), model


def test_crop_beats_no_marker_when_classes_differ_in_the_box(tmp_path, contrast_engine):
    engine, model = contrast_engine
    data = make_set(tmp_path / "d", n=40)
    res = engine.run(EvaluateRequest(str(data), ModelSpec("x", checkpoint="none.pt"), ("none", "crop", "bbox"),
                                     out_dir=str(tmp_path / "out"), bootstrap=50))
    auc = {c: res.metrics[c]["auroc"] for c in ("none", "crop", "bbox")}
    assert auc["crop"] > auc["none"] + 0.1, auc
    assert res.metrics["crop"]["difference"]["auroc"] == pytest.approx(auc["crop"] - auc["none"])
    # none and bbox render differently, text differs nowhere: 2 renders per sample, one model call each
    assert model.embedded == 3 * 40


def test_outputs_have_the_documented_columns(tmp_path, contrast_engine):
    engine, _ = contrast_engine
    data = make_set(tmp_path / "d", n=12)
    (tmp_path / "d" / "data.csv").write_text((tmp_path / "d" / "data.csv").read_text()
                                             + "gone.png,normal,1,1,5,5,px\n0.png,normal,50,50,90,90,py\n")
    res = engine.run(EvaluateRequest(str(data), ModelSpec("x", checkpoint="none.pt"),
                                     ("none", "circle+text"), out_dir=str(tmp_path / "out"), bootstrap=20))
    out = tmp_path / "out"
    with open(out / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["id", "path", "label", "condition", "x0", "y0", "x1", "y1", "lesion", "normal",
                             "predicted"]
    assert len(rows) == 2 * 12 and {r["condition"] for r in rows} == {"none", "circle+text"}
    with open(out / "metrics.csv") as f:
        mrows = list(csv.DictReader(f))
    assert list(mrows[0])[:6] == ["condition", "accuracy", "balanced_accuracy", "auroc", "auprc", "mcc"]
    meta = json.loads((out / "metrics.json").read_text())
    reasons = {d["path"].rsplit("/", 1)[-1]: d["reason"] for d in meta["skipped"]}
    assert reasons["gone.png"] == "file does not exist" and "outside the image" in reasons["0.png"]
    assert meta["provenance"]["weights_sha256"] == "0" * 64 and meta["provenance"]["recipe"] == "paper"
    assert len(meta["provenance"]["dataset_sha256"]) == 64
    assert meta["prompts"]["circle+text"][0] == "A chest x-ray with signs of lesion indicated by a red circle."
    assert (out / "auroc.png").stat().st_size > 1000
    assert res.counts["evaluated"] == 12 and res.counts["skipped"] == 2


def test_folder_without_boxes_refuses_marker_conditions(tmp_path, contrast_engine):
    engine, _ = contrast_engine
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / c / "1.png")
    with pytest.raises(VipInputError, match="no boxes"):
        engine.run(EvaluateRequest(str(tmp_path), ModelSpec("x", checkpoint="none.pt"), ("none", "arrow")))


def test_interrupted_run_resumes_without_embedding_again(tmp_path, tiny_clip_checkpoint, monkeypatch):
    arch, ckpt = tiny_clip_checkpoint
    data = make_set(tmp_path / "d", n=16)
    calls = []
    original = ClipModel.encode_images
    monkeypatch.setattr(ClipModel, "encode_images", lambda self, ims: calls.append(len(ims)) or original(self, ims))
    req = EvaluateRequest(str(data), ModelSpec(arch, checkpoint=ckpt), ("none", "bbox", "bbox+text"),
                          out_dir=str(tmp_path / "out"), bootstrap=10, batch_size=4, threads=2, device="cpu")
    engine = Engine()
    reports = []
    with pytest.raises(Cancelled):  # stop after the 10th sample's report
        engine.run(req, ProgressReporter(emit=lambda d, t, s: reports.append(t == 16),
                                         should_stop=lambda: sum(reports) >= 10))
    first = sum(calls)
    assert 0 < first < 2 * 16
    calls.clear()
    res = Engine().run(req)
    assert sum(calls) == 2 * 16 - first  # only what the interrupted run had not stored
    calls.clear()
    again = Engine().run(EvaluateRequest(**{**req.__dict__, "template": "An image showing {c}."}))
    assert sum(calls) == 0
    assert not np.allclose(again.probabilities["bbox"], res.probabilities["bbox"])


def _sklearn_free_auc(scores, positive):
    pos, neg = scores[positive], scores[~positive]
    return np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])


def test_metrics_equal_scikit_learn_and_bootstrap_is_seeded(tmp_path):
    from sklearn.metrics import average_precision_score, roc_auc_score

    from napari_vip.worker.evaluation_metrics import bootstrap, one_hot, released_metrics

    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 60)
    probs = rng.dirichlet(np.ones(3), 60) + 0.3 * np.eye(3)[labels]
    probs /= probs.sum(1, keepdims=True)
    m = released_metrics(labels, probs)
    assert m["auroc"] == roc_auc_score(one_hot(labels, 3), probs, average="macro", multi_class="ovr")
    assert m["auroc"] == pytest.approx(np.mean([_sklearn_free_auc(probs[:, k], labels == k) for k in range(3)]))
    assert m["auprc"] == average_precision_score(one_hot(labels, 3), probs, average="macro")
    assert m["accuracy"] == pytest.approx(np.mean(probs.argmax(1) == labels))
    groups = [f"p{i // 3}" for i in range(60)]
    a = bootstrap(labels, {"none": probs}, None, groups, 60, seed=7)
    b = bootstrap(labels, {"none": probs}, None, groups, 60, seed=7)
    c = bootstrap(labels, {"none": probs}, None, groups, 60, seed=8)
    assert a == b and a != c and a["_resamples"]["unit"] == "patient"
    lo, hi = a["none"]["ci"]["auroc"]
    assert lo <= m["auroc"] <= hi


def test_delong_matches_the_hand_computed_binary_case():
    from napari_vip.worker.evaluation_metrics import delong_test

    labels = np.array([1, 1, 1, 0, 0, 0, 0])
    a = np.array([0.9, 0.8, 0.4, 0.5, 0.3, 0.2, 0.1])
    b = np.array([0.6, 0.4, 0.7, 0.5, 0.6, 0.2, 0.3])
    pa, pb = np.stack([1 - a, a], 1), np.stack([1 - b, b], 1)
    # DeLong, Clarke-Pearson & DeLong (1988), written out with loops
    pos, neg = labels == 1, labels == 0

    def placements(s):
        x, y = s[pos], s[neg]
        def k(u, v):
            return 1.0 if u > v else 0.5 if u == v else 0.0

        v10 = np.array([np.mean([k(xi, yj) for yj in y]) for xi in x])
        v01 = np.array([np.mean([k(xi, yj) for xi in x]) for yj in y])
        return v10, v01, v10.mean()

    a10, a01, auc_a = placements(a)
    b10, b01, auc_b = placements(b)
    m, n = pos.sum(), neg.sum()
    s10 = np.cov(np.stack([a10, b10]), ddof=1)
    s01 = np.cov(np.stack([a01, b01]), ddof=1)
    s = s10 / m + s01 / n
    var = s[0, 0] + s[1, 1] - 2 * s[0, 1]
    z = (auc_a - auc_b) / math.sqrt(var)
    got = delong_test(labels, pa, pb)
    assert got["auroc_a"] == pytest.approx(11 / 12) and got["auroc_b"] == pytest.approx(auc_b)
    assert got["se"] == pytest.approx(math.sqrt(var))
    assert got["z"] == pytest.approx(z)
    assert got["p_value"] == pytest.approx(math.erfc(abs(z) / math.sqrt(2)))


def test_ece_of_a_hand_example():
    from napari_vip.worker.evaluation_metrics import expected_calibration_error

    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
    labels = np.array([0, 1, 0, 1])
    # bins: 0.9 -> accuracy 0.5 vs 0.9 (2 samples); 0.6 -> 1 vs 0.6; 0.7 -> 1 vs 0.7
    assert expected_calibration_error(labels, probs) == pytest.approx((2 * 0.4 + 0.4 + 0.3) / 4)


def _probs(out):
    with open(out / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    return np.array([[float(r["lesion"]), float(r["normal"])] for r in rows]), [(r["id"], r["condition"]) for r in rows]


def test_cli_local_and_dask_give_the_same_probabilities(tmp_path, tiny_clip_checkpoint, capsys):
    import distributed
    arch, ckpt = tiny_clip_checkpoint
    data = make_set(tmp_path / "d", n=10)
    common = ["evaluate", str(data), "--model", arch, "--checkpoint", ckpt, "--device", "cpu", "--bootstrap", "20",
              "--conditions", "none", "crop", "arrow+text", "--batch-size", "4"]
    assert main([*common, "--out", str(tmp_path / "local"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [c["name"] for c in result["conditions"]] == ["none", "crop", "arrow+text"]
    assert result["embedded"] == 3 * 10 and result["untrained"] is False
    assert set(result["metrics"]["crop"]["delong"]) >= {"difference", "p_value"}
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster:
        assert main([*common, "--out", str(tmp_path / "dask"), "--scheduler", cluster.scheduler_address]) == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[0].startswith("condition") and "arrow+text" in printed
    local, ids_local = _probs(tmp_path / "local")
    remote, ids_remote = _probs(tmp_path / "dask")
    assert ids_local == ids_remote
    np.testing.assert_allclose(remote, local, atol=1e-5)
    meta = json.loads((tmp_path / "dask" / "metrics.json").read_text())
    assert meta["embedded"] == 3 * 10 and meta["provenance"]["scheduler"] == cluster.scheduler_address
