"""Zero-shot classification with visual markers: the request, the result and the handler."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import __version__
from ..core.markers import Marker
from ..core.prompts import DEFAULT_MODALITY, DEFAULT_TEMPLATE, SUFFIXES, build_prompt, check_classes, marker_suffix
from ..core.recipes import GUI_RECIPE, recipe_provenance, render
from ..models.spec import ModelSpec
from .engine import handles
from .learned_prompts import learned_class_features
from .protocol import Provenance


@dataclass
class ClassifyRequest:
    """Classify one image without a marker and with each marker.

    Attributes
    ----------
    image_rgb : np.ndarray
        ``(H, W, 3)`` uint8, the windowed plane the user sees (:func:`napari_vip.core.image.to_model_rgb`).
    markers : list of Marker
        Each is rendered on its own copy of the image and classified as one condition.
    classes : list of str
    template, modality : str
        See :mod:`napari_vip.core.prompts`.
    marker_text : tuple of str
        Styles whose marker phrase (" indicated by a red circle") is appended to the prompts.
    include_baseline : bool
        Also classify the image without a marker (condition ``none``).
    recipe : str
        How ``image_rgb`` was made and markers are drawn (:mod:`napari_vip.core.recipes`): ``image_rgb`` is
        :func:`~napari_vip.core.recipes.model_rgb` of the stored plane under this recipe.
    notes : list of str
        What the front-end noticed about the image (non-finite pixels, the plane of a stack); the result's notes
        start with them, then one per marker clipped to the image.
    """

    image_rgb: np.ndarray
    markers: list[Marker]
    classes: list[str]
    model: ModelSpec
    template: str = DEFAULT_TEMPLATE
    modality: str = DEFAULT_MODALITY
    marker_text: tuple[str, ...] = tuple(SUFFIXES)
    include_baseline: bool = True
    device: str = "auto"
    #: A learned-prompts file (``napari-vip learn``): class scores come from it instead of zero-shot prompts.
    prompts_path: str | None = None
    recipe: str = GUI_RECIPE
    notes: list[str] = field(default_factory=list)


@dataclass
class ConditionResult:
    """One condition: the baseline (``marker=None``) or one marker."""

    name: str
    marker: Marker | None
    prompts: list[str]
    probabilities: np.ndarray  # (C,) float64, sums to 1

    def to_dict(self, classes) -> dict:
        return {"condition": self.name, "marker": self.marker.to_dict() if self.marker else None,
                "prompts": list(self.prompts),
                "probabilities": {c: float(p) for c, p in zip(classes, self.probabilities)}}


@dataclass
class ClassifyResult:
    classes: list[str]
    conditions: list[ConditionResult]
    provenance: Provenance
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"classes": list(self.classes), "conditions": [c.to_dict(self.classes) for c in self.conditions],
                "provenance": self.provenance.to_dict(), "untrained": self.provenance.untrained,
                "notes": list(self.notes)}


def with_clipped_markers(req):
    """``(request, notes)``: ``req`` with its markers clipped to its image, and the notes its result starts with
    (the request's own, then one per clipped marker).  Raises VipInputError for a marker of zero area or wholly
    outside the image.  Every request with markers goes through here once, in its handler."""
    from dataclasses import replace

    from ..core.markers import clip_markers

    markers, clip_notes = clip_markers(req.markers, np.asarray(req.image_rgb).shape[:2])
    return replace(req, markers=markers), list(req.notes) + clip_notes


def condition_name(index: int, marker: Marker) -> str:
    """``"1: circle"``: the marker's number (from 1) and style."""
    return f"{index + 1}: {marker.style}"


def marker_conditions(req, task: str = "classify") -> list[tuple[str, Marker | None]]:
    """``(name, marker)`` per condition: the baseline ``("none", None)`` first, then each marker.

    Parameters
    ----------
    req : ClassifyRequest or a request with ``markers`` and ``include_baseline``
        (attention, concept classification).
    task : str
        The verb of the message when there is no condition ("Nothing to classify: ...").

    Raises
    ------
    VipInputError
        No marker and no baseline.
    """
    conditions: list[tuple[str, Marker | None]] = [("none", None)] if req.include_baseline else []
    conditions += [(condition_name(i, m), m) for i, m in enumerate(req.markers)]
    if not conditions:
        from ..core.errors import VipInputError

        raise VipInputError(f"Nothing to {task}: draw a marker or include the no-marker baseline.")
    return conditions


def condition_suffix(req, marker: Marker | None) -> str:
    """The marker phrase of a condition's prompts: ``""`` for the baseline or a style not in
    ``req.marker_text``."""
    return marker_suffix(marker.style, marker.color, marker.style in req.marker_text) if marker else ""


def rendered_images(req, conditions, progress, first_step: int = 2) -> list[np.ndarray]:
    """What the model sees for each condition under ``req.recipe`` (see :func:`napari_vip.core.recipes.render`).

    ``req.image_rgb`` is rendered once per condition; ``progress(first_step + k, len(conditions) +
    first_step, ...)`` follows each render.
    """
    images = []
    total = len(conditions) + first_step
    for k, (_, marker) in enumerate(conditions):
        images.append(render(req.image_rgb, marker, req.recipe))
        progress(first_step + k, total, f"rendered {k + 1}/{len(conditions)}")
    return images


def embedded_conditions(engine, req, progress):
    """Load the model, render every condition and embed the renders as one batch.

    Returns
    -------
    clip : ClipModel
    conditions : list of (str, Marker or None)
        See :func:`marker_conditions`.
    image_features : torch.Tensor
        ``(K, D)`` L2-normalised, one row per condition.
    total : int
        The number of progress steps (the caller reports the last one).
    """
    conditions = marker_conditions(req)
    total = len(conditions) + 2
    progress(0, total, "loading model")
    clip = engine.clip(req.model, req.device, progress)
    progress(1, total, "rendering markers")
    return clip, conditions, clip.encode_images(rendered_images(req, conditions, progress)), total


@handles(ClassifyRequest)
def classify(engine, req: ClassifyRequest, progress) -> ClassifyResult:
    req, notes = with_clipped_markers(req)
    if req.prompts_path:
        result = classify_with_prompts(engine, req, progress)
        result.notes[:0] = notes
        return result
    classes = check_classes(req.classes)
    clip, conditions, img, total = embedded_conditions(engine, req, progress)
    results = []
    for k, (name, marker) in enumerate(conditions):
        prompts = [build_prompt(c, condition_suffix(req, marker), req.template, req.modality) for c in classes]
        probs = clip.probabilities(img[k:k + 1], clip.encode_texts(prompts))[0]
        results.append(ConditionResult(name, marker, prompts, probs))
    progress(total, total, "done")
    prov = Provenance(__version__, **clip.provenance(), extra={"template": req.template, "modality": req.modality,
                                                               "marker_text": list(req.marker_text),
                                                               **recipe_provenance(req.recipe)})
    return ClassifyResult(classes, results, prov, notes)


def classify_with_prompts(engine, req, progress):
    """Serve a :class:`ClassifyRequest` whose ``prompts_path`` is set.

    Markers are rendered as usual; every condition is scored against the learned class embeddings
    (the classes are the file's; ``req.classes``, template and marker text do not apply).
    """
    clip = engine.clip(req.model, req.device, progress)  # a mismatched prompts file is refused before any work
    prompts, feats = learned_class_features(engine, clip, req.prompts_path)
    notes = prompts.check_model(clip)
    given = [c.strip() for c in (req.classes or []) if str(c).strip()]
    if given and [c.casefold() for c in given] != [c.casefold() for c in prompts.classes]:
        notes.append(f"classes come from the learned prompts ({', '.join(prompts.classes)}), not from the "
                     f"request ({', '.join(given)})")
    clip, conditions, img, total = embedded_conditions(engine, req, progress)  # the model is cached by now
    probs = clip.probabilities(img, feats)
    label = [f"learned {prompts.method} prompt: {c}" for c in prompts.classes]
    results = [ConditionResult(name, marker, list(label), probs[k]) for k, (name, marker) in enumerate(conditions)]
    progress(total, total, "done")
    prov = Provenance(__version__, **clip.provenance(), extra={"learned_prompts": {
        "path": req.prompts_path, **prompts.summary()}, **recipe_provenance(req.recipe)})
    return ClassifyResult(list(prompts.classes), results, prov, notes)
