"""Whether a dock is in front of the user, and a call when its tab is brought forward.

Docks start work by themselves (embeddings, segmenting a new box) only when the user can see them, so a
background tab does not fill the worker while the user works in another dock.
"""

from __future__ import annotations


def in_view(widget) -> bool:
    """Whether the user can see ``widget``: True when it is not in a shown window (scripts, tests)."""
    window = widget.window()
    if window is widget or not window.isVisible():
        return True
    return widget.isVisible() and not widget.visibleRegion().isEmpty()  # a covered tab has no visible region


def enclosing_dock(widget):
    """The ``QDockWidget`` that holds ``widget``, or None."""
    from qtpy.QtWidgets import QDockWidget

    dock = widget.parentWidget()
    while dock is not None and not isinstance(dock, QDockWidget):
        dock = dock.parentWidget()
    return dock
