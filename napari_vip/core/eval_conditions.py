"""Named evaluation conditions: what the model sees (a marker style or none) and whether the prompts carry the
marker phrase.

The paper's eight (Denner et al., MIDL 2025) are ``none``, ``crop``, ``bbox``, ``bbox+text``, ``circle``,
``circle+text``, ``arrow``, ``arrow+text``; ``text-only`` is the image without a marker with the marker phrase
of ``text_style`` in the prompts.  Every condition is drawn in one colour and line width.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import VipInputError
from .markers import Marker
from .prompts import marker_suffix

PAPER_CONDITIONS = ("none", "crop", "bbox", "bbox+text", "circle", "circle+text", "arrow", "arrow+text")
CONDITIONS = PAPER_CONDITIONS + ("text-only",)


@dataclass(frozen=True)
class Condition:
    """One evaluation condition.

    Attributes
    ----------
    name : str
        As given (one of :data:`CONDITIONS`).
    style : str
        Marker drawn on the image: ``none``, ``crop``, ``bbox``, ``circle`` or ``arrow``.
    text_style : str or None
        Style whose marker phrase the prompts carry (``None``: no phrase).
    color : str
    line_width : int
    """

    name: str
    style: str
    text_style: str | None
    color: str = "red"
    line_width: int = 1

    @property
    def needs_box(self) -> bool:
        return self.style != "none"

    def marker(self, box_xyxy) -> Marker | None:
        """The marker for a sample's ``(x0, y0, x1, y1)`` box, ``None`` for an unmarked image."""
        if self.style == "none":
            return None
        return Marker(tuple(float(v) for v in box_xyxy), self.style, self.color, int(self.line_width))

    def render_key(self) -> str:
        """What decides the rendered image besides the sample: equal for conditions that differ only in text."""
        return "none" if self.style == "none" else f"{self.style}/{self.color}/{int(self.line_width)}"

    def suffix(self) -> str:
        """The marker phrase of the prompts, e.g. ``" indicated by a red circle"``."""
        return marker_suffix(self.text_style, self.color) if self.text_style else ""

    def to_dict(self) -> dict:
        return {"name": self.name, "marker": self.style, "marker_text": self.suffix(), "color": self.color,
                "line_width": int(self.line_width)}


def parse_conditions(names, color: str = "red", line_width: int = 1, text_style: str = "circle") -> list[Condition]:
    """:class:`Condition` per name, in the given order; ``none`` is added first when missing (it is the
    reference of the paired differences).

    Raises
    ------
    VipInputError
        An unknown or repeated name.
    """
    names = [str(n).strip() for n in names if str(n).strip()]
    unknown = [n for n in names if n not in CONDITIONS]
    if unknown:
        raise VipInputError(f"Unknown condition(s) {unknown}; choose from {', '.join(CONDITIONS)}.")
    if len(set(names)) != len(names):
        raise VipInputError(f"Condition(s) given twice: {sorted({n for n in names if names.count(n) > 1})}.")
    Marker((0, 0, 1, 1), "bbox", color, line_width)  # refuses a bad colour or width
    if "none" not in names:
        names = ["none"] + names
    out = []
    for n in names:
        if n == "text-only":
            out.append(Condition(n, "none", text_style, color, line_width))
        else:
            style, _, text = n.partition("+")
            out.append(Condition(n, style, style if text else None, color, line_width))
    return out
