"""Zero-shot with concepts: equals a direct computation on untrained weights; best concept; bad input."""

from __future__ import annotations

import numpy as np
import pytest

from napari_vip.core.errors import VipInputError
from napari_vip.core.markers import Marker, render_marker
from napari_vip.models.spec import ModelSpec
from napari_vip.worker.classify import ClassifyRequest
from napari_vip.worker.concepts import ConceptClassifyRequest, RegionConceptsRequest, check_concepts, concept_prompt
from napari_vip.worker.engine import Engine

CONCEPTS = {"pneumonia": ["patchy consolidation", "air bronchogram.", "lobar opacity"],
            "normal": ["clear lung fields", "sharp costophrenic angles"]}


@pytest.fixture(scope="module")
def engine():
    return Engine()


@pytest.fixture(scope="module")
def spec(tiny_clip_arch):
    return ModelSpec(tiny_clip_arch, untrained=True)


@pytest.fixture
def rgb(gray_image):
    g = (gray_image / gray_image.max() * 255).astype(np.uint8)
    return np.stack([g] * 3, axis=-1)


def direct(clip, image_rgb, class_prompts):
    """The ViP untrained merge written out with open_clip calls, without napari-vip's helpers."""
    import torch
    from PIL import Image

    model = clip.model
    with torch.no_grad():
        img = model.encode_image(clip.preprocess(Image.fromarray(image_rgb))[None])
        img = img / img.norm(dim=-1, keepdim=True)
        rows, sims = [], []
        for prompts in class_prompts:
            t = model.encode_text(clip.tokenizer(prompts))
            t = t / t.norm(dim=-1, keepdim=True)
            sims.append((t @ img[0]).numpy())
            m = t.mean(dim=0)
            rows.append(m / m.norm())
        logits = model.logit_scale.exp() * img @ torch.stack(rows).T
        return torch.softmax(logits, dim=-1)[0].numpy(), sims


def test_equals_direct_computation_on_untrained_weights(engine, spec, rgb):
    marker = Marker((60, 30, 110, 70), "circle", "red")
    req = ConceptClassifyRequest(rgb, [marker], CONCEPTS, spec, device="cpu")
    res = engine.run(req)
    clip = engine.clip(spec, "cpu")
    assert [c.name for c in res.conditions] == ["none", "1: circle"]
    for cond, image, suffix in ((res.conditions[0], render_marker(rgb, None), ""),
                                (res.conditions[1], render_marker(rgb, marker), " indicated by a red circle")):
        prompts = [[f"A chest x-ray with signs of {c}, which has {k.rstrip('.')}{suffix}." for k in ks]
                   for c, ks in CONCEPTS.items()]
        assert [cond.class_prompts[c] for c in CONCEPTS] == prompts
        probs, sims = direct(clip, image, prompts)
        np.testing.assert_allclose(cond.probabilities, probs, rtol=1e-4, atol=1e-6)
        assert cond.probabilities.sum() == pytest.approx(1.0)
        for c, s in zip(CONCEPTS, sims):
            np.testing.assert_allclose(cond.concept_scores[c], s, rtol=1e-4, atol=1e-5)
            assert cond.best_concept[c] == CONCEPTS[c][int(np.argmax(s))]
    d = res.to_dict()
    assert d["untrained"] is True and d["provenance"]["concepts"] == {c: list(v) for c, v in CONCEPTS.items()}
    assert d["conditions"][1]["best_concept"] == res.conditions[1].best_concept
    assert d["conditions"][0]["concepts"]["normal"][1]["concept"] == "sharp costophrenic angles"


def test_one_concept_per_class_reduces_to_plain_zero_shot(engine, spec, rgb):
    marker = Marker((60, 30, 110, 70), "bbox", "green")
    classes = ["pneumonia", "normal"]
    plain = engine.run(ClassifyRequest(rgb, [marker], classes, spec, device="cpu"))
    concept = engine.run(ConceptClassifyRequest(rgb, [marker], {c: [c] for c in classes}, spec,
                                                template="A {modality} with signs of {concept}{suffix}.",
                                                device="cpu"))
    for a, b in zip(plain.conditions, concept.conditions):
        assert a.prompts == b.prompts
        np.testing.assert_allclose(a.probabilities, b.probabilities, rtol=1e-5)


def test_marker_text_can_be_left_out(engine, spec, rgb):
    res = engine.run(ConceptClassifyRequest(rgb, [Marker((60, 30, 110, 70), "arrow")], CONCEPTS, spec,
                                            marker_text=(), include_baseline=False, device="cpu"))
    assert len(res.conditions) == 1
    assert all("indicated" not in p for p in res.conditions[0].prompts)


def test_bad_input(engine, spec, rgb):
    with pytest.raises(VipInputError, match="'normal' has no enabled concepts"):
        check_concepts({"pneumonia": ["x"], "normal": [" ", ""]})
    with pytest.raises(VipInputError, match="No classes"):
        check_concepts({})
    with pytest.raises(VipInputError, match="Duplicate"):
        check_concepts({"a": ["x"], "A ": ["y"]})
    with pytest.raises(VipInputError, match="needs a {concept}"):
        engine.run(ConceptClassifyRequest(rgb, [], CONCEPTS, spec, template="A {c}.", device="cpu"))
    with pytest.raises(VipInputError, match="Nothing to classify"):
        engine.run(ConceptClassifyRequest(rgb, [], CONCEPTS, spec, include_baseline=False, device="cpu"))


def test_concept_prompt_places_the_marker_phrase():
    assert concept_prompt("nodule", "1 round small bright nodule, located in the top left of the image.",
                          " indicated by a red circle", "{concept}") == \
        "1 round small bright nodule, located in the top left of the image indicated by a red circle"
    assert concept_prompt("a", "b.", " s", "{c}: {concept}.") == "a: b s."


def test_region_concepts_job_carries_provenance(engine, rgb):
    mask = np.zeros(rgb.shape[:2], dtype=np.uint8)
    mask[40:60, 70:100] = 1  # the bright square of gray_image
    res = engine.run(RegionConceptsRequest(rgb, mask, None, "nodule"))
    assert res.sentence == "1 oval medium bright nodule, located in the center of the image."  # 3.1 %
    d = res.to_dict()
    assert d["provenance"]["method"].startswith("region concepts") and d["provenance"]["source"] == "mask"
    assert d["variants"]["p3"] == "oval bright nodule"
