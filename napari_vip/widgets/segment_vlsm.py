"""The segment dock's VLSM row: "Text → mask" with CLIPSeg / BiomedCLIPSeg / a fine-tuned folder beside the
similarity map -> SAM route; prompts typed or picked from the medvlsm ladder of the current candidate or box.

The VLSM's mask comes back as a :class:`~napari_vip.worker.vlsm.VlsmSegmentResult`; its ``segment`` becomes the
dock's candidate exactly like SAM's (commit, undo, annotations), its probability map goes to "VIP text heatmap".
"""

from __future__ import annotations

import numpy as np
from qtpy.QtWidgets import QCheckBox, QComboBox, QFormLayout, QLineEdit, QWidget

from ..core.errors import VipInputError
from ..layers import MARKERS_LAYER, plane_index
from . import segment_layers
from .form_rows import button, hbox

SIMILARITY = "similarity map → SAM"
#: Method choice -> VLSM family (``None``: today's CLIP similarity -> SAM route).
METHODS = {SIMILARITY: None, "CLIPSeg": "clipseg", "BiomedCLIPSeg": "biomedclipseg",
           "BiomedCLIPSeg-D": "biomedclipseg-d"}


class VlsmRow(QWidget):
    """Method, weights, Refine with SAM and the prompt ladder, inside the dock's text-to-mask box.

    Parameters
    ----------
    dock : SegmentWidget
        Gives the image, the SAM choice, the phrase box, the bridge and ``_on_result`` / ``_on_error``.
    """

    def __init__(self, dock, parent=None):
        super().__init__(parent)
        self.dock = dock
        self.method = QComboBox()
        self.method.addItems(list(METHODS))
        self.source = QLineEdit()
        self.source.setPlaceholderText("folder, .safetensors, finetune output or CIDAS/clipseg-rd64-refined")
        self.untrained = QCheckBox("random weights (untrained, to try the workflow)")
        self.refine = QCheckBox("Refine with SAM (the mask's box and logits)")
        self.class_name = QLineEdit("polyp")
        self.ladder = QComboBox()
        self.ladder.setToolTip("medvlsm's prompts p1..p9 for the current candidate (or the box)")
        self.ladder.activated.connect(self._use_ladder_entry)
        self.ladder_btn = button("Ladder", self.fill_ladder)
        lay = QFormLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addRow("method", self.method)
        lay.addRow("weights", self.source)
        lay.addRow(self.untrained)
        lay.addRow(self.refine)
        lay.addRow("class", hbox(self.class_name, self.ladder_btn))
        lay.addRow("ladder", self.ladder)
        self.method.currentTextChanged.connect(self._sync)
        self._sync()

    def _sync(self, *_):
        vlsm = self.active()
        for w in (self.source, self.untrained, self.refine):
            w.setEnabled(vlsm)
        clip = getattr(self.dock, "clip_model", None)
        if clip is not None:  # the CLIP picker belongs to the similarity route
            clip.setVisible(not vlsm)

    def active(self) -> bool:
        """Whether "Text → mask" goes to a VLSM (else the similarity map -> SAM route)."""
        return METHODS[self.method.currentText()] is not None

    def spec(self):
        """The :class:`~napari_vip.models.vlsm.VlsmSpec` chosen (the family's hub id when no weights are given)."""
        from ..models.vlsm import VlsmSpec
        from ..models.vlsm.spec import DEFAULT_SOURCES

        family = METHODS[self.method.currentText()]
        picker = getattr(self.dock, "model", None)  # the dock's device row: its precision too
        precision = picker.precision.currentText() if hasattr(picker, "precision") else "auto"
        if self.untrained.isChecked():
            return VlsmSpec(family, untrained=True, precision=precision)
        return VlsmSpec(family, source=self.source.text().strip() or DEFAULT_SOURCES[family], precision=precision)

    # -- the ladder ----------------------------------------------------------------------------------------------
    def _region(self, hw) -> np.ndarray | None:
        """The current candidate's mask, else the selected/newest box as a mask, on a plane of shape ``hw``."""
        result = self.dock.last_result
        if result is not None and tuple(result.masks.shape[2:]) == tuple(hw):
            return result.masks[0, self.dock.session.shown_candidate()]
        if MARKERS_LAYER in self.dock.viewer.layers and len(self.dock.viewer.layers[MARKERS_LAYER].data):
            layer = self.dock.image_layer()
            idx = self.dock._box_index if self.dock._box_index is not None else -1
            x0, y0, x1, y1 = segment_layers.marker_box(self.dock.viewer, layer,
                                                      idx % len(self.dock.viewer.layers[MARKERS_LAYER].data))
            mask = np.zeros(hw, bool)
            mask[max(int(round(y0)), 0):int(round(y1)) + 1, max(int(round(x0)), 0):int(round(x1)) + 1] = True
            return mask
        return None

    def fill_ladder(self) -> dict | None:
        """medvlsm's prompt ladder (p1..p9) of the current candidate or box, offered in the ladder box."""
        from ..core.prompt_ladder import prompt_ladder

        try:
            image, _, _, _ = self.dock.model_image()
            region = self._region(image.rgb.shape[:2])
            if region is None or not region.any():
                raise VipInputError("The ladder describes a region: segment or draw a box first.")
            ladder = prompt_ladder(image.rgb, region, self.class_name.text().strip() or "lesion",
                                   missing_definition="omit")
        except VipInputError as exc:
            self.dock._warn(str(exc))
            return None
        self.ladder.clear()
        for key, value in ladder.items():
            for text in (value if isinstance(value, list) else [value]):
                if text:
                    self.ladder.addItem(f"{key}: {text}", text)
        return ladder

    def _use_ladder_entry(self, index: int) -> None:
        text = self.ladder.itemData(index)
        if text:
            self.dock.text.setText(text)

    # -- text -> mask ----------------------------------------------------------------------------------------------
    def submit(self) -> int | None:
        """Send the phrase to the chosen VLSM (Refine with SAM: through the dock's SAM)."""
        from ..worker.vlsm import VlsmSegmentRequest

        dock = self.dock
        try:
            layer = dock.image_layer()
            image, sig, window, invert = dock.model_image(layer)
            text = dock.text.text().strip()
            if not text:
                raise VipInputError("Type a phrase first (or pick one from the ladder), e.g. 'one small polyp'.")
            try:
                sam = dock.model.spec()
            except VipInputError:
                if self.refine.isChecked():
                    raise
                sam = None
            req = VlsmSegmentRequest(image.rgb, text, self.spec(), refine_sam=self.refine.isChecked(), sam=sam,
                                     window=window, invert=invert, image_sig=sig, device=dock.model.device_name())
        except VipInputError as exc:
            dock._warn(str(exc))
            return None
        dock._request_plane = plane_index(layer, dock.viewer.dims)
        return dock.bridge.submit(req, "VIP VLSM text to mask", self._on_result, dock._on_error,
                                  channel="segment-decode")

    def _on_result(self, result) -> None:
        dock = self.dock
        layer = dock.image_layer(required=False)
        if layer is not None:
            with dock._quiet():
                segment_layers.show_heatmap(dock.viewer, result.prob, layer)
        dock._on_result(result.segment, text_result=result)
        vlsm = result.steps[0]
        head = f"{vlsm['family']} ({vlsm['method']}): {int(result.vlsm_mask.sum())} px"
        if result.refined:
            head += ", refined by SAM"
        warn = "<b style='color:#e8a33d'>UNTRAINED VLSM.</b> " if vlsm.get("untrained") else ""
        dock.status.setText(f"{warn}{head}. {dock.status.text()}")
