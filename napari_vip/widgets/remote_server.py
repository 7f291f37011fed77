"""The "remote server…" device: a model server's URL (remembered) and token (kept in memory) for the docks.

Choosing it in a dock's device box asks for the URL and the token (typed, or read from a file the user picks);
the URL is remembered in ``remote_server.json`` in the project's config folder, the token never leaves memory
and is never logged.  The viewer's :class:`~napari_vip.widgets.worker_bridge.WorkerBridge` sends requests whose
device is :data:`REMOTE_DEVICE` to the server.
"""

from __future__ import annotations

import json

from qtpy.QtWidgets import QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QLineEdit

from .form_rows import browse_row

#: The device-box entry that sends requests to a model server.
REMOTE_DEVICE = "remote server…"


class RemoteSettings:
    """The chosen server: ``url`` (saved to the config folder) and ``token`` (memory only)."""

    def __init__(self):
        self.url = self._load_url()
        self.token: str | None = None

    @staticmethod
    def _path():
        from ..core.symptoms import user_config_dir

        return user_config_dir() / "remote_server.json"

    def _load_url(self) -> str:
        try:
            return str(json.loads(self._path().read_text(encoding="utf-8")).get("url", ""))
        except (OSError, ValueError, AttributeError):
            return ""

    def set(self, url: str, token: str | None) -> None:
        self.url, self.token = url.strip().rstrip("/"), (token or None)
        try:
            path = self._path()
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"url": self.url}), encoding="utf-8")
        except OSError:
            pass  # remembering the URL is a convenience

    def __repr__(self) -> str:
        return f"RemoteSettings(url={self.url!r})"


#: One server choice per GUI process, shared by the docks.
SETTINGS = RemoteSettings()


class RemoteServerDialog(QDialog):
    """Asks for the server URL and its token (typed or from a file)."""

    def __init__(self, settings: RemoteSettings = SETTINGS, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Remote model server")
        self.settings = settings
        self.url = QLineEdit(settings.url)
        self.url.setPlaceholderText("https://gpu-server:8765")
        self.token = QLineEdit(settings.token or "")
        self.token.setEchoMode(QLineEdit.EchoMode.Password)
        self.token.setPlaceholderText("token (or read it from a file)")
        form = QFormLayout(self)
        form.addRow("URL", self.url)
        form.addRow("token", browse_row(self.token, self._token_from_file))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def _token_from_file(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self, "Token file")
        if name:
            from ..serve.token import read_token

            self.token.setText(read_token(name) or "")

    def accept(self) -> None:
        self.settings.set(self.url.text(), self.token.text().strip())
        super().accept()


def ask_when_chosen(combo, settings: RemoteSettings = SETTINGS) -> None:
    """Open :class:`RemoteServerDialog` when ``combo`` switches to :data:`REMOTE_DEVICE`; back to the first
    entry if the user cancels."""

    def on_change(text: str) -> None:
        if text == REMOTE_DEVICE and RemoteServerDialog(settings, combo).exec() != QDialog.DialogCode.Accepted:
            combo.setCurrentIndex(0)

    combo.currentTextChanged.connect(on_change)


def device_combo() -> QComboBox:
    """A combo box of the devices a model may run on (:data:`napari_vip.models.device.DEVICES`) and
    :data:`REMOTE_DEVICE` (a model server; choosing it asks for the server's address)."""
    from ..models.device import DEVICES

    combo = QComboBox()
    combo.addItems([*DEVICES, REMOTE_DEVICE])
    ask_when_chosen(combo)
    return combo
