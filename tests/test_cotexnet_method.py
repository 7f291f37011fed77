"""The ``cotexnet`` fine-tuning method on a tiny CLIPSeg: it trains the decoder and heads only (CLIP frozen), its
loss falls, its predictions are text-free, and a saved folder loads through ``load_vlsm`` as a text-free VLSM."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from vlsm_fixtures import tiny_clipseg_arch, write_arch_json  # noqa: E402

from napari_vip.models.vlsm import VlsmSpec, load_vlsm  # noqa: E402
from napari_vip.models.vlsm.cotexnet import (  # noqa: E402
    RELEASED_RECIPE,
    CotexnetMethod,
    CoTexNetVlsmModel,
    save_cotexnet_folder,
)

SIZE = 64


@pytest.fixture
def base(tmp_path):
    cfg = write_arch_json(tmp_path / "arch.json", tiny_clipseg_arch(SIZE, patch=8, complex_conv=False), SIZE)
    return load_vlsm(VlsmSpec("clipseg", untrained=True, config=str(cfg)))


def batch(model, n=4, seed=0):
    rng = np.random.default_rng(seed)
    imgs = [rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8) for _ in range(n)]
    mask = torch.zeros((n, 1, SIZE, SIZE))
    mask[:, :, 8:30, 20:50] = 1
    tok = model.tokenize(["1 round small red polyp area, located in the top center of the image."] * n)
    return {"pixel_values": model.preprocess(imgs), "mask": mask, **tok}


def test_method_trains_decoder_and_heads_and_predicts_without_text(base, tmp_path):
    method = CotexnetMethod()
    assert method.default_recipe()["lr"] == 3e-4 and RELEASED_RECIPE["batch_size"] == 16
    model = method.prepare(base)
    assert isinstance(model, CoTexNetVlsmModel) and not model.needs_text and model is base
    assert model.module.clipseg is base.module.clipseg  # shared, not copied
    params = method.trainable(model)
    names = {n for n, p in model.module.named_parameters() if any(p is q for q in params)}
    assert names and all(n.startswith(("clipseg.decoder.", "heads.")) for n in names)
    assert not any(p.requires_grad for p in model.module.clipseg.clip.parameters())
    b = batch(model)
    opt = torch.optim.AdamW(params, lr=3e-3)
    model.module.train()
    losses = []
    with torch.random.fork_rng():
        torch.manual_seed(0)
        for _ in range(8):
            loss, logits = method.loss(model, b)
            assert logits.shape == (4, 1, SIZE, SIZE)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert set(method.last) == {"seg_loss", "kl", "alpha"}
    calls = []
    h = model.module.clipseg.clip.text_model.register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        model.module.eval()
        with torch.no_grad():
            pred = method.predict(model, {"pixel_values": b["pixel_values"]})
            acts = model.encode_image(b["pixel_values"])
            from_store = method.predict(model, {"activations": acts})
        assert torch.allclose(pred, from_store)
        img = np.random.default_rng(1).integers(0, 255, (50, 70, 3), dtype=np.uint8)
        p = model.predict(img)
        assert p.mask.shape == (50, 70) and p.prob.dtype == np.float32
        assert calls == []
    finally:
        h.remove()

    out = save_cotexnet_folder(model, tmp_path / "ctx", recipe=method.default_recipe(), base="untrained tiny")
    loaded = load_vlsm(VlsmSpec("clipseg", source=str(out)))
    assert isinstance(loaded, CoTexNetVlsmModel) and loaded.method == "cotexnet" and not loaded.needs_text
    assert loaded.provenance()["weights_sha256"] and not loaded.untrained
    q = loaded.predict(img, "")
    assert np.allclose(q.logits_model, p.logits_model, atol=1e-5)
    assert loaded.config["recipe"]["distill_weight"] == 10.0


def test_segment_cli_with_a_cotexnet_folder_needs_no_text(base, tmp_path, capsys):
    import json

    from PIL import Image

    from napari_vip.cli.main import main

    method = CotexnetMethod()
    model = method.prepare(base)
    out = save_cotexnet_folder(model, tmp_path / "ctx", recipe=method.default_recipe())
    img = np.random.default_rng(2).integers(0, 255, (40, 56, 3), dtype=np.uint8)
    Image.fromarray(img).save(tmp_path / "img.png")
    rc = main(["segment", str(tmp_path / "img.png"), "--vlsm-checkpoint", str(out), "--out",
               str(tmp_path / "mask.png"), "--json"])
    got = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert got["steps"][0]["method"] == "cotexnet" and got["steps"][0]["needs_text"] is False
    assert got["text"] == ""
    assert (tmp_path / "mask.png").is_file()
    expected = model.predict(img).mask
    assert int(expected.sum()) == got["steps"][0]["area"]


def test_evaluate_seg_lists_cotexnet_beside_clipseg(base, tmp_path, capsys):
    """One command compares zero-shot CLIPSeg and a CoTexNet folder; CoTexNet's row is the same for every prompt
    type (it reads no text)."""
    import json

    from PIL import Image
    from vlsm_fixtures import save_clipseg_folder

    from napari_vip.cli.main import main

    clipseg_dir = save_clipseg_folder(tmp_path / "clipseg", tiny_clipseg_arch(SIZE, patch=8, complex_conv=False),
                                      input_size=SIZE)
    ctx = save_cotexnet_folder(CotexnetMethod().prepare(load_vlsm(VlsmSpec("clipseg", source=str(clipseg_dir)))),
                               tmp_path / "ctx")
    rows = ["image,mask,split,p0,p1"]
    for i in range(3):
        img = np.zeros((32, 40, 3), np.uint8)
        img[4 + i:16 + i, 6:20, 0] = 255
        m = (img[..., 0] > 0).astype(np.uint8) * 255
        Image.fromarray(img).save(tmp_path / f"i{i}.png")
        Image.fromarray(m).save(tmp_path / f"m{i}.png")
        rows.append(f"i{i}.png,m{i}.png,test,,polyp")
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    rc = main(["evaluate-seg", str(tmp_path / "d.csv"), "--models", f"zero-shot=clipseg:{clipseg_dir}",
               f"cotexnet={ctx}", "--prompts", "p0", "p1", "--bootstrap", "5", "--device", "cpu",
               "--out", str(tmp_path / "out"), "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    d = json.loads(out)
    assert set(d["table"]) == {"zero-shot", "cotexnet"}
    assert d["table"]["cotexnet"]["p0"]["dice"] == d["table"]["cotexnet"]["p1"]["dice"]
    methods = {m["label"]: m["provenance"].get("method") for m in d["models"]}
    assert methods["cotexnet"] == "cotexnet"


def test_sentences_for_items_from_csv_prompt_or_mask(tmp_path):
    from types import SimpleNamespace

    from napari_vip.core.errors import VipInputError
    from napari_vip.core.region_attributes import SentenceRow, mask_attributes, write_sentence_csv
    from napari_vip.models.vlsm.cotexnet import PROMPT_KEY, RECIPE_DEFAULTS, make_method

    img = np.zeros((40, 40, 3), np.uint8)
    m = np.zeros((40, 40), bool)
    m[5:15, 25:35] = True
    img[m] = (220, 40, 40)
    item = SimpleNamespace(sample_id="a", prompts={"p1": "polyp"}, load=lambda: (img, m))
    csv = write_sentence_csv(tmp_path / "s.csv", [SentenceRow("a", "1 flat pale polyp area, located in the top "
                                                                    "right of the image.")])
    assert make_method(None, None, sentences=str(csv)).text_for(item).startswith("1 flat pale")
    method = make_method(None, None, keyword="polyp area", distill_weight=0.0)
    assert method.distill_weight == 0.0
    assert method.text_for(item) == mask_attributes(img, m).sentence("polyp area")
    given = SimpleNamespace(sample_id="b", prompts={PROMPT_KEY: "1 round polyp area"}, load=None)
    assert method.text_for(given) == "1 round polyp area"
    with pytest.raises(VipInputError, match="--keyword"):
        make_method().text_for(SimpleNamespace(sample_id="c", prompts={}, load=None))
    assert RECIPE_DEFAULTS["lr"] == 3e-4 and RECIPE_DEFAULTS["batch_size"] == 16 and RECIPE_DEFAULTS["seed"] == 666


def test_released_input_size_is_the_vision_towers_own(tmp_path):
    from napari_vip.models.vlsm.cotexnet import make_method

    cfg = write_arch_json(tmp_path / "arch.json", tiny_clipseg_arch(352), 352)  # vision tower trained at 224
    model = load_vlsm(VlsmSpec("clipseg", untrained=True, config=str(cfg)))
    assert model.input_size == 352
    make_method(None, model)
    assert model.input_size == 224
    make_method(None, model, input_size=160)
    assert model.input_size == 160
