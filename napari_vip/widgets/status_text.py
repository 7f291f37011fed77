"""Rich text for the docks' status lines: warnings, errors, the untrained-model flag, failed jobs."""

from __future__ import annotations

from .worker_bridge import notify_failure

WARNING_COLOR = "#e8a33d"
ERROR_COLOR = "#d9534f"
#: Leads a result's status line when the model had random weights.
UNTRAINED_RESULT = f"<b style='color:{WARNING_COLOR}'>UNTRAINED model: random weights.</b> "


def warning_html(text) -> str:
    """``text`` in the warning colour (input problems the user can fix)."""
    return f"<span style='color:{WARNING_COLOR}'>{text}</span>"


def error_html(text) -> str:
    """``text`` in the error colour (the worker died)."""
    return f"<span style='color:{ERROR_COLOR}'>{text}</span>"


def untrained_prefix(untrained: bool) -> str:
    """:data:`UNTRAINED_RESULT` for a result of an untrained model, else ``""``."""
    return UNTRAINED_RESULT if untrained else ""


def show_failure(label, failed) -> None:
    """Put a failed job's message on ``label`` (not for a stale job) and notify the user.

    Parameters
    ----------
    label : QLabel
        The dock's status line.
    failed : napari_vip.worker.protocol.Failed
    """
    if failed.kind != "stale":
        label.setText(warning_html(failed.message))
    notify_failure(failed)
