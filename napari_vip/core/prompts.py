"""Text prompts for zero-shot classification with visual markers (Denner et al., MIDL 2025).

The default prompt is ``"A chest x-ray with signs of {c}{suffix}."``; the modality phrase is
editable and the marker suffix (``" indicated by a red circle"``) follows the marker's style and colour.
"""

from __future__ import annotations

import string

from .errors import VipInputError

DEFAULT_MODALITY = "chest x-ray"
MODALITIES = ("chest x-ray", "fundus photograph", "dermoscopy image", "CT slice", "MR slice", "ultrasound image",
              "histology image")
#: ``{modality}`` is filled first; ``{c}`` is the class and ``{suffix}`` the marker phrase.
DEFAULT_TEMPLATE = "A {modality} with signs of {c}{suffix}."
#: Candidate findings a dock starts with, per modality (the chest x-ray ones for any other).
DEFAULT_FINDINGS = {"fundus photograph": ["diabetic retinopathy", "glaucoma", "normal"],
                    "chest x-ray": ["pneumonia", "normal"]}

#: Marker phrase per style; styles not listed (none, crop) add nothing.
SUFFIXES = {
    "arrow": " indicated by a {color} arrow",
    "bbox": " indicated by a {color} bounding box",
    "circle": " indicated by a {color} circle",
}


def marker_suffix(style: str, color: str = "red", enabled: bool = True) -> str:
    """The phrase appended to the class for a marker, e.g. ``" indicated by a red circle"``."""
    if not enabled or style not in SUFFIXES:
        return ""
    return SUFFIXES[style].format(color=color)


def check_template_fields(template: str, kind: str, allowed, required: str | None = None,
                          meaning: str = "") -> None:
    """Refuse a format-string template that does not parse, lacks its required field or has unknown ones.

    Parameters
    ----------
    template : str
        A :meth:`str.format` template.
    kind : str
        What the template is for, starting the message (``"Prompt"``, ``"Concept"``, ``"Region"``).
    allowed : sequence of str
        The field names it may use, in the order the message lists them.
    required : str, optional
        A field it must use, and ``meaning``: what goes there (``"the class name"``).

    Raises
    ------
    VipInputError
        Saying what is wrong and which fields to use.
    """
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as exc:
        raise VipInputError(f"{kind} template {template!r} is not a valid format string: {exc}.") from None
    if required is not None and required not in fields:
        raise VipInputError(f"{kind} template {template!r} needs a {{{required}}} where {meaning} goes.")
    unknown = fields - set(allowed)
    if unknown:
        raise VipInputError(f"{kind} template {template!r} has unknown field(s) {sorted(unknown)}; "
                            f"use {', '.join('{' + f + '}' for f in allowed)}.")


def check_template(template: str) -> None:
    """Refuse a template without ``{c}`` or with fields other than ``c``, ``suffix``, ``modality``."""
    check_template_fields(template, "Prompt", ("c", "suffix", "modality"), "c", "the class name")


def with_suffix_field(template: str, suffix: str) -> str:
    """``template`` with a ``{suffix}`` field before its final full stop (at its end without one) when it has
    none and there is a ``suffix`` to place."""
    if "{suffix}" in template or not suffix:
        return template
    t = template.rstrip()
    return t[:-1] + "{suffix}." if t.endswith(".") else t + "{suffix}"


def build_prompt(class_name: str, suffix: str = "", template: str = DEFAULT_TEMPLATE,
                 modality: str = DEFAULT_MODALITY) -> str:
    """Fill the template.  A template without ``{suffix}`` gets the suffix before its final full stop."""
    check_template(template)
    return with_suffix_field(template, suffix).format(c=class_name, suffix=suffix, modality=modality)


def check_classes(classes) -> list[str]:
    """Strip names, drop blank lines; refuse fewer than one class and duplicates (case-insensitive)."""
    names = [str(c).strip() for c in classes]
    names = [c for c in names if c]
    if not names:
        raise VipInputError("No classes given; type the candidate findings, one per line (e.g. pneumonia, normal).")
    seen: dict[str, str] = {}
    dups = []
    for c in names:
        key = c.casefold()
        if key in seen:
            dups.append(c)
        seen[key] = c
    if dups:
        raise VipInputError(f"Duplicate class name(s): {', '.join(sorted(set(dups)))}; give each finding once.")
    return names
