"""Segmentation evaluation: MONAI metrics against the formula, the table, resume, Dask and the CLI."""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_vip.core.errors import VipInputError
from napari_vip.worker.engine import Engine, ProgressReporter
from napari_vip.worker.protocol import Cancelled
from napari_vip.worker.segmentation_eval import run as es
from napari_vip.worker.segmentation_eval import sample as seg_sample

S = 16  # the fake model's input size


def dice_formula(a, b):
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    s = a.sum() + b.sum()
    return 1.0 if s == 0 else 2.0 * (a & b).sum() / s


def iou_formula(a, b):
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    u = (a | b).sum()
    return 1.0 if u == 0 else (a & b).sum() / u


def test_scores_equal_monai_and_the_formula():
    torch = pytest.importorskip("torch")
    from monai.metrics import compute_dice, compute_iou

    rng = np.random.default_rng(0)
    for _ in range(5):
        a, b = rng.random((20, 24)) > 0.6, rng.random((20, 24)) > 0.5
        d, j = seg_sample.seg_scores(a, b)
        t = [torch.from_numpy(x.astype(np.float32))[None, None] for x in (a, b)]
        assert d == pytest.approx(float(compute_dice(*t, include_background=False, ignore_empty=False)), abs=1e-7)
        assert j == pytest.approx(float(compute_iou(*t, include_background=False, ignore_empty=False)), abs=1e-7)
        assert d == pytest.approx(dice_formula(a, b), abs=1e-6)
        assert j == pytest.approx(iou_formula(a, b), abs=1e-6)
    # fixed masks: 3 x 4 prediction inside a 4 x 4 target: dice 2*12/(12+16) = 6/7, iou 12/16
    p, t = np.zeros((8, 8), bool), np.zeros((8, 8), bool)
    p[2:5, 2:6] = True
    t[2:6, 2:6] = True
    assert seg_sample.seg_scores(p, t) == pytest.approx((6 / 7, 0.75))
    # ignore_empty=False, as released: empty target scores 1 with an empty prediction, 0 otherwise
    z = np.zeros((8, 8), bool)
    assert seg_sample.seg_scores(z, z) == (1.0, 1.0)
    assert seg_sample.seg_scores(p, z) == (0.0, 0.0)


@dataclass(frozen=True)
class FakeSpec:
    name: str = "fake"
    untrained: bool = False

    def to_dict(self):
        return {"family": "fake", "name": self.name, "untrained": self.untrained}


@dataclass
class FakePrediction:
    logits_model: np.ndarray


class FakeModel:
    """Segments red pixels (R > 128) at S x S for any non-empty text; nothing for the empty prompt."""

    threshold = 0.5
    calls = 0

    def __init__(self, spec):
        self.spec = spec

    def predict(self, image, text):
        FakeModel.calls += 1
        from napari_vip.io.datasets import resize_nearest_exact

        red = resize_nearest_exact(np.asarray(image)[..., 0] > 128, (S, S))
        return FakePrediction(np.where(red & (text != ""), 8.0, -8.0).astype(np.float32))

    def provenance(self):
        return {"model": self.spec.to_dict(), "untrained": self.spec.untrained, "weights_sha256": None}


@pytest.fixture
def fake_models(monkeypatch):
    monkeypatch.setattr(seg_sample, "load_seg_model", lambda spec, device="cpu": FakeModel(spec))
    FakeModel.calls = 0
    return (es.SegModelEntry("zs", FakeSpec("a"), "zero-shot"), es.SegModelEntry("ft", FakeSpec("b"), "fine-tuned"))


def make_data(root: Path, n=6):
    """A CSV data set: red squares; the masks are the squares shifted by 2 px (so Dice < 1); patients P0-P2."""
    root.mkdir(parents=True, exist_ok=True)
    rows = ["image,mask,split,patient_id,p0,p1,p7"]
    gts, reds = [], []
    for i in range(n):
        img = np.zeros((32, 40, 3), np.uint8)
        r0, c0 = 4 + i, 6 + 2 * i
        img[r0:r0 + 12, c0:c0 + 14, 0] = 255
        m = np.zeros((32, 40), np.uint8)
        m[r0 + 2:r0 + 14, c0:c0 + 14] = 255
        Image.fromarray(img).save(root / f"i{i}.png")
        Image.fromarray(m).save(root / f"m{i}.png")
        rows.append(f'i{i}.png,m{i}.png,test,P{i % 3},,polyp,"[""polyp a"", ""polyp b""]"')
        gts.append(m > 0)
        reds.append(img[..., 0] > 128)
    (root / "d.csv").write_text("\n".join(rows) + "\n")
    return root / "d.csv", gts, reds


def expected_dice(gts, reds, prompt):
    """Dice from the formula at S x S: the ground truth resized by PIL's NEAREST on the 0/255 picture, as the
    released data module's torchvision Resize(NEAREST_EXACT) on a PIL image does."""
    from napari_vip.io.datasets import resize_nearest_exact

    out = []
    for gt, red in zip(gts, reds):
        pred = resize_nearest_exact(red, (S, S)) & (prompt != "p0")
        target = np.asarray(Image.fromarray(gt.astype(np.uint8) * 255).resize((S, S), Image.NEAREST)) > 0
        out.append(dice_formula(pred, target))
    return out


def test_table_files_and_bootstrap_by_patient(tmp_path, fake_models):
    data, gts, reds = make_data(tmp_path / "data")
    req = es.EvaluateSegRequest(str(data), fake_models, ("p0", "p1", "p7"), "test", str(tmp_path / "out"),
                                bootstrap=200, device="cpu")
    res = Engine().run(req)
    assert res.prompts == ["p0", "p1", "p7"] and [m["label"] for m in res.models] == ["zs", "ft"]
    for pt in ("p0", "p1", "p7"):
        exp = expected_dice(gts, reds, pt)
        cell = res.table["zs"][pt]
        assert cell["n"] == 6 and cell["dice"] == pytest.approx(np.mean(exp), abs=1e-6)
        lo, hi = cell["dice_ci"]
        assert lo <= cell["dice"] <= hi
    assert res.table["zs"]["p0"]["dice"] == 0.0 and res.table["zs"]["p1"]["dice"] > 0.5
    assert res.provenance.extra["bootstrap"]["unit"] == "patient"
    # list-valued prompts drawn reproducibly, the same text for both models
    texts = {(r["model"], r["sample_id"]): r["text"] for r in res.per_image if r["prompt_type"] == "p7"}
    assert set(texts.values()) <= {"polyp a", "polyp b"}
    assert all(texts[("zs", s)] == texts[("ft", s)] for (_, s) in texts)
    out = tmp_path / "out"
    for name in ("metrics.json", "metrics.csv", "table.csv", "per_image.csv", "dice.png"):
        assert (out / name).is_file(), name
    table = (out / "table.csv").read_text().splitlines()
    assert table[0] == "model,kind,p0,p1,p7" and table[2].startswith("ft,fine-tuned,")
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["table"]["ft"]["p1"]["dice"] == pytest.approx(res.table["ft"]["p1"]["dice"])
    mask = np.asarray(Image.open(out / res.per_image[0]["mask"]))
    assert mask.shape == (32, 40) and set(np.unique(mask)) <= {0, 255}


def test_image_resolution_scores_the_mask_resized_back(tmp_path, fake_models):
    from napari_vip.io.datasets import resize_nearest_exact

    data, gts, reds = make_data(tmp_path / "data", 2)
    res = Engine().run(es.EvaluateSegRequest(str(data), fake_models[:1], ("p1",), "test", None, "image",
                                             bootstrap=0, device="cpu"))
    exp = [dice_formula(resize_nearest_exact(resize_nearest_exact(r, (S, S)), g.shape), g) for g, r in zip(gts, reds)]
    assert res.table["zs"]["p1"]["dice"] == pytest.approx(np.mean(exp), abs=1e-6)
    assert res.table["zs"]["p1"]["dice_ci"] is None


def test_resume_after_interruption(tmp_path, fake_models):
    data, _, _ = make_data(tmp_path / "data")
    out = tmp_path / "out"
    full = Engine().run(es.EvaluateSegRequest(str(data), fake_models, ("p1", "p7"), "test", str(tmp_path / "ref"),
                                              bootstrap=50, device="cpu"))
    seen = []

    def stop_after_three(done, total, text="", data=None):
        seen.append(done)
        if done >= 3 and total:
            raise Cancelled()

    req = es.EvaluateSegRequest(str(data), fake_models, ("p1", "p7"), "test", str(out), bootstrap=50, device="cpu")
    with pytest.raises(Cancelled):
        Engine().run(req, ProgressReporter(stop_after_three))
    lines = (out / "records" / "zs.jsonl").read_text().splitlines()
    assert len(lines) == 6  # three samples x two prompt types, written as they finished
    with open(out / "records" / "zs.jsonl", "a") as f:
        f.write('{"sample_id": "m5.png", "prompt_ty')  # a line cut by the interruption
    FakeModel.calls = 0
    res = Engine().run(req)
    assert res.resumed == 6
    assert FakeModel.calls == 3 * 2 + 6 * 2  # only what was missing: 3 samples left for zs, all 6 for ft
    assert res.table == full.table
    # a model that ignores text (CoTexNet at test time) predicts once per image
    FakeModel.calls = 0
    FakeModel.needs_text = False
    try:
        logits = seg_sample.predict_logits(FakeModel(FakeSpec()), np.zeros((8, 8, 3), np.uint8), ["a", "b", "c"])
    finally:
        del FakeModel.needs_text
    assert FakeModel.calls == 1 and logits.shape == (3, S, S)
    # the same folder with another model under the same label is refused
    other = (es.SegModelEntry("zs", FakeSpec("changed"), "zero-shot"),)
    with pytest.raises(VipInputError, match="other settings"):
        Engine().run(es.EvaluateSegRequest(str(data), other, ("p1",), "test", str(out), device="cpu"))


def test_missing_prompt_type_and_bad_requests(tmp_path, fake_models):
    data, _, _ = make_data(tmp_path / "data", 2)
    with pytest.raises(VipInputError, match="'p5' is missing.*p0, p1, p7"):
        Engine().run(es.EvaluateSegRequest(str(data), fake_models, ("p5",), "test", None, device="cpu"))
    with pytest.raises(VipInputError, match="Unknown prompt"):
        Engine().run(es.EvaluateSegRequest(str(data), fake_models, ("p11",), "test", None, device="cpu"))
    with pytest.raises(VipInputError, match="labelled 'zs'"):
        Engine().run(es.EvaluateSegRequest(str(data), (fake_models[0], fake_models[0]), ("p1",), "test",
                                           device="cpu"))


def test_dask_local_cluster_gives_the_local_table(tmp_path, fake_models):
    distributed = pytest.importorskip("distributed")
    data, _, _ = make_data(tmp_path / "data", 4)
    local = Engine().run(es.EvaluateSegRequest(str(data), fake_models, ("p1", "p7"), "test", None, bootstrap=50,
                                               device="cpu"))
    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None)
    try:
        req = es.EvaluateSegRequest(str(data), fake_models, ("p1", "p7"), "test", str(tmp_path / "out"),
                                    bootstrap=50, device="cpu", scheduler=cluster.scheduler_address, shards=2)
        res = Engine().run(req)
    finally:
        cluster.close()
    assert res.table == local.table
    assert res.provenance.extra["scheduler"] == req.scheduler
    assert len((tmp_path / "out" / "records" / "ft.jsonl").read_text().splitlines()) == 8
    assert (tmp_path / "out" / "masks" / "ft" / "p7" / "m3.png").is_file()


def test_cli(tmp_path, fake_models, capsys):
    pytest.importorskip("napari_vip.models.vlsm.spec")
    from napari_vip.cli.main import main

    data, _, _ = make_data(tmp_path / "data", 3)
    rc = main(["evaluate-seg", str(data), "--models", "zs=clipseg:untrained", "--prompts", "p0", "p1",
               "--bootstrap", "20", "--device", "cpu", "--out", str(tmp_path / "out"), "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    d = json.loads(out)
    assert d["models"][0]["label"] == "zs" and d["models"][0]["kind"] == "zero-shot"
    assert set(d["table"]["zs"]) == {"p0", "p1"} and d["files"]["plot"].endswith("dice.png")
    rc = main(["evaluate-seg", str(data), "--models", "zs=clipseg:untrained", "--prompts", "p0", "p1",
               "--bootstrap", "20", "--device", "cpu", "--out", str(tmp_path / "out")])
    out, _ = capsys.readouterr()
    assert rc == 0 and "6 resumed" in out and "dice (95% CI)" in out
    assert main(["evaluate-seg", str(data), "--models", "nonsense", "--out", str(tmp_path / "o2")]) == 2
    assert "FAMILY:SOURCE" in capsys.readouterr().err


def test_seg_data_cli_check_and_export(tmp_path, capsys):
    from napari_vip.cli.main import main

    for i in range(4):
        img = np.zeros((20, 30, 3), np.uint8)
        img[5:10, 20:28] = (240, 240, 240)
        Image.fromarray(img).save((tmp_path / "imgs").mkdir(exist_ok=True) or tmp_path / "imgs" / f"a{i}.png")
        m = np.zeros((20, 30), np.uint8)
        m[5:10, 20:28] = 255
        Image.fromarray(m).save((tmp_path / "msk").mkdir(exist_ok=True) or tmp_path / "msk" / f"a{i}.png")
    assert main(["seg-data", "export", "--images", str(tmp_path / "imgs"), "--masks", str(tmp_path / "msk"),
                 "--class", "polyp", "--fractions", "0.5", "0", "0.5", "--out", str(tmp_path / "ds"), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["splits"] == {"train": 2, "test": 2} or sum(d["splits"].values()) == 4
    assert main(["seg-data", "check", str(tmp_path / "ds"), "--split", "test", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["layout"] == "medvlsm" and "p9" in d["prompt_types"]


def test_real_tiny_clipseg_encodes_once_and_matches_predict(tmp_path, capsys):
    """With a real (tiny, random) CLIPSeg: one image encoding decoded per text gives predict()'s logits, and
    the command line evaluates it with the weights' sha256 in the provenance."""
    pytest.importorskip("transformers")
    from vlsm_fixtures import save_clipseg_folder, tiny_clipseg_arch

    from napari_vip.cli.main import main
    from napari_vip.models.vlsm import VlsmSpec, load_vlsm

    folder = save_clipseg_folder(tmp_path / "clipseg", tiny_clipseg_arch(64), input_size=64)
    model = load_vlsm(VlsmSpec("clipseg", source=str(folder)))
    image = np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    texts = ["", "polyp", "one small pink round polyp, located in right of the image"]
    many = seg_sample.predict_logits(model, image, texts)
    assert many.shape == (3, model.input_size, model.input_size)
    for t, lg in zip(texts, many):
        np.testing.assert_allclose(lg, model.predict(image, t).logits_model, rtol=1e-4, atol=1e-3)  # batch noise
    data, _, _ = make_data(tmp_path / "data", 2)
    rc = main(["evaluate-seg", str(data), "--models", f"tiny=clipseg:{folder}", "--prompts", "p1", "p7",
               "--bootstrap", "10", "--device", "cpu", "--out", str(tmp_path / "out"), "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    d = json.loads(out)
    assert d["models"][0]["provenance"]["weights_sha256"] == model.sha256 and not d["untrained"]
    assert 0.0 <= d["table"]["tiny"]["p1"]["dice"] <= 1.0


def test_model_arguments(tmp_path):
    pytest.importorskip("napari_vip.models.vlsm.spec")
    from napari_vip.cli.evaluate_seg import parse_model

    arch = tmp_path / "arch.json"
    arch.write_text("{}")
    e = parse_model("clipseg:untrained", str(arch))
    assert (e.label, e.kind, e.spec.untrained, e.spec.config) == ("clipseg", "zero-shot", True, str(arch))
    e = parse_model("zs=clipseg:CIDAS/clipseg-rd64-refined", str(arch))
    assert (e.label, e.kind, e.spec.source, e.spec.config) == ("zs", "zero-shot", "CIDAS/clipseg-rd64-refined", None)
    ft = tmp_path / "ft1"
    ft.mkdir()
    (ft / "config.json").write_text(json.dumps({"napari_vip": "0", "family": "clipseg", "method": "vlsm"}))
    (ft / "provenance.json").write_text("{}")
    e = parse_model(str(ft))
    assert (e.label, e.kind, e.spec.family, e.spec.source) == ("ft1", "fine-tuned", "clipseg", str(ft))
    assert parse_model(f"mine=clipseg:{ft}").kind == "fine-tuned"
    with pytest.raises(VipInputError, match="FAMILY:SOURCE"):
        parse_model("sam:whatever")


def test_resume_refuses_changed_weights_and_loads_nothing_when_complete(tmp_path, fake_models, monkeypatch):
    data, _, _ = make_data(tmp_path / "data", 2)
    req = es.EvaluateSegRequest(str(data), fake_models[:1], ("p1",), "test", str(tmp_path / "out"), bootstrap=0,
                                device="cpu")
    first = Engine().run(req)
    monkeypatch.setattr(seg_sample, "load_seg_model", lambda spec, device="cpu": pytest.fail("loaded a model"))
    again = Engine().run(req)
    assert again.resumed == 2 and again.models == first.models and again.table == first.table

    class Retrained(FakeModel):
        def provenance(self):
            return {**super().provenance(), "weights_sha256": "another"}

    (tmp_path / "out" / "records" / "zs.jsonl").write_text(
        (tmp_path / "out" / "records" / "zs.jsonl").read_text().splitlines()[0] + "\n")
    monkeypatch.setattr(seg_sample, "load_seg_model", lambda spec, device="cpu": Retrained(spec))
    with pytest.raises(VipInputError, match="weights of model 'zs' changed"):
        Engine().run(req)
