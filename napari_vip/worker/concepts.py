"""Concept prompts in the worker: zero-shot with concepts, region concepts, descriptors from a language model.

Zero-shot with concepts (ViP's untrained merge, Fang et al., MICCAI 2024): each class has a list of
concept prompts (visual descriptors); each becomes a sentence through :data:`CONCEPT_TEMPLATE`, is
embedded by the CLIP text encoder (L2-normalised), and the class's text embedding is the L2-normalised
mean of its concept embeddings.  Probabilities are the softmax over classes of
``logit_scale * image @ class.T``, as in plain zero-shot.  For each class the result also says which
concept's embedding is the most similar (cosine) to the image: the concept that "scored highest".
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import __version__
from ..core.errors import VipInputError
from ..core.markers import Marker
from ..core.prompts import DEFAULT_MODALITY, SUFFIXES, check_classes, check_template_fields, with_suffix_field
from ..core.recipes import GUI_RECIPE, recipe_provenance
from ..models.spec import ModelSpec
from .classify import condition_suffix, embedded_conditions, with_clipped_markers
from .engine import handles
from .protocol import Provenance

#: Sentence for one concept: ``{c}`` class, ``{concept}`` the concept, ``{modality}``, ``{suffix}`` marker phrase.
CONCEPT_TEMPLATE = "A {modality} with signs of {c}, which has {concept}{suffix}."
CONCEPT_FIELDS = ("c", "concept", "modality", "suffix")


def check_concept_template(template: str) -> None:
    """Refuse a concept template without ``{concept}`` or with unknown fields."""
    check_template_fields(template, "Concept", CONCEPT_FIELDS, "concept", "the concept")


def concept_prompt(class_name: str, concept: str, suffix: str = "", template: str = CONCEPT_TEMPLATE,
                   modality: str = DEFAULT_MODALITY) -> str:
    """One concept's sentence.  The concept's final full stop is dropped; a template without
    ``{suffix}`` gets the marker phrase before its final full stop."""
    check_concept_template(template)
    concept = " ".join(concept.split()).rstrip(".").strip()
    return with_suffix_field(template, suffix).format(c=class_name, concept=concept, suffix=suffix, modality=modality)


def check_concepts(concepts) -> dict[str, list[str]]:
    """Classes (validated as in plain zero-shot) with their non-blank concepts; VipInputError for a class
    with none."""
    if not concepts:
        raise VipInputError("No classes with concepts: add findings and their concept prompts.")
    classes = check_classes(list(concepts))
    originals = {str(k).strip(): v for k, v in concepts.items()}
    out: dict[str, list[str]] = {}
    for c in classes:
        items = [" ".join(str(t).split()) for t in (originals.get(c) or [])]
        items = [t for t in items if t]
        if not items:
            raise VipInputError(f"Class {c!r} has no enabled concepts: type one, fill it from the symptom library, "
                                "or enable one of its concepts.")
        out[c] = items
    return out


@dataclass
class ConceptClassifyRequest:
    """Zero-shot classification where each class is the mean of its enabled concept embeddings.

    Attributes
    ----------
    image_rgb : np.ndarray
        ``(H, W, 3)`` uint8, the windowed plane the user sees.
    markers : list of Marker
        Each is rendered on its own copy of the image and classified as one condition.
    concepts : dict of str to list of str
        Class name -> its enabled concepts, in order (class order is the dict's).
    template : str
        :data:`CONCEPT_TEMPLATE` by default; fields ``{c}``, ``{concept}``, ``{modality}``, ``{suffix}``.
    marker_text : tuple of str
        Styles whose marker phrase is added to each concept sentence.
    include_baseline : bool
        Also classify the image without a marker (condition ``none``).
    recipe, notes
        As in :class:`~napari_vip.worker.classify.ClassifyRequest`.
    """

    image_rgb: np.ndarray
    markers: list[Marker]
    concepts: dict[str, list[str]]
    model: ModelSpec
    template: str = CONCEPT_TEMPLATE
    modality: str = DEFAULT_MODALITY
    marker_text: tuple[str, ...] = tuple(SUFFIXES)
    include_baseline: bool = True
    device: str = "auto"
    recipe: str = GUI_RECIPE
    notes: list[str] = field(default_factory=list)


@dataclass
class ConceptCondition:
    """One condition: probabilities over classes and the per-concept similarities.

    ``prompts`` is every sentence embedded, class by class (what the probability table lists);
    ``concept_scores[c]`` is the ``(K_c,)`` cosine similarity of the image to each of class ``c``'s
    concept sentences, ``best_concept[c]`` the concept with the highest.
    """

    name: str
    marker: Marker | None
    probabilities: np.ndarray  # (C,) float64
    class_prompts: dict[str, list[str]]
    concepts: dict[str, list[str]]
    concept_scores: dict[str, np.ndarray]
    best_concept: dict[str, str]

    @property
    def prompts(self) -> list[str]:
        return [p for ps in self.class_prompts.values() for p in ps]

    def to_dict(self, classes) -> dict:
        return {
            "condition": self.name, "marker": self.marker.to_dict() if self.marker else None,
            "probabilities": {c: float(p) for c, p in zip(classes, self.probabilities)},
            "best_concept": dict(self.best_concept),
            "concepts": {c: [{"concept": k, "prompt": p, "similarity": float(s)}
                             for k, p, s in zip(self.concepts[c], self.class_prompts[c], self.concept_scores[c])]
                         for c in classes},
        }


@dataclass
class ConceptClassifyResult:
    classes: list[str]
    conditions: list[ConceptCondition]
    provenance: Provenance
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"classes": list(self.classes), "method": "concept zero-shot (mean of concept embeddings)",
                "conditions": [c.to_dict(self.classes) for c in self.conditions],
                "provenance": self.provenance.to_dict(), "untrained": self.provenance.untrained,
                "notes": list(self.notes)}


def class_embeddings(clip, class_prompts: dict[str, list[str]]):
    """``(C, D)`` tensor: per class the L2-normalised mean of its prompts' (normalised) text embeddings;
    also returns the per-class ``(K_c, D)`` prompt embeddings."""
    import torch

    from ..models.clip import class_embedding

    per_class = [clip.encode_texts(ps) for ps in class_prompts.values()]
    return torch.stack([class_embedding(e) for e in per_class]), per_class


@handles(ConceptClassifyRequest)
def classify_with_concepts(engine, req: ConceptClassifyRequest, progress) -> ConceptClassifyResult:
    req, notes = with_clipped_markers(req)
    concepts = check_concepts(req.concepts)
    check_concept_template(req.template)
    classes = list(concepts)
    clip, conditions, img, total = embedded_conditions(engine, req, progress)
    results = []
    for k, (name, marker) in enumerate(conditions):
        suffix = condition_suffix(req, marker)
        class_prompts = {c: [concept_prompt(c, t, suffix, req.template, req.modality) for t in concepts[c]]
                         for c in classes}
        merged, per_class = class_embeddings(clip, class_prompts)
        probs = clip.probabilities(img[k:k + 1], merged)[0]
        scores = {c: (e @ img[k]).double().cpu().numpy() for c, e in zip(classes, per_class)}
        best = {c: concepts[c][int(np.argmax(scores[c]))] for c in classes}
        results.append(ConceptCondition(name, marker, probs, class_prompts, dict(concepts), scores, best))
        progress(2 + k, total, f"condition {k + 1}/{len(conditions)}")
    progress(total, total, "done")
    prov = Provenance(__version__, **clip.provenance(),
                      extra={"method": "concept zero-shot", "concept_template": req.template,
                             "modality": req.modality, "marker_text": list(req.marker_text),
                             "concepts": {c: list(v) for c, v in concepts.items()},
                             **recipe_provenance(req.recipe)})
    return ConceptClassifyResult(classes, results, prov, notes)


# -- region concepts ------------------------------------------------------------------------------------------
@dataclass
class RegionConceptsRequest:
    """Describe a region in words (no model).

    Attributes
    ----------
    image_rgb : np.ndarray
        ``(H, W, 3)`` uint8 (or ``(H, W)``) plane the user sees.
    mask : np.ndarray, optional
        ``(H, W)``; non-zero = region.  Preferred over the box.
    box_xyxy : (float, float, float, float), optional
        ``(x0, y0, x1, y1)`` pixels; used when there is no mask (or it is empty).
    keyword : str
    template : str
        See :mod:`napari_vip.core.region_concepts`.
    """

    image_rgb: np.ndarray
    mask: np.ndarray | None = None
    box_xyxy: tuple[float, float, float, float] | None = None
    keyword: str = "lesion"
    template: str | None = None
    number_words: bool = False


@dataclass
class RegionConceptsResult:
    concepts: object  # RegionConcepts
    sentence: str
    variants: dict[str, str]
    provenance: Provenance

    def to_dict(self) -> dict:
        d = self.concepts.to_dict()
        d["sentence"] = self.sentence
        d["variants"] = dict(self.variants)
        d["provenance"] = self.provenance.to_dict()
        return d


@handles(RegionConceptsRequest)
def region_concepts(engine, req: RegionConceptsRequest, progress) -> RegionConceptsResult:
    from ..core import region_concepts as rc

    progress(0, 1, "measuring the region")
    concepts = rc.describe_region(req.image_rgb, req.mask, req.box_xyxy, req.keyword, req.number_words)
    template = req.template or rc.TEMPLATE
    sentence = concepts.sentence(template)
    progress(1, 1, "done")
    prov = Provenance(__version__, extra={"method": "region concepts (no model)", "template": template,
                                          "source": concepts.source,
                                          "thresholds": {"size": [list(t) for t in rc.SIZE_THRESHOLDS],
                                                         "round_max_eccentricity": rc.ROUND_MAX_ECCENTRICITY,
                                                         "oval_max_eccentricity": rc.OVAL_MAX_ECCENTRICITY,
                                                         "irregular_max_solidity": rc.IRREGULAR_MAX_SOLIDITY,
                                                         "brightness": rc.BRIGHTNESS_THRESHOLD,
                                                         "center_radius": rc.CENTER_RADIUS}})
    return RegionConceptsResult(concepts, sentence, concepts.variants(), prov)


# -- descriptors from a language model ------------------------------------------------------------------------
@dataclass
class DescriptorsRequest:
    """Ask a language model for ``n`` visual descriptors of ``class_name`` on ``modality``; blocking I/O.

    ``config`` is a :class:`napari_vip.models.llm_descriptors.LlmConfig`; ``cache`` merges the answer
    into the user's symptom library.
    """

    class_name: str
    modality: str
    config: object
    n: int = 5
    cache: bool = True


@dataclass
class DescriptorsResult:
    class_name: str
    descriptors: list[str]
    provenance: Provenance

    def to_dict(self) -> dict:
        return {"class": self.class_name, "descriptors": list(self.descriptors),
                "provenance": self.provenance.to_dict()}


@handles(DescriptorsRequest)
def descriptors(engine, req: DescriptorsRequest, progress) -> DescriptorsResult:
    from ..models.llm_descriptors import generate_descriptors

    progress(0, 1, f"asking {req.config.endpoint()}")
    got = generate_descriptors(req.class_name, req.modality, req.config, req.n, req.cache)
    progress(1, 1, "done")
    return DescriptorsResult(req.class_name, got, Provenance(__version__, extra={
        "method": "language model descriptors", "llm": req.config.to_dict(), "modality": req.modality}))
