"""Parity gates: each model family in bfloat16 and float16 against float32, on small real architectures.

Gates (issue: precision): class probabilities within 0.01, SAM / SAM 2 masks IoU >= 0.98, attention maps
correlation >= 0.99, propagated volumes per-slice IoU >= 0.98, evaluation AUROC within 0.005.  Every pair runs the
same weights (one checkpoint) and the same inputs; only the precision differs.  PyTorch runs bfloat16 and float16
on every CPU (emulated where the CPU has no such instructions: slower, same numbers), so these run everywhere;
a precision is skipped only where this PyTorch build cannot run it at all, saying so.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_volume_propagation import phantom

from napari_vip.models.sam import SamSpec
from napari_vip.models.sam2_family import Sam2Spec
from napari_vip.models.spec import ModelSpec
from napari_vip.worker.engine import Engine

LOW = ("bf16", "fp16")


def _runs(precision: str) -> str | None:
    """Why this PyTorch cannot run ``precision`` on the CPU, or ``None``."""
    from napari_vip.models.precision import torch_dtype

    try:
        dt = torch_dtype(precision)
        x = torch.ones(4, 4, dtype=dt)
        torch.nn.functional.layer_norm(x @ x, (4,)).softmax(-1)
        torch.nn.functional.conv2d(torch.ones(1, 1, 4, 4, dtype=dt), torch.ones(1, 1, 2, 2, dtype=dt))
    except (RuntimeError, NotImplementedError) as exc:
        return f"this PyTorch build cannot run {precision} on the CPU ({exc})"
    return None


@pytest.fixture(params=LOW)
def low(request):
    why = _runs(request.param)
    if why:
        pytest.skip(why)
    return request.param


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


@pytest.fixture(scope="module")
def xray():
    """``(96, 128, 3)`` uint8: a noisy gradient with a bright oval (the object) and a darker square."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:96, :128]
    img = 40 + 0.6 * xx + rng.normal(0, 6, (96, 128))
    img[((yy - 40) / 18) ** 2 + ((xx - 50) / 26) ** 2 < 1] = 210
    img[60:85, 90:115] = 20
    img = np.clip(img, 0, 255).astype(np.uint8)
    return np.repeat(img[..., None], 3, -1)


# -- CLIP ----------------------------------------------------------------------------------------------------
def _parity_clip(tmp_path_factory, kind: str, seed: int = 5):
    """``(arch, path)`` of a small open_clip ViT or timm-tower CLIP (BiomedCLIP's tower kind): the tiny test towers
    with the released models' 512-wide embedding and a trained CLIP's logit scale (100), seeded weights.

    Why not the 32-wide tiny CLIP: a precision's rounding noise in a D-wide embedding moves a cosine by about
    noise/sqrt(D), so 32 dimensions magnify it 4x beyond what the released 512-wide models see."""
    from pathlib import Path

    from napari_vip.models.clip import _create

    arch = str(Path(__file__).parent / "configs" / f"vip-parity-{kind}.json")
    torch.manual_seed(seed)
    model, _, _ = _create(arch, "cpu")
    model.logit_scale.data.fill_(float(np.log(100.0)))
    path = tmp_path_factory.mktemp("clip") / f"{kind}.pt"
    torch.save(model.state_dict(), path)
    return arch, str(path)


@pytest.fixture(scope="module", params=["vit", "timm"])
def clip_checkpoint(request, tmp_path_factory):
    return _parity_clip(tmp_path_factory, request.param)


_LOADED: dict = {}


def _clip(arch, path, precision):
    """The loaded CLIP of ``(arch, path, precision)``, loaded once per test session."""
    from napari_vip.models.clip import load_clip

    key = (arch, path, precision)
    if key not in _LOADED:
        _LOADED[key] = load_clip(ModelSpec(arch, checkpoint=path, precision=precision), "cpu")
    return _LOADED[key]


def test_classify_probabilities_within_001(clip_checkpoint, xray, low):
    from napari_vip.core.markers import Marker
    from napari_vip.worker.classify import ClassifyRequest

    arch, path = clip_checkpoint
    markers = [Marker((24, 22, 76, 58), style) for style in ("bbox", "circle", "arrow")]
    classes = ["pneumonia", "nodule", "effusion", "cardiomegaly", "normal"]  # 4 conditions x 5 classes
    engine = Engine()
    out = {}
    for p in ("fp32", low):
        res = engine.run(ClassifyRequest(xray, markers, classes, ModelSpec(arch, checkpoint=path, precision=p),
                                         device="cpu"))
        out[p] = np.array([c.probabilities for c in res.conditions])
        assert res.provenance.precision == p
    assert out["fp32"].shape == (4, 5)
    assert np.abs(out[low] - out["fp32"]).max() <= 0.01


def test_concept_scores_within_001(clip_checkpoint, xray, low):
    arch, path = clip_checkpoint
    concepts = ["consolidation", "air bronchogram", "round opacity", "blunted angle", "clear lungs"]
    probs = {}
    for p in ("fp32", low):
        clip = _clip(arch, path, p)
        img = clip.encode_images([xray])
        txt = clip.encode_texts(concepts)
        assert img.dtype == txt.dtype == torch.float32  # embeddings come back float32
        probs[p] = clip.probabilities(img, txt)
    assert np.abs(probs[low] - probs["fp32"]).max() <= 0.01


@pytest.mark.parametrize("method", ["rollout", "gradcam", "similarity"])
def test_attention_maps_correlate_099(clip_checkpoint, xray, low, method):
    from napari_vip.models.attention import compute_map

    arch, path = clip_checkpoint
    maps = {}
    for p in ("fp32", low):
        maps[p] = compute_map(_clip(arch, path, p), xray, method, "a chest x-ray with signs of pneumonia")
    a, b = maps["fp32"].grid.ravel(), maps[low].grid.ravel()
    assert np.corrcoef(a, b)[0, 1] >= 0.99
    assert abs(maps["fp32"].score - maps[low].score) < 0.01


# -- SAM and SAM 2 --------------------------------------------------------------------------------------------
@pytest.fixture(params=["sam", "sam2"])
def sam_spec(request, tiny_sam_checkpoint, tiny_sam2_checkpoint):
    if request.param == "sam":
        arch, path = tiny_sam_checkpoint
        return lambda p: SamSpec(arch, checkpoint=path, precision=p)
    arch, path = tiny_sam2_checkpoint
    return lambda p: Sam2Spec(arch, checkpoint=path, precision=p)


def test_sam_masks_iou_098(sam_spec, xray, low, tmp_path, monkeypatch):
    from napari_vip.worker.segment import SegmentRequest

    monkeypatch.setenv("NAPARI_VIP_CACHE", str(tmp_path))
    engine = Engine()
    prompts = [dict(boxes_xyxy=[(24, 22, 76, 58)]), dict(boxes_xyxy=[(24, 22, 76, 58), (88, 58, 116, 86)]),
               dict(boxes_xyxy=[], points_xy=[(50, 40), (100, 70)], point_labels=[1, 0])]
    for prompt in prompts:
        res = {p: engine.run(SegmentRequest(xray, sam_spec(p), device="cpu", **prompt)) for p in ("fp32", low)}
        a, b = res["fp32"].masks, res[low].masks
        assert a.shape == b.shape and a.any()
        for obj in range(a.shape[0]):
            for k in range(a.shape[1]):
                assert iou(a[obj, k], b[obj, k]) >= 0.98, (prompt, obj, k)


def test_propagated_volume_per_slice_iou_098(sam_spec, low, tmp_path, monkeypatch):
    from napari_vip.models.propagation import SlicePrompt
    from napari_vip.worker.volume import PropagateRequest

    monkeypatch.setenv("NAPARI_VIP_CACHE", str(tmp_path))
    vol = phantom(z=6, size=128)
    engine = Engine()
    res = {p: engine.run(PropagateRequest(vol, [SlicePrompt(3, box_xyxy=(40, 20, 110, 90))], sam_spec(p),
                                          window=(-200.0, 400.0), iou_threshold=-1e9, stop_when_empty=False,
                                          device="cpu"))
           for p in ("fp32", low)}
    assert sorted(res["fp32"].slices) == sorted(res[low].slices) == list(range(6))
    assert res["fp32"].mask.any()
    for k in range(6):
        assert iou(res["fp32"].mask[k], res[low].mask[k]) >= 0.98, k
    assert res[low].provenance.precision == low


# -- evaluation -----------------------------------------------------------------------------------------------
def _labelled_set(root, n=80):
    from PIL import Image

    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    rows = ["path,label,x0,y0,x1,y1"]
    for i in range(n):
        label = "lesion" if i % 2 else "normal"
        img = np.clip(128 + rng.normal(0, rng.uniform(4, 30), (64, 64)), 1, 254)
        x0, y0 = rng.integers(4, 46, 2)
        if label == "lesion":
            img[y0:y0 + 12, x0:x0 + 12] = np.where(rng.random((12, 12)) > 0.5, 200, 56)
        img[0, 0], img[-1, -1] = 0, 255
        Image.fromarray(img.astype(np.uint8)).save(root / f"{i}.png")
        rows.append(f"{i}.png,{label},{x0},{y0},{x0 + 11},{y0 + 11}")
    (root / "data.csv").write_text("\n".join(rows) + "\n")
    return root / "data.csv"


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory):
    """``run(precision) -> EvaluateResult`` on 320 labelled 64x64 images, conditions ``none`` and ``text-only``
    (one render per image, shared by both), one store; each precision's result computed once.

    320 images: a random network's scores differ little between images, so the rank flips that a precision's
    rounding causes move the AUROC by about 1/sqrt(N); at 80 images bfloat16 moved it 0.008, at 320 at most
    0.0027 (docs/precision.md)."""
    from napari_vip.worker.evaluate import EvaluateRequest

    arch, path = _parity_clip(tmp_path_factory, "vit")
    root = tmp_path_factory.mktemp("evaluation")
    data = _labelled_set(root / "data", n=320)
    engine, done = Engine(), {}

    def run(precision, again=False):
        if again or precision not in done:
            done[precision] = engine.run(EvaluateRequest(
                str(data), ModelSpec(arch, checkpoint=path, precision=precision), ("none", "text-only"),
                bootstrap=0, device="cpu", store=str(root / "store")))
        return done[precision]
    return run


def test_evaluation_auroc_within_0005_and_stores_apart(evaluation, low):
    ref, res = evaluation("fp32"), evaluation(low)
    assert ref.embedded == res.embedded == 320  # text-only shares the plain render
    for cond in ("none", "text-only"):
        assert abs(ref.metrics[cond]["auroc"] - res.metrics[cond]["auroc"]) <= 0.005, cond
    assert res.provenance.precision == low
    assert evaluation(low, again=True).embedded == 0  # each precision finds its own embeddings in the store


# -- prompt learning: the frozen image tower in the precision, the text tower and every trained tensor float32 ----
def test_prompt_learning_follows_float32(tmp_path, tiny_clip_checkpoint, capsys, low):
    import json

    from PIL import Image

    from napari_vip.cli.main import main

    arch, ckpt = tiny_clip_checkpoint
    rng = np.random.default_rng(0)
    for name, base in (("dark", 0), ("bright", 180)):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(8):
            Image.fromarray(rng.integers(base, base + 76, (32, 32)).astype(np.uint8)).save(
                tmp_path / "data" / name / f"{i}.png")
    lib = tmp_path / "lib.json"
    lib.write_text(json.dumps({"version": 1, "classes": {"dark": ["a dark image", "black"],
                                                         "bright": ["a bright image", "white"]}}))
    runs = {}
    for p in ("fp32", low):
        out = tmp_path / f"{p}.pt"
        assert main(["learn", str(tmp_path / "data"), "--model", arch, "--checkpoint", ckpt, "--device", "cpu",
                     "--precision", p, "--descriptors", str(lib), "--method", "vip", "--epochs", "3", "--min-steps", "1",
                     "--batch-size", "8", "--out", str(out), "--json"]) == 0
        runs[p] = json.loads(capsys.readouterr().out)
        assert runs[p]["provenance"]["precision"] == p
        saved = torch.load(out, weights_only=True)["tensors"]
        assert saved and all(t.dtype == torch.float32 for t in saved.values())  # float32 master weights
    ref = [h["train_loss"] for h in runs["fp32"]["histories"]["vip"]]
    got = [h["train_loss"] for h in runs[low]["histories"]["vip"]]
    np.testing.assert_allclose(got, ref, rtol=0.02, atol=1e-3)


# -- VLSMs: the frozen vision tower in the precision ----------------------------------------------------------------
@pytest.mark.parametrize("family", ["clipseg", "biomedclipseg"])
def test_vlsm_masks_iou_098(tmp_path, low, family):
    from vlsm_fixtures import disc_and_square, tiny_biomedclipseg_config, tiny_clipseg_arch, write_arch_json

    from napari_vip.models.vlsm import VlsmSpec
    from napari_vip.worker.vlsm import vlsm_model

    cfg = (write_arch_json(tmp_path / "arch.json", tiny_clipseg_arch(), 352) if family == "clipseg"
           else tiny_biomedclipseg_config(tmp_path))
    engine = Engine()
    models = {p: vlsm_model(engine, VlsmSpec(family, untrained=True, config=str(cfg), precision=p), "cpu")
              for p in ("fp32", low)}  # untrained VLSMs are seeded: the same weights
    assert models[low].provenance()["precision"] == low and models["fp32"].provenance()["precision"] == "fp32"
    assert models[low].weights_id.endswith(f":{low}")  # stored activations of two precisions never share a key
    rng = np.random.default_rng(0)
    for k in range(3):
        img, _, _ = disc_and_square(96, rng, "disc")
        a, b = (models[p].predict(img, "one filled disc").mask for p in ("fp32", low))
        assert a.any() and iou(a, b) >= 0.98, k
