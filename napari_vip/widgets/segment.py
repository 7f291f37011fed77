"""The "VIP segment" dock: SAM/MedSAM masks from boxes (markers) and clicks, committed as annotations.

A box on "VIP markers" and clicks on "VIP clicks" give a candidate in "VIP current mask" (Shift-N cycles SAM's
candidates); Shift-C commits it to "VIP annotations" as a new object, Shift-U undoes, Shift-X clears ("Text →
mask": a phrase's similarity map in "VIP text heatmap" gives the prompts).  The state lives in a Qt-free
:class:`~napari_vip.worker.segment_session.SegmentSession`; layers are made by :mod:`.segment_layers`.  Model
work runs in the worker; the embedding of the plane in view is requested when the image or slice changes, and
again (debounced) when the contrast changes.
"""

from __future__ import annotations

import time
import weakref

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QVBoxLayout,
)

from ..core.errors import VipInputError
from ..layers import (
    ANNOTATIONS_LAYER,
    CLICKS_LAYER,
    CURRENT_LAYER,
    HEATMAP_LAYER,
    MARKERS_LAYER,
    display_window,
    ensure_markers_layer,
    model_input,
    plane_index,
    spatial_shape,
)
from ..models.embedding_cache import image_signature
from ..worker.segment import SegmentEmbedRequest, TextSegmentRequest
from ..worker.segment_session import RECORDS_METADATA, SegmentSession
from . import segment_layers
from .dock import VipDock
from .form_rows import button, hbox
from .layer_choice import ImageLayerChooser
from .sam_picker import SamPicker
from .segment_learned import LearnedRow
from .segment_vlsm import VlsmRow
from .segment_volume import VolumeRow, autosave_annotations
from .visibility import enclosing_dock, in_view
from .worker_bridge import notify_failure

LABEL_FILES = "Label image (*.tif *.tiff *.png *.npy)"

def checked_box(text: str) -> QCheckBox:
    """A checkbox, checked."""
    box = QCheckBox(text)
    box.setChecked(True)
    return box


__all__ = ["SegmentWidget", "SamPicker", "ANNOTATIONS_LAYER", "CLICKS_LAYER", "CURRENT_LAYER", "HEATMAP_LAYER"]


class SegmentWidget(VipDock):
    """Dock: box (marker) and clicks -> SAM candidate -> commit to "VIP annotations".

    Attributes
    ----------
    session : SegmentSession
        The Qt-free segmentation state: annotations store, candidate, commit/undo (the dock only wires events).
    last_latency_ms : float or None
        From the prompt change (box added, click) to the candidate shown, for the last decode.
    """

    def __init__(self, napari_viewer, parent=None):
        super().__init__(napari_viewer, parent)
        self.session = SegmentSession()
        self.last_embed = None
        self.last_latency_ms = None
        self._input_cache: tuple | None = None  # (signature tuple, ModelImage, image_sig)
        self._prompt_time = None
        self._box_index: int | None = None  # which marker is the current box
        self._request_plane: tuple[int, ...] = ()  # the plane of the request in flight

        self.image_combo = ImageLayerChooser(napari_viewer)
        self.model = SamPicker()
        self.multimask = checked_box("three candidates (cycle with Shift-N)")
        self.refine = checked_box("refine from the previous mask when clicking")
        self.auto = checked_box("segment when a box or click changes")
        self.positive = checked_box("next click is positive")
        self.embed_status = QLabel("embedding: none yet")

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
        self.vlsm = VlsmRow(self)  # CLIPSeg / BiomedCLIPSeg / fine-tuned VLSMs beside similarity -> SAM
        self.learned = LearnedRow(self)  # a text-free model (CoTexNet): segment as learned, no phrase

        src = QGroupBox("Image and model")
        sf = QFormLayout(src)
        sf.addRow("image", self.image_combo)
        sf.addRow(self.model)
        sf.addRow(self.embed_status)
        sf.addRow(self.embed_btn)
        self.volume = VolumeRow(self)  # volumes: propagate the object on this slice through the stack
        sf.addRow(self.volume)
        prompts = QGroupBox("Prompts: drag a box on 'VIP markers', click on 'VIP clicks'")
        pf = QVBoxLayout(prompts)
        for w in (self.positive, self.multimask, self.refine, self.auto, self.segment_btn, self.all_btn):
            pf.addWidget(w)
        text_box = QGroupBox("Text to mask: a VLSM, or CLIP similarity map -> best region -> SAM")
        tf = QFormLayout(text_box)
        tf.addRow("phrase", self.text)
        tf.addRow(self.vlsm)
        tf.addRow(self.clip_model)
        tf.addRow(self.text_btn)
        tf.addRow(self.learned)
        objects = QGroupBox("Candidate and annotations")
        of = QVBoxLayout(objects)
        for pair in ((self.next_btn, self.commit_btn), (self.undo_btn, self.clear_btn), (self.save_btn, self.load_btn)):
            of.addLayout(hbox(*pair))
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
        self._hooked: weakref.WeakSet = weakref.WeakSet()  # layers whose events this dock follows
        self._watched_dock = None

        self.viewer.layers.events.inserted.connect(self._refresh_images)
        self.viewer.layers.events.removed.connect(self._refresh_images)
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

    # the session's state, read by tests and scripts
    store = property(lambda self: self.session.store, doc="The session's AnnotationStore (or None).")
    last_result = property(lambda self: self.session.result, doc="The candidate's SegmentResult (or None).")
    last_text_result = property(lambda self: self.session.text_result, doc="The TextSegmentResult it came from.")
    candidate = property(lambda self: self.session.candidate, doc="Which of SAM's candidates is shown.")

    # -- layers ------------------------------------------------------------------------------------------------
    def image_layer(self, required: bool = True):
        """The chosen image layer (see :meth:`ImageLayerChooser.layer`)."""
        return self.image_combo.layer(required)

    def _refresh_images(self, event=None) -> None:
        if self._syncing:  # a layer this dock added
            return
        current = self.image_combo.currentText()
        self.image_combo.refresh()
        if self.image_combo.currentText() != current or self._watched_image is None:
            self._on_image_changed()

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
        self.session = SegmentSession()
        if layer is None:
            return
        layer.events.contrast_limits.connect(self._on_contrast)
        with self._quiet():
            self.markers_layer()
            self.clicks_layer()
        self.volume.follow_image(layer)  # slice range; work autosaved before a crash or an unsaved close
        self._contrast_timer.start()  # debounced, so a model chosen right after opening is the one used

    def markers_layer(self):
        return self._follow(ensure_markers_layer(self.viewer, self.image_layer(required=False)),
                            self._on_markers_changed)

    def clicks_layer(self):
        with self._quiet():
            return self._follow(segment_layers.clicks_layer(self.viewer, self.image_layer(required=False)),
                                self._on_clicks_changed)

    def _follow(self, layer, handler):
        """``layer``, its data events connected to ``handler`` once."""
        if layer not in self._hooked:
            layer.events.data.connect(handler)
            self._hooked.add(layer)
        return layer

    def _on_positive_toggled(self, positive: bool) -> None:
        if CLICKS_LAYER in self.viewer.layers:
            layer = self.viewer.layers[CLICKS_LAYER]
            layer.feature_defaults = {"positive": bool(positive)}

    def current_layer(self, shape_hw, image_layer):
        with self._quiet():
            return segment_layers.current_layer(self.viewer, shape_hw, image_layer)

    def annotations_layer(self, image_layer):
        """The "VIP annotations" layer (image's full spatial shape), its data shared with :attr:`store`."""
        with self._quiet():
            return segment_layers.annotations_layer(self.viewer, self.session, image_layer)

    # -- model input ---------------------------------------------------------------------------------------------
    def model_image(self, layer=None):
        """``(ModelImage, image_sig, window, invert)`` of the plane in view, remembered per plane and window."""
        layer = layer or self.image_layer()
        limits, invert = display_window(layer)
        key = (id(layer), id(layer.data), plane_index(layer, self.viewer.dims), limits, invert)
        if self._input_cache is not None and self._input_cache[0] == key:
            return self._input_cache[1:]
        image = model_input(layer, self.viewer.dims)
        sig = image_signature(image.rgb)
        self._input_cache = (key, image, sig, image.window, invert)
        return image, sig, image.window, invert

    def in_view(self) -> bool:
        """Whether the user can see this dock (see :func:`napari_vip.widgets.visibility.in_view`)."""
        return in_view(self)

    def _precompute_when_in_view(self) -> None:
        self._embedding_wanted = not self.in_view()
        if not self._embedding_wanted:
            self.precompute()
            return
        dock = enclosing_dock(self)
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
        self.volume.embed_in_background()  # a volume: the other slices, from this one outward

    def _on_embed_error(self, failed) -> None:
        if failed.kind != "stale":
            self.embed_status.setText(f"embedding: failed: {failed.message}")
        notify_failure(failed)

    def _on_slice(self, event=None) -> None:
        layer = self.image_layer(required=False)
        if layer is not None and len(spatial_shape(layer)) > 2:
            self.clear()
            self._precompute_when_in_view()

    def _on_contrast(self, event=None) -> None:
        self._contrast_timer.start()  # debounced: dragging the contrast slider stays smooth

    # -- prompts -------------------------------------------------------------------------------------------------
    def _on_markers_changed(self, event=None) -> None:
        action = segment_layers.data_action(event)
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
        self._prompt_time = time.perf_counter()
        if action == "added":  # a new object: earlier clicks belonged to the previous one
            self._clear_clicks()
        if self.auto.isChecked() and self.in_view():
            self.segment()

    def _on_clicks_changed(self, event=None) -> None:
        action = segment_layers.data_action(event)
        if action not in (None, "added", "changed", "removed"):
            return
        layer = self.viewer.layers[CLICKS_LAYER]
        segment_layers.color_clicks(layer)
        self._prompt_time = time.perf_counter()
        if self.auto.isChecked() and (len(layer.data) or self._box_index is not None):
            self.segment()

    def build_request(self, all_markers: bool = False):
        """The :class:`~napari_vip.worker.segment.SegmentRequest` of the layers' prompts (see
        :meth:`SegmentSession.request`)."""
        layer = self.image_layer()
        image, sig, window, invert = self.model_image(layer)
        boxes, pts, labels = segment_layers.layer_prompts(self.viewer, layer, self._box_index, all_markers)
        return self.session.request(image.rgb, self.model.spec(), boxes, pts, labels,
                                    multimask=self.multimask.isChecked(), refine=self.refine.isChecked(),
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
        self._request_plane = plane_index(self.image_layer(), self.viewer.dims)
        self._prompt_time = self._prompt_time or time.perf_counter()
        return self.bridge.submit(req, "VIP segment", self._on_result, self._on_error, channel="segment-decode")

    def text_to_mask(self) -> int | None:
        """Segment what the typed phrase names; the heatmap goes to "VIP text heatmap"."""
        if self.vlsm.active():
            return self.vlsm.submit()
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
        self._request_plane = plane_index(layer, self.viewer.dims)
        self._prompt_time = time.perf_counter()
        return self.bridge.submit(req, "VIP text to mask", self._on_text_result, self._on_error,
                                  channel="segment-decode")

    def _on_text_result(self, result) -> None:
        layer = self.image_layer(required=False)
        if layer is not None:
            with self._quiet():
                segment_layers.show_heatmap(self.viewer, result.heatmap, layer)
        self._on_result(result.segment, text_result=result)
        if result.steps[0].get("untrained"):
            self.status.setText("<b style='color:#e8a33d'>UNTRAINED CLIP.</b> " + self.status.text())

    def _on_result(self, result, text_result=None) -> None:
        self.session.set_result(result, self._request_plane, text_result)
        self._show_candidate()
        self.volume.embed_in_background()  # resumes if the prompt interrupted it
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
        cur = self.current_layer((h, w), layer)
        cur.data = self.session.candidate_labels()  # several boxes: one colour each
        scores = ", ".join(f"{s:.2f}" for s in result.scores[:, self.session.shown_candidate()])
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

    # -- candidate, commit, undo ---------------------------------------------------------------------------------
    def next_candidate(self) -> None:
        if self.last_result is not None:
            self.session.next_candidate()
            self._show_candidate()

    def commit(self) -> list[int]:
        """Add the shown candidate(s) to "VIP annotations" as new objects; clears clicks and the candidate."""
        if self.last_result is None:
            self._warn("Nothing to commit: draw a box or click first.")
            return []
        ann = self.annotations_layer(self.image_layer())
        ids = self.session.commit()
        for note in self.session.notes:
            self._warn(note)
        self._sync_annotations(ann)
        autosave_annotations(self.image_layer(), self.session)
        self.clear()
        if ids:
            self.status.setText(f"Committed object(s) {', '.join(map(str, ids))}.")
        return ids

    def _sync_annotations(self, ann) -> None:
        ann.metadata[RECORDS_METADATA] = self.session.records_metadata()
        ann.refresh()

    def undo(self) -> int | None:
        """Take back the last commit; returns its id."""
        undone = self.session.undo()
        if undone is None:
            self.status.setText("Nothing to undo.")
            return None
        self._sync_annotations(self.viewer.layers[ANNOTATIONS_LAYER])
        self.status.setText(f"Undid object {undone}.")
        return undone

    def _clear_clicks(self) -> None:
        if CLICKS_LAYER in self.viewer.layers:
            cl = self.viewer.layers[CLICKS_LAYER]
            if len(cl.data):
                with cl.events.data.blocker():
                    cl.data = np.empty((0, 2))

    def clear(self) -> None:
        """Drop the candidate and the clicks (committed annotations and markers stay)."""
        self._clear_clicks()
        self.session.clear()
        if CURRENT_LAYER in self.viewer.layers:
            cur = self.viewer.layers[CURRENT_LAYER]
            cur.data = np.zeros_like(cur.data)

    # -- save / load ---------------------------------------------------------------------------------------------
    def save_annotations(self, path) -> tuple[str, str]:
        """Write "VIP annotations" (PNG/TIFF/.npy by extension) and its JSON sidecar."""
        return self.session.save(path)

    def load_annotations(self, path, sidecar=None) -> int:
        """Read a label image + sidecar into "VIP annotations"; returns the number of objects."""
        layer = self.image_layer()
        before = self.store
        self.session.load(path, spatial_shape(layer), sidecar)
        if ANNOTATIONS_LAYER in self.viewer.layers and before is not None and np.any(before.labels):
            self.viewer.layers[ANNOTATIONS_LAYER].name = ANNOTATIONS_LAYER + " (before load)"  # keep it
        self._sync_annotations(self.annotations_layer(layer))
        return len(self.store.records)

    def _save_dialog(self) -> None:
        name, _ = QFileDialog.getSaveFileName(self, "Save annotations", "annotations.tif", LABEL_FILES)
        if name:
            self._report(lambda: "Saved {} and {}.".format(*self.save_annotations(name)))

    def _load_dialog(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self, "Load annotations", "", LABEL_FILES)
        if name:
            self._report(lambda: f"Loaded {self.load_annotations(name)} object(s).")

    def _report(self, action) -> None:
        """Show what ``action()`` returns, or its VipInputError as a warning."""
        try:
            self.status.setText(action())
        except VipInputError as exc:
            self._warn(str(exc))
