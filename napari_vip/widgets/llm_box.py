"""The "Generate with language model" rows of the VIP prompts dock: endpoint fields and the worker job.

The request is a :class:`~napari_vip.worker.concepts.DescriptorsRequest` run in the worker like every job; the
answer goes to ``on_descriptors(class_name, descriptors)``.  The API key is read from the environment variable
named in the form, never stored.
"""

from __future__ import annotations

from collections.abc import Callable

from qtpy.QtWidgets import QFormLayout, QLineEdit, QPushButton, QWidget

from .status_text import warning_html

IDLE_TEXT = "Generate with language model"


class LlmBox(QWidget):
    """Endpoint URL, model name, key variable and the generate button.

    Parameters
    ----------
    bridge : WorkerBridge
    status : QLabel
        The dock's status line.
    finding : callable
        ``finding() -> str or None``: the finding to describe.
    modality : callable
        ``modality() -> str``.
    on_descriptors : callable
        ``on_descriptors(class_name, descriptors)`` with the answer.
    """

    def __init__(self, bridge, status, finding: Callable, modality: Callable, on_descriptors: Callable, parent=None):
        super().__init__(parent)
        from ..models.llm_descriptors import LlmConfig

        self.bridge, self.status = bridge, status
        self._finding, self._modality, self._on_descriptors = finding, modality, on_descriptors
        self.job: int | None = None
        env = LlmConfig.from_env()
        self.url = QLineEdit(env.url)
        self.url.setPlaceholderText("http://localhost:8080/v1 (OpenAI-compatible)")
        self.model = QLineEdit(env.model)
        self.key_env = QLineEdit(env.key_env)
        self.button = QPushButton(IDLE_TEXT)
        self.button.clicked.connect(self.generate)
        for w in (self.url, self.model):
            w.textChanged.connect(self.update_tooltip)
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("LM URL", self.url)
        form.addRow("LM model", self.model)
        form.addRow("key variable", self.key_env)
        form.addRow(self.button)
        self.update_tooltip()

    def config(self):
        """The :class:`~napari_vip.models.llm_descriptors.LlmConfig` of the fields."""
        from ..models.llm_descriptors import LlmConfig

        return LlmConfig(self.url.text().strip(), self.model.text().strip(), self.key_env.text().strip())

    def update_tooltip(self) -> None:
        why = self.config().problem()
        self.button.setToolTip(why or f"Ask {self.config().endpoint()} for visual descriptors of the selected "
                                      "finding (cached in your library).")

    @property
    def busy(self) -> bool:
        return self.job is not None

    def generate(self) -> bool:
        """Ask the language model (in the worker) about the selected finding; returns whether it started."""
        from ..worker.concepts import DescriptorsRequest

        config = self.config()
        why = config.problem()
        name = self._finding()
        if why is None and name is None:
            why = "Select a finding to describe first."
        if why is None and self.busy:
            why = "A language model request is already running."
        if why:
            self.status.setText(warning_html(why))
            self.button.setToolTip(why)
            return False
        req = DescriptorsRequest(class_name=name, modality=self._modality(), config=config)
        self.job = self.bridge.submit(req, "VIP prompts: language model", self._done, self._failed, channel="llm")
        self.button.setEnabled(False)
        self.button.setText("Generating…")
        self.status.setText(f"Asking {config.endpoint()} about {name!r}…")
        return True

    def _finished(self) -> None:
        self.job = None
        self.button.setEnabled(True)
        self.button.setText(IDLE_TEXT)

    def _done(self, result) -> None:
        self._finished()
        self._on_descriptors(result.class_name, result.descriptors)

    def _failed(self, failed) -> None:
        self._finished()
        if failed.kind != "stale":
            self.status.setText(warning_html(failed.message if failed.kind == "input"
                                             else f"The language model request failed: {failed.message}"))
