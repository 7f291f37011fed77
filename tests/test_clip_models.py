"""CLIP loading from specs and checkpoints, safety, and zero-shot numbers against open_clip itself."""


import numpy as np
import pytest
import torch

from napari_vip.core.errors import VipInputError
from napari_vip.core.markers import Marker, render_marker
from napari_vip.models.checkpoint import load_state_dict, sha256_file
from napari_vip.models.clip import load_clip
from napari_vip.models.spec import ModelSpec
from napari_vip.worker.classify import ClassifyRequest
from napari_vip.worker.engine import Engine


def test_checkpoint_round_trip_records_sha256(tiny_clip_checkpoint):
    arch, path = tiny_clip_checkpoint
    clip = load_clip(ModelSpec(arch, checkpoint=path))
    assert clip.sha256 == sha256_file(path) and len(clip.sha256) == 64
    assert clip.provenance()["untrained"] is False
    saved = torch.load(path, weights_only=True)
    for k, v in clip.model.state_dict().items():
        torch.testing.assert_close(v, saved[k], rtol=0, atol=0)


def test_module_prefix_and_wrapped_state_dicts_load(tiny_clip_checkpoint, tmp_path):
    arch, path = tiny_clip_checkpoint
    state = torch.load(path, weights_only=True)
    wrapped = tmp_path / "ddp.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, wrapped)
    loaded = load_state_dict(wrapped)
    assert set(loaded) == set(state)


def test_safetensors_checkpoint_loads(tiny_clip_checkpoint, tmp_path):
    from safetensors.torch import save_file

    arch, path = tiny_clip_checkpoint
    state = {k: v.contiguous() for k, v in torch.load(path, weights_only=True).items()}
    st = tmp_path / "tiny.safetensors"
    save_file(state, str(st))
    clip = load_clip(ModelSpec(arch, checkpoint=str(st)))
    assert clip.sha256 == sha256_file(st)


class Evil:
    def __reduce__(self):
        return (print, ("this pickle runs code",))


def test_pickle_that_carries_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"weights": torch.zeros(2), "payload": Evil()}, path)
    with pytest.raises(VipInputError, match="refused"):
        load_state_dict(path)


def test_truncated_and_foreign_checkpoints_are_refused(tiny_clip_checkpoint, tmp_path):
    arch, path = tiny_clip_checkpoint
    data = open(path, "rb").read()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(VipInputError, match="truncated"):
        load_clip(ModelSpec(arch, checkpoint=str(cut)))
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    with pytest.raises(VipInputError, match=r"truncated|not a PyTorch|refused"):
        load_state_dict(text)
    with pytest.raises(VipInputError, match="does not exist"):
        load_state_dict(tmp_path / "missing.pt")


def test_checkpoint_of_another_architecture_is_named(tiny_clip_checkpoint, tmp_path):
    arch, path = tiny_clip_checkpoint
    state = torch.load(path, weights_only=True)
    state["visual.proj"] = torch.zeros(3, 3)
    other = tmp_path / "other.pt"
    torch.save(state, other)
    with pytest.raises(VipInputError, match="another architecture"):
        load_clip(ModelSpec(arch, checkpoint=str(other)))


def test_missing_weights_never_become_random(monkeypatch):
    from open_clip import pretrained as op

    def offline(*a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr(op, "download_pretrained", offline)
    with pytest.raises(VipInputError, match=r"ViT-B-16 / openai.*--checkpoint"):
        load_clip(ModelSpec("ViT-B-16", pretrained="openai"))
    with pytest.raises(VipInputError, match="no pretrained tag"):
        load_clip(ModelSpec("ViT-B-16", pretrained="no-such-tag"))
    with pytest.raises(VipInputError, match="no weights"):
        ModelSpec("ViT-B-16")
    with pytest.raises(VipInputError, match="one source"):
        ModelSpec("ViT-B-16", pretrained="openai", untrained=True)


def test_hub_model_offline_names_the_spec_and_the_way_out(monkeypatch):
    from napari_vip.models import clip

    monkeypatch.setattr(clip, "_check_hub_extra", lambda spec: None)  # as if the biomedclip extra were installed
    with pytest.raises(VipInputError, match=r"BiomedCLIP.*checkpoint"):
        load_clip(ModelSpec())


def test_probabilities_equal_a_direct_open_clip_computation(tiny_clip_checkpoint):
    """The whole classify path (render, preprocess, prompts, softmax) against open_clip by hand."""
    import open_clip
    from PIL import Image

    arch, path = tiny_clip_checkpoint
    rng = np.random.default_rng(1)
    image = (rng.random((90, 120, 3)) * 255).astype(np.uint8)
    marker = Marker((30, 20, 80, 60), "circle", "red")
    classes = ["pneumonia", "normal", "effusion"]
    result = Engine().run(ClassifyRequest(image, [marker], classes, ModelSpec(arch, checkpoint=path), device="cpu"))

    model, _, preprocess = open_clip.create_model_and_transforms("vip-tiny-vit", pretrained=None)
    model.load_state_dict(torch.load(path, weights_only=True))
    model.eval()
    tok = open_clip.get_tokenizer("vip-tiny-vit")
    for cond, img, suffix in [(result.conditions[0], render_marker(image, None), ""),
                              (result.conditions[1], render_marker(image, marker), " indicated by a red circle")]:
        prompts = [f"A chest x-ray with signs of {c}{suffix}." for c in classes]
        assert cond.prompts == prompts
        with torch.no_grad():
            f_img = model.encode_image(preprocess(Image.fromarray(img))[None])
            f_txt = model.encode_text(tok(prompts))
            f_img = f_img / f_img.norm(dim=-1, keepdim=True)
            f_txt = f_txt / f_txt.norm(dim=-1, keepdim=True)
            expected = (model.logit_scale.exp() * f_img @ f_txt.T).softmax(dim=-1)[0].numpy()
        np.testing.assert_allclose(cond.probabilities, expected, atol=1e-5)
        assert cond.probabilities.sum() == pytest.approx(1.0)
    assert result.provenance.weights_sha256 == sha256_file(path)
    assert result.to_dict()["untrained"] is False


def test_untrained_results_say_so(tiny_clip_arch):
    img = np.zeros((32, 32), np.float32)
    img[8:16, 8:16] = 1
    result = Engine().run(ClassifyRequest(np.repeat((img[..., None] * 255).astype(np.uint8), 3, -1), [],
                                          ["a", "b"], ModelSpec(tiny_clip_arch, untrained=True), device="cpu"))
    d = result.to_dict()
    assert d["untrained"] is True and d["provenance"]["untrained"] is True
    assert d["provenance"]["weights_sha256"] is None
    assert [c["condition"] for c in d["conditions"]] == ["none"]


def test_hub_model_without_transformers_says_what_to_install(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "transformers" else real(name, *a))
    with pytest.raises(VipInputError, match=r"napari-vip\[biomedclip\]"):
        load_clip(ModelSpec())
