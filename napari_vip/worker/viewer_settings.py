"""What the docks of one viewer share: findings, modality, prompt template, marker look and the CLIP model.

Qt-free.  One :class:`ViewerSettings` lives beside each viewer's worker bridge; the classify dock writes it as
the user edits its fields (:meth:`ViewerSettings.update`) and docks that follow it (attention) read it, so no
dock reaches into another.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..core.markers import COLORS
from ..core.prompts import DEFAULT_FINDINGS, DEFAULT_MODALITY, DEFAULT_TEMPLATE, SUFFIXES


@dataclass
class ViewerSettings:
    """Shared settings; ``source`` names the dock that last wrote them (``None``: the defaults).

    Attributes
    ----------
    findings : list of str
    modality, template : str
    marker_text : tuple of str
        Styles whose marker phrase goes into the prompts.
    line_width : int
        Marker line width in pixels of the 256x256 render.
    color : str
        Default marker colour (a name of :data:`napari_vip.core.markers.COLORS`).
    model : ModelSpec or None
        The CLIP model chosen (``None`` while the choice is incomplete); ``device`` its device.
    """

    findings: list[str] = field(default_factory=lambda: list(DEFAULT_FINDINGS[DEFAULT_MODALITY]))
    modality: str = DEFAULT_MODALITY
    template: str = DEFAULT_TEMPLATE
    marker_text: tuple[str, ...] = tuple(SUFFIXES)
    line_width: int = 1
    color: str = "red"
    model: object | None = None
    device: str = "auto"
    source: str | None = None
    _listeners: list[Callable] = field(default_factory=list, repr=False)

    def update(self, source: str, **changes) -> None:
        """Set ``changes`` (field names) as written by ``source``; listeners are called once afterwards."""
        for name, value in changes.items():
            if name.startswith("_") or name not in self.__dataclass_fields__:
                raise AttributeError(f"ViewerSettings has no field {name!r}")
            setattr(self, name, value)
        if self.color not in COLORS:
            self.color = "red"
        self.source = source
        for ref in list(self._listeners):
            listener = ref()
            if listener is None:
                self._listeners.remove(ref)
            else:
                listener(self)

    def connect(self, listener: Callable) -> None:
        """Call ``listener(settings)`` after every :meth:`update`.  A bound method is held weakly, so a closed
        dock is not kept alive (nor called) by the settings."""
        import weakref

        self._listeners.append(weakref.WeakMethod(listener) if hasattr(listener, "__self__")
                               else (lambda listener=listener: listener))
