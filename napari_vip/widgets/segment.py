"""The "VIP segment" dock: SAM/MedSAM masks from boxes (markers) and clicks, committed as annotations.

Layers it uses (made over the image when missing):

- "VIP markers" (Shapes): drag a rectangle or ellipse; its bounding box is the SAM box.  A new or moved
  shape segments at once; "Segment all markers" decodes every marker as one batch.
- "VIP clicks" (Points): positive (green) / negative (red) clicks refine the current object.
- "VIP current mask" (Labels, contour): the candidate; cycle SAM's candidates with "Next candidate" (Shift-N).
- "VIP annotations" (Labels, the image's full shape): committed objects, a new id each (Shift-C commits,
  Shift-U undoes the last commit, Shift-X clears the candidate and clicks).
- "VIP text heatmap" (Image): the patch-text similarity map of a typed phrase ("Text → mask"), whose best
  region gave the box and positive points of the candidate.

Everything model-side runs in the worker (``bridge_for(viewer)``); the embedding of the plane in view is
requested as soon as the image or slice changes, and again (debounced) when the contrast changes.
"""

from __future__ import annotations

import time
import weakref

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLabel,
                            QLineEdit, QPushButton, QVBoxLayout, QWidget)

from ..core.annotations import AnnotationStore
from ..core.coords import box_xyxy_from_vertices_rc, rc_to_xy
from ..core.errors import VipInputError
from ..layers import MARKERS_LAYER, _to_image_rc, display_window, ensure_markers_layer, model_input
from ..models.embedding_cache import image_signature
from ..models.sam import SAM_ARCHS, SamSpec
from ..worker.segment import SegmentEmbedRequest, SegmentRequest, TextSegmentRequest, check_prompts
from .form_rows import browse_row, device_combo, warning_label
from .layer_choice import ImageLayerChooser
from .status_text import warning_html
from .worker_bridge import bridge_for, notify_failure

CLICKS_LAYER = "VIP clicks"
HEATMAP_LAYER = "VIP text heatmap"
CURRENT_LAYER = "VIP current mask"
ANNOTATIONS_LAYER = "VIP annotations"
SAM_SOURCES = ("untrained (random weights)", "checkpoint file")
POSITIVE_COLOR = (0.1, 0.85, 0.2, 1.0)
NEGATIVE_COLOR = (0.95, 0.15, 0.15, 1.0)
UNTRAINED_WARNING = ("<b style='color:#e8a33d'>Untrained SAM: random weights.</b> Masks only show the "
                     "workflow.")


class SamPicker(QWidget):
    """Chooses a :class:`SamSpec`: checkpoint file or untrained, architecture, MedSAM, device."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.source = QComboBox()
        self.source.addItems(SAM_SOURCES)
        self.arch = QComboBox()
        self.arch.setEditable(True)  # a .json config of a custom SAM also works
        self.arch.addItems(SAM_ARCHS)
        self.path = QLineEdit()
        self.path.setPlaceholderText("sam_vit_b_01ec64.pth / medsam_vit_b.pth")
        self.medsam = QCheckBox("MedSAM (its own normalisation)")
        self.device = device_combo()
        self.warning = warning_label(UNTRAINED_WARNING)
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("weights", self.source)
        form.addRow("architecture", self.arch)
        form.addRow("checkpoint", browse_row(self.path, self._browse))
        form.addRow("", self.medsam)
        form.addRow("device", self.device)
        form.addRow(self.warning)
        self.source.currentTextChanged.connect(self._on_source)
        self._on_source(self.source.currentText())

    def _browse(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self, "SAM / MedSAM checkpoint", "",
                                              "Checkpoints (*.pth *.pt *.bin *.safetensors)")
        if name:
            self.path.setText(name)
            self.source.setCurrentText("checkpoint file")
            if "medsam" in name.lower():
                self.medsam.setChecked(True)

    def _on_source(self, source: str) -> None:
        self.path.setEnabled(source == "checkpoint file")
        self.warning.setVisible(source.startswith("untrained"))

    def set_untrained(self, arch: str = "vit_b") -> None:
        self.source.setCurrentText(SAM_SOURCES[0])
        self.arch.setCurrentText(arch)

    def spec(self) -> SamSpec:
        """The chosen spec; raises VipInputError for an incomplete choice."""
        arch = self.arch.currentText().strip()
        if self.source.currentText() == "checkpoint file":
            return SamSpec(arch, checkpoint=self.path.text().strip() or None, medsam=self.medsam.isChecked())
        return SamSpec(arch, untrained=True, medsam=self.medsam.isChecked())

    def device_name(self) -> str:
        return self.device.currentText()


class SegmentWidget(QWidget):
    """Dock: box (marker) and clicks -> SAM candidate -> commit to "VIP annotations".

    Attributes
    ----------
    store : AnnotationStore or None
        The committed objects of the current image (its ``labels`` is the annotations layer's data).
    last_result : SegmentResult or None
    last_latency_ms : float or None
        From the prompt change (box added, click) to the candidate shown, for the last decode.
    """

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.bridge = bridge_for(napari_viewer)
        self.store: AnnotationStore | None = None
        self.last_result = None
        self.last_embed = None
        self.last_latency_ms = None
        self.candidate = 0
        self._input_cache: tuple | None = None  # (signature tuple, ModelImage, image_sig)
        self._prompt_time = None
        self._box_index: int | None = None  # which marker is the current box
        self._use_all_markers = False
        self._syncing = False

        self.image_combo = ImageLayerChooser(napari_viewer)
        self.model = SamPicker()
        self.multimask = QCheckBox("three candidates (cycle with Shift-N)")
        self.multimask.setChecked(True)
        self.refine = QCheckBox("refine from the previous mask when clicking")
        self.refine.setChecked(True)
        self.auto = QCheckBox("segment when a box or click changes")
        self.auto.setChecked(True)
        self.positive = QCheckBox("next click is positive")
        self.positive.setChecked(True)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.embed_status = QLabel("embedding: none yet")

        def button(text, slot):
            b = QPushButton(text)
            b.clicked.connect(lambda *_: slot())
            return b

        self.segment_btn = button("Segment (selected or newest marker + clicks)", self.segment)
        self.all_btn = button("Segment all markers (batch)", self.segment_all_markers)
        self.next_btn = button("Next candidate", self.next_candidate)
        self.commit_btn = button("Commit (Shift-C)", self.commit)
        self.undo_btn = button("Undo last commit (Shift-U)", self.undo)
        self.clear_btn = button("Clear candidate and clicks (Shift-X)", self.clear)
        self.save_btn = button("Save annotations…", self._save_dialog)
        self.load_btn = button("Load annotations…", self._load_dialog)
        self.embed_btn = button("Compute embedding now", self.precompute)

        from .model_picker import ModelPicker

        self.text = QLineEdit()
        self.text.setPlaceholderText("small bright nodule")
        self.text.returnPressed.connect(self.text_to_mask)
        self.clip_model = ModelPicker()
        self.text_btn = button("Text → mask", self.text_to_mask)
        self.last_text_result = None

        src = QGroupBox("Image and model")
        sf = QFormLayout(src)
        sf.addRow("image", self.image_combo)
        sf.addRow(self.model)
        sf.addRow(self.embed_status)
        sf.addRow(self.embed_btn)
        prompts = QGroupBox("Prompts: drag a box on 'VIP markers', click on 'VIP clicks'")
        pf = QVBoxLayout(prompts)
        for w in (self.positive, self.multimask, self.refine, self.auto, self.segment_btn, self.all_btn):
            pf.addWidget(w)
        text_box = QGroupBox("Text to mask: phrase -> CLIP similarity map -> best region -> SAM")
        tf = QFormLayout(text_box)
        tf.addRow("phrase", self.text)
        tf.addRow(self.clip_model)
        tf.addRow(self.text_btn)
        objects = QGroupBox("Candidate and annotations")
        of = QVBoxLayout(objects)
        row1, row2 = QHBoxLayout(), QHBoxLayout()
        row1.addWidget(self.next_btn)
        row1.addWidget(self.commit_btn)
        row2.addWidget(self.undo_btn)
        row2.addWidget(self.clear_btn)
        row3 = QHBoxLayout()
        row3.addWidget(self.save_btn)
        row3.addWidget(self.load_btn)
        for r in (row1, row2, row3):
            of.addLayout(r)
        lay = QVBoxLayout(self)
        for w in (src, prompts, text_box, objects):
            lay.addWidget(w)
        lay.addWidget(self.status)
        lay.addStretch(1)

        self._contrast_timer = QTimer(self)
        self._contrast_timer.setSingleShot(True)
        self._contrast_timer.setInterval(300)
        self._contrast_timer.timeout.connect(self._precompute_when_in_view)
        self._embedding_wanted = False
        self._hooked: "weakref.WeakSet" = weakref.WeakSet()  # layers whose events this dock follows
        self._watched_dock = None

        self.viewer.layers.events.inserted.connect(self._on_layers_changed)
        self.viewer.layers.events.removed.connect(self._on_layers_changed)
        self.viewer.dims.events.current_step.connect(self._on_slice)
        self.image_combo.currentTextChanged.connect(self._on_image_changed)
        for sig in (self.model.source.currentTextChanged, self.model.arch.currentTextChanged,
                    self.model.path.editingFinished, self.model.medsam.toggled, self.model.device.currentTextChanged):
            sig.connect(lambda *_: self._contrast_timer.start())  # another model: another embedding
        self.positive.toggled.connect(self._on_positive_toggled)
        for key, fn in (("Shift-C", self.commit), ("Shift-U", self.undo), ("Shift-N", self.next_candidate),
                        ("Shift-X", self.clear)):
            self.viewer.bind_key(key, lambda v, fn=fn: fn(), overwrite=True)
        self._watched_image = None
        self._refresh_images()

    # -- layers ------------------------------------------------------------------------------------------------
    def image_layer(self, required: bool = True):
        """The chosen image layer (see :meth:`ImageLayerChooser.layer`)."""
        return self.image_combo.layer(required)

    def _refresh_images(self, event=None) -> None:
        current = self.image_combo.currentText()
        self.image_combo.refresh()
        if self.image_combo.currentText() != current or self._watched_image is None:
            self._on_image_changed()

    def _on_layers_changed(self, event=None) -> None:
        if self._syncing:
            return
        self._refresh_images(event)

    def _on_image_changed(self, *_) -> None:
        layer = self.image_layer(required=False)
        if layer is self._watched_image:
            return
        if self._watched_image is not None:
            try:
                self._watched_image.events.contrast_limits.disconnect(self._on_contrast)
            except (TypeError, ValueError, RuntimeError):
                pass
        self._watched_image = layer
        self.store = None
        self.last_result = None
        if layer is None:
            return
        layer.events.contrast_limits.connect(self._on_contrast)
        self._syncing = True
        try:
            self.markers_layer()
            self.clicks_layer()
        finally:
            self._syncing = False
        self._contrast_timer.start()  # debounced, so a model chosen right after opening is the one used

    def _plane_geometry(self, layer):
        """``(scale, translate)`` of the image's last two axes."""
        return np.asarray(layer.scale[-2:]), np.asarray(layer.translate[-2:])

    def markers_layer(self):
        layer = ensure_markers_layer(self.viewer, self.image_layer(required=False))
        if layer not in self._hooked:
            layer.events.data.connect(self._on_markers_changed)
            self._hooked.add(layer)
        return layer

    def clicks_layer(self):
        if CLICKS_LAYER in self.viewer.layers:
            layer = self.viewer.layers[CLICKS_LAYER]
        else:
            img = self.image_layer(required=False)
            kw = {}
            if img is not None:
                scale, translate = self._plane_geometry(img)
                kw = {"scale": scale, "translate": translate}
            layer = self.viewer.add_points(
                np.empty((0, 2)), ndim=2, name=CLICKS_LAYER, size=8, border_width=0,
                features={"positive": np.array([], dtype=bool)}, feature_defaults={"positive": True}, **kw)
            layer.mode = "add"
        if layer not in self._hooked:
            layer.events.data.connect(self._on_clicks_changed)
            self._hooked.add(layer)
        return layer

    def _on_positive_toggled(self, positive: bool) -> None:
        if CLICKS_LAYER in self.viewer.layers:
            layer = self.viewer.layers[CLICKS_LAYER]
            layer.feature_defaults = {"positive": bool(positive)}

    def _color_clicks(self, layer) -> None:
        if len(layer.data):
            pos = np.asarray(layer.features["positive"], dtype=bool)
            layer.face_color = np.where(pos[:, None], POSITIVE_COLOR, NEGATIVE_COLOR)

    def current_layer(self, shape_hw, image_layer):
        if CURRENT_LAYER in self.viewer.layers:
            layer = self.viewer.layers[CURRENT_LAYER]
            if layer.data.shape == tuple(shape_hw):
                return layer
            self.viewer.layers.remove(layer)
        scale, translate = self._plane_geometry(image_layer)
        self._syncing = True
        try:
            layer = self.viewer.add_labels(np.zeros(shape_hw, dtype=np.uint8), name=CURRENT_LAYER, opacity=0.9,
                                           scale=scale, translate=translate)
        finally:
            self._syncing = False
        layer.contour = 2
        layer.editable = False
        return layer

    def annotations_layer(self, image_layer):
        """The "VIP annotations" layer (image's full spatial shape), its data shared with :attr:`store`."""
        shape = self._spatial_shape(image_layer)
        if self.store is None or self.store.shape != shape:
            existing = self.viewer.layers[ANNOTATIONS_LAYER] if ANNOTATIONS_LAYER in self.viewer.layers else None
            if existing is not None and tuple(existing.data.shape) == shape:
                records = existing.metadata.get("vip_annotation_records")
                self.store = AnnotationStore(shape, np.asarray(existing.data), list((records or {}).values()))
            else:
                self.store = AnnotationStore(shape)
        if ANNOTATIONS_LAYER in self.viewer.layers:
            layer = self.viewer.layers[ANNOTATIONS_LAYER]
            if layer.data is not self.store.labels:
                if tuple(layer.data.shape) != shape and np.any(layer.data):
                    layer.name = ANNOTATIONS_LAYER + " (previous image)"  # never drop committed work
                    return self.annotations_layer(image_layer)
                layer.data = self.store.labels
            return layer
        self._syncing = True
        try:
            layer = self.viewer.add_labels(self.store.labels, name=ANNOTATIONS_LAYER, opacity=0.5,
                                           scale=image_layer.scale, translate=image_layer.translate)
        finally:
            self._syncing = False
        return layer

    @staticmethod
    def _spatial_shape(image_layer) -> tuple[int, ...]:
        data = image_layer.data[0] if getattr(image_layer, "multiscale", False) else image_layer.data
        shape = tuple(int(v) for v in data.shape)
        return shape[:-1] if image_layer.rgb else shape

    def plane_index(self, image_layer) -> tuple[int, ...]:
        """Indices of the leading (non-displayed) axes of the plane in view; ``()`` for 2D images."""
        shape = self._spatial_shape(image_layer)
        if len(shape) <= 2:
            return ()
        world = np.asarray(self.viewer.dims.point, dtype=float)
        data_point = np.asarray(image_layer.world_to_data(world[-image_layer.ndim:]), dtype=float)
        return tuple(int(np.clip(np.round(v), 0, shape[i] - 1)) for i, v in enumerate(data_point[:len(shape) - 2]))

    # -- model input ---------------------------------------------------------------------------------------------
    def model_image(self, layer=None):
        """``(ModelImage, image_sig, window, invert)`` of the plane in view, remembered per plane and window."""
        layer = layer or self.image_layer()
        limits, invert = display_window(layer)
        key = (id(layer), id(layer.data), self.plane_index(layer), limits, invert)
        if self._input_cache is not None and self._input_cache[0] == key:
            return self._input_cache[1:]
        image = model_input(layer, self.viewer.dims)
        sig = image_signature(image.rgb)
        self._input_cache = (key, image, sig, image.window, invert)
        return image, sig, image.window, invert

    def in_view(self) -> bool:
        """Whether the user can see this dock.  Work starts by itself (embeddings, segmenting a new box)
        only then, so a background tab does not fill the worker while the user classifies."""
        window = self.window()
        if window is self or not window.isVisible():  # not in a shown window (scripts, tests): act
            return True
        return self.isVisible() and not self.visibleRegion().isEmpty()  # a covered tab has no visible region

    def _precompute_when_in_view(self) -> None:
        self._embedding_wanted = not self.in_view()
        if not self._embedding_wanted:
            self.precompute()
            return
        from qtpy.QtWidgets import QDockWidget

        dock = self.parentWidget()
        while dock is not None and not isinstance(dock, QDockWidget):
            dock = dock.parentWidget()
        if dock is not None and dock is not self._watched_dock:  # embed once the user brings the tab forward
            self._watched_dock = dock
            dock.visibilityChanged.connect(self._on_dock_visibility)

    def _on_dock_visibility(self, visible: bool) -> None:
        if visible and self._embedding_wanted:
            self._embedding_wanted = False
            self._contrast_timer.start()

    def precompute(self) -> int | None:
        """Ask the worker for the embedding of the plane in view (cached there); returns the job id."""
        layer = self.image_layer(required=False)
        if layer is None:
            return None
        try:
            image, sig, window, invert = self.model_image(layer)
            spec = self.model.spec()
        except VipInputError as exc:
            self._warn(str(exc))
            return None
        req = SegmentEmbedRequest(image.rgb, spec, window=window, invert=invert, image_sig=sig,
                                  device=self.model.device_name())
        self.embed_status.setText("embedding: computing…")
        return self.bridge.submit(req, "VIP segment: image embedding", self._on_embedded, self._on_embed_error,
                                  channel="segment-embed")

    def _on_embedded(self, result) -> None:
        self.last_embed = result
        warn = " <b style='color:#e8a33d'>(untrained)</b>" if result.provenance.untrained else ""
        self.embed_status.setText(f"embedding: ready ({result.source}, {result.seconds:.1f} s){warn}")

    def _on_embed_error(self, failed) -> None:
        if failed.kind != "stale":
            self.embed_status.setText(f"embedding: failed: {failed.message}")
        notify_failure(failed)

    def _on_slice(self, event=None) -> None:
        layer = self.image_layer(required=False)
        if layer is not None and len(self._spatial_shape(layer)) > 2:
            self.clear()
            self._precompute_when_in_view()

    def _on_contrast(self, event=None) -> None:
        self._contrast_timer.start()  # debounced: dragging the contrast slider stays smooth

    # -- prompts -------------------------------------------------------------------------------------------------
    def _on_markers_changed(self, event=None) -> None:
        action = getattr(event, "action", None)
        action = str(getattr(action, "value", action)) if action is not None else None
        if action not in (None, "added", "changed"):
            return
        layer = self.viewer.layers[MARKERS_LAYER] if MARKERS_LAYER in self.viewer.layers else None
        if layer is None or not len(layer.data):
            return
        idx = getattr(event, "data_indices", None)
        if idx:
            self._box_index = int(max(i for i in idx if i >= 0)) if any(i >= 0 for i in idx) else len(layer.data) - 1
        else:
            self._box_index = len(layer.data) - 1
        self._use_all_markers = False
        self._prompt_time = time.perf_counter()
        if action == "added":  # a new object: earlier clicks belonged to the previous one
            self._clear_clicks()
        if self.auto.isChecked() and self.in_view():
            self.segment()

    def _on_clicks_changed(self, event=None) -> None:
        action = getattr(event, "action", None)
        action = str(getattr(action, "value", action)) if action is not None else None
        if action not in (None, "added", "changed", "removed"):
            return
        layer = self.viewer.layers[CLICKS_LAYER]
        self._color_clicks(layer)
        self._prompt_time = time.perf_counter()
        if self.auto.isChecked() and (len(layer.data) or self._box_index is not None):
            self.segment()

    def _box_from_marker(self, image_layer, index: int) -> tuple[float, float, float, float]:
        ml = self.viewer.layers[MARKERS_LAYER]
        rc = _to_image_rc(ml, image_layer, ml.data[index])
        return box_xyxy_from_vertices_rc(rc)

    def prompts(self, image_layer, all_markers: bool = False):
        """``(boxes_xyxy, points_xy, labels)`` from the layers, in the plane's (x, y) pixels."""
        boxes = []
        if MARKERS_LAYER in self.viewer.layers:
            ml = self.viewer.layers[MARKERS_LAYER]
            n = len(ml.data)
            if all_markers:
                boxes = [self._box_from_marker(image_layer, i) for i in range(n)]
            elif n:
                sel = sorted(i for i in ml.selected_data if i < n)
                index = sel[-1] if sel else (self._box_index if self._box_index is not None and self._box_index < n
                                             else None)
                if index is not None:
                    boxes = [self._box_from_marker(image_layer, index)]
        pts, labels = np.empty((0, 2)), np.empty((0,), dtype=np.int64)
        if CLICKS_LAYER in self.viewer.layers and not all_markers:
            cl = self.viewer.layers[CLICKS_LAYER]
            if len(cl.data):
                pts = rc_to_xy(_to_image_rc(cl, image_layer, cl.data))
                labels = np.asarray(cl.features["positive"], dtype=bool).astype(np.int64)
        return boxes, pts, labels

    def build_request(self, all_markers: bool = False) -> SegmentRequest:
        layer = self.image_layer()
        image, sig, window, invert = self.model_image(layer)
        boxes, pts, labels = self.prompts(layer, all_markers)
        check_prompts(boxes, pts, labels, image.rgb.shape[:2])  # bad input is refused here, before the worker
        logits = None
        prev = self.last_result
        if (self.refine.isChecked() and prev is not None and len(pts) and prev.masks.shape[0] == 1
                and prev.masks.shape[2:] == image.rgb.shape[:2]):
            logits = prev.low_res_logits[0, self.candidate][None]
        return SegmentRequest(image.rgb, self.model.spec(), boxes_xyxy=boxes, points_xy=pts.tolist(),
                              point_labels=labels.tolist(), mask_logits=logits, multimask=self.multimask.isChecked(),
                              window=window, invert=invert, image_sig=sig, device=self.model.device_name())

    def segment(self) -> int | None:
        """Decode the current box (selected or newest marker) and clicks; the newest request wins."""
        return self._submit(all_markers=False)

    def segment_all_markers(self) -> int | None:
        """Decode every marker as one batch: each becomes a candidate object (commit adds them all)."""
        self._prompt_time = time.perf_counter()
        return self._submit(all_markers=True)

    def _submit(self, all_markers: bool) -> int | None:
        try:
            req = self.build_request(all_markers)
        except VipInputError as exc:
            self._warn(str(exc))
            return None
        self._plane = self.plane_index(self.image_layer())
        self._prompt_time = self._prompt_time or time.perf_counter()
        return self.bridge.submit(req, "VIP segment", self._on_result, self._on_error, channel="segment-decode")

    def text_to_mask(self) -> int | None:
        """Segment what the typed phrase names; the heatmap goes to "VIP text heatmap"."""
        try:
            layer = self.image_layer()
            image, sig, window, invert = self.model_image(layer)
            text = self.text.text().strip()
            if not text:
                raise VipInputError("Type a phrase first, e.g. 'small bright nodule'.")
            req = TextSegmentRequest(image.rgb, self.model.spec(), text=text, clip=self.clip_model.spec(),
                                     multimask=self.multimask.isChecked(), window=window, invert=invert,
                                     image_sig=sig, device=self.model.device_name())
        except VipInputError as exc:
            self._warn(str(exc))
            return None
        self._plane = self.plane_index(layer)
        self._prompt_time = time.perf_counter()
        return self.bridge.submit(req, "VIP text to mask", self._on_text_result, self._on_error,
                                  channel="segment-decode")

    def _on_text_result(self, result) -> None:
        self.last_text_result = result
        layer = self.image_layer(required=False)
        if layer is not None:
            scale, translate = self._plane_geometry(layer)
            if HEATMAP_LAYER in self.viewer.layers and self.viewer.layers[HEATMAP_LAYER].data.shape == result.heatmap.shape:
                self.viewer.layers[HEATMAP_LAYER].data = result.heatmap
            else:
                if HEATMAP_LAYER in self.viewer.layers:
                    self.viewer.layers.remove(HEATMAP_LAYER)
                self._syncing = True
                try:
                    self.viewer.add_image(result.heatmap, name=HEATMAP_LAYER, colormap="inferno", opacity=0.45,
                                          contrast_limits=(0, 1), blending="additive", scale=scale,
                                          translate=translate)
                finally:
                    self._syncing = False
        self._on_result(result.segment)
        if result.steps[0].get("untrained"):
            self.status.setText("<b style='color:#e8a33d'>UNTRAINED CLIP.</b> " + self.status.text())

    def _on_result(self, result) -> None:
        self.last_result = result
        self.candidate = 0
        self._show_candidate()
        if self._prompt_time is not None:
            self.last_latency_ms = (time.perf_counter() - self._prompt_time) * 1000
            self._prompt_time = None

    def _show_candidate(self) -> None:
        result = self.last_result
        if result is None:
            return
        layer = self.image_layer(required=False)
        if layer is None:
            return
        b, c, h, w = result.masks.shape
        cand = np.zeros((h, w), dtype=np.uint8)
        for k in range(b):  # several boxes: one colour each
            cand[result.masks[k, min(self.candidate, c - 1)] & (cand == 0)] = k + 1
        cur = self.current_layer((h, w), layer)
        cur.data = cand
        scores = ", ".join(f"{s:.2f}" for s in result.scores[:, min(self.candidate, c - 1)])
        warn = "<b style='color:#e8a33d'>UNTRAINED SAM.</b> " if result.provenance.untrained else ""
        notes = "".join(f"<br>note: {n}" for n in result.notes)
        self.status.setText(f"{warn}{b} object(s), candidate {self.candidate + 1}/{c}, score {scores} "
                            f"(embedding {result.embedding_source}, decode {result.timings_ms['decode']:.0f} ms)"
                            f"{notes}")

    def _on_error(self, failed) -> None:
        self._prompt_time = None
        if failed.kind != "stale":
            self._warn(failed.message, notify=False)
        notify_failure(failed)

    def _warn(self, message: str, notify: bool = True) -> None:
        self.status.setText(warning_html(message))
        if notify:
            from napari.utils.notifications import show_warning

            show_warning(message)

    # -- candidate, commit, undo ---------------------------------------------------------------------------------
    def next_candidate(self) -> None:
        if self.last_result is None:
            return
        self.candidate = (self.candidate + 1) % self.last_result.masks.shape[1]
        self._show_candidate()

    def commit(self) -> list[int]:
        """Add the shown candidate(s) to "VIP annotations" as new objects; clears clicks and the candidate."""
        result = self.last_result
        if result is None:
            self._warn("Nothing to commit: draw a box or click first.")
            return []
        layer = self.image_layer()
        ann = self.annotations_layer(layer)
        c = min(self.candidate, result.masks.shape[1] - 1)
        prov = result.provenance.to_dict()
        ids = []
        for b in range(result.masks.shape[0]):
            prompts = {"boxes_xyxy": [list(result.boxes_xyxy[b])] if len(result.boxes_xyxy) > b else [],
                       "points_xy": result.points_xy.tolist(), "point_labels": result.point_labels.tolist(),
                       "candidate": int(c)}
            source = "sam"
            text = self.last_text_result
            if text is not None and text.segment is result:
                prompts["text"] = text.text
                prov = dict(prov, steps=text.steps)
                source = "text"
            try:
                ids.append(self.store.commit(result.masks[b, c], getattr(self, "_plane", ()), prompts, prov,
                                             float(result.scores[b, c]), source))
            except VipInputError as exc:
                self._warn(str(exc))
        self._sync_annotations(ann)
        self.clear()
        if ids:
            self.status.setText(f"Committed object(s) {', '.join(map(str, ids))}.")
        return ids

    def _sync_annotations(self, ann) -> None:
        ann.metadata["vip_annotations"] = [r.to_dict() for r in self.store.records.values()]
        ann.metadata["vip_annotation_records"] = dict(self.store.records)
        ann.refresh()

    def undo(self) -> int | None:
        """Take back the last commit; returns its id."""
        if self.store is None or not self.store.can_undo:
            self.status.setText("Nothing to undo.")
            return None
        rec = self.store.undo()
        self._sync_annotations(self.viewer.layers[ANNOTATIONS_LAYER])
        self.status.setText(f"Undid object {rec.id}.")
        return rec.id

    def _clear_clicks(self) -> None:
        if CLICKS_LAYER in self.viewer.layers:
            cl = self.viewer.layers[CLICKS_LAYER]
            if len(cl.data):
                with cl.events.data.blocker():
                    cl.data = np.empty((0, 2))

    def clear(self) -> None:
        """Drop the candidate and the clicks (committed annotations and markers stay)."""
        self._clear_clicks()
        self.last_result = None
        self.candidate = 0
        if CURRENT_LAYER in self.viewer.layers:
            cur = self.viewer.layers[CURRENT_LAYER]
            cur.data = np.zeros_like(cur.data)

    # -- save / load ---------------------------------------------------------------------------------------------
    def save_annotations(self, path) -> tuple[str, str]:
        """Write "VIP annotations" (PNG/TIFF/.npy by extension) and its JSON sidecar."""
        if self.store is None:
            raise VipInputError("No annotations yet: commit an object first.")
        return self.store.save(path)

    def load_annotations(self, path, sidecar=None) -> int:
        """Read a label image + sidecar into "VIP annotations"; returns the number of objects."""
        layer = self.image_layer()
        store = AnnotationStore.load(path, sidecar)
        shape = self._spatial_shape(layer)
        if store.shape != shape:
            raise VipInputError(f"Annotations {str(path)!r} have shape {store.shape}; the image {layer.name!r} "
                                f"has {shape}.")
        if ANNOTATIONS_LAYER in self.viewer.layers and self.store is not None and np.any(self.store.labels):
            self.viewer.layers[ANNOTATIONS_LAYER].name = ANNOTATIONS_LAYER + " (before load)"  # keep it
        self.store = store
        ann = self.annotations_layer(layer)
        self._sync_annotations(ann)
        return len(store.records)

    def _save_dialog(self) -> None:
        name, _ = QFileDialog.getSaveFileName(self, "Save annotations", "annotations.tif",
                                              "Label image (*.tif *.tiff *.png *.npy)")
        if name:
            try:
                paths = self.save_annotations(name)
                self.status.setText(f"Saved {paths[0]} and {paths[1]}.")
            except VipInputError as exc:
                self._warn(str(exc))

    def _load_dialog(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self, "Load annotations", "", "Label image (*.tif *.tiff *.png *.npy)")
        if name:
            try:
                n = self.load_annotations(name)
                self.status.setText(f"Loaded {n} object(s).")
            except VipInputError as exc:
                self._warn(str(exc))

