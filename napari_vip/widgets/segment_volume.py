"""The volume row of the "VIP segment" dock: propagate the object on the slice in view through the stack, and
correct it from any other slice.

The prompt is the candidate shown on the slice in view (its mask), else the box of the selected or newest marker.
A :class:`~napari_vip.worker.volume.PropagateRequest` runs in the worker with progress and cancel (a cancelled run
keeps the slices it reached), within the slice range set here and stopping where the object vanishes (when
ticked); the propagated ``(Z, Y, X)`` mask becomes one object of "VIP annotations" through
:meth:`~napari_vip.worker.segment_session.SegmentSession.commit_volume` (other objects' voxels are kept).

**Correct from this slice** adds the slice in view's prompt to the prompts the object was propagated from and
propagates again (SAM 2: tracking with every prompt, its interaction model; SAM 1: slice by slice from the
correction, stopping before the slices prompted earlier); the object is replaced on the slices the new run
reached (:meth:`~napari_vip.worker.segment_session.SegmentSession.revise_volume`, one undo).  The annotations
are autosaved (:mod:`napari_vip.io.autosave`) after every commit, so a crash loses nothing.
"""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QPushButton, QSpinBox, QVBoxLayout, QWidget

from ..core.errors import VipInputError
from ..layers import ANNOTATIONS_LAYER, MARKERS_LAYER, display_window, spatial_shape


def scrolled_axis(layer, dims) -> int:
    """The data axis of a 3D ``layer`` that napari's slider walks (``dims.order`` minus the displayed axes); 0
    when nothing is scrolled (3D display)."""
    offset = dims.ndim - layer.ndim
    displayed = {int(a) - offset for a in dims.displayed}
    hidden = [int(a) - offset for a in dims.order if int(a) >= offset and int(a) - offset not in displayed]
    return hidden[-1] if hidden else 0


def slice_position(layer, dims, axis: int) -> int:
    """The index along ``axis`` of ``layer`` at the viewer's position (rounded, clipped to the data)."""
    point = np.asarray(dims.point, dtype=float)[-layer.ndim:]
    value = float(np.asarray(layer.world_to_data(point), dtype=float)[axis])
    return int(np.clip(np.round(value), 0, layer.data.shape[axis] - 1))


def marker_box_across(viewer, layer, axis: int):
    """``(x0, y0, x1, y1)`` of the selected (else newest) marker in pixels of the slice across ``axis`` (its
    other two axes in increasing order: rows, then columns), for a markers layer with as many dimensions as
    ``layer``; ``None`` when there is none."""
    from ..core.coords import box_xyxy_from_vertices_rc

    if MARKERS_LAYER not in viewer.layers:
        return None
    markers = viewer.layers[MARKERS_LAYER]
    if markers.ndim != layer.ndim or not len(markers.data):
        return None
    index = max(markers.selected_data) if markers.selected_data else len(markers.data) - 1
    data = np.array([layer.world_to_data(markers.data_to_world(v)) for v in markers.data[index]], dtype=float)
    return box_xyxy_from_vertices_rc(data[:, [a for a in range(layer.ndim) if a != axis]])


class VolumeRow(QWidget):
    """Slice range, "Propagate through the volume", "Correct from this slice" and Cancel, for the segment dock
    ``dock``.

    Attributes
    ----------
    tracked : dict
        ``{object id: [SlicePrompt, ...]}``: the prompts each propagated object came from (corrections add to them).
    last_result : PropagateResult or None
    """

    def __init__(self, dock, parent=None):
        super().__init__(parent)
        self.dock = dock
        self.last_result = None
        self.committed = None  # (object id, PropagateResult) of the last commit or correction, once shown
        self.last_background = None  # the last VolumeEmbedResult
        self._background_done = None  # (volume, model, window, ...) whose slices are all cached
        self.tracked: dict[int, list] = {}
        self._job: int | None = None
        self._target: int | None = None  # the object the job in flight corrects (None: a new object)
        self.first, self.last = QSpinBox(), QSpinBox()
        for spin, tip in ((self.first, "first slice to reach"), (self.last, "last slice to reach")):
            spin.setToolTip(tip)
        self.stop_empty = QCheckBox("stop where it vanishes")
        self.stop_empty.setChecked(True)
        self.background = QCheckBox("embed the other slices in the background")
        self.background.setToolTip("After the slice in view, the worker embeds the others from it outward and caches "
                                   "them on disk (weights from a file, local worker); any prompt goes first.")
        self.background.setChecked(True)
        self.button = QPushButton("Propagate through the volume")
        self.button.clicked.connect(lambda *_: self.propagate())
        self.correct_btn = QPushButton("Correct from this slice")
        self.correct_btn.setToolTip("Add this slice's box or candidate to the object's prompts and propagate again; "
                                    "the object (selected label, else the last propagated) is replaced where the "
                                    "new run reaches.")
        self.correct_btn.clicked.connect(lambda *_: self.correct())
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
        self.cancel_btn.clicked.connect(lambda *_: self.cancel())
        self.restore_btn = QPushButton("Restore autosaved annotations")
        self.restore_btn.setVisible(False)
        self.restore_btn.clicked.connect(lambda *_: self.restore())
        self._autosave = None  # the entry offered for restoring
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        limits = QHBoxLayout()
        for w in (QLabel("slices"), self.first, QLabel("to"), self.last, self.stop_empty):
            limits.addWidget(w)
        limits.addStretch(1)
        buttons = QHBoxLayout()
        for w in (self.button, self.correct_btn, self.cancel_btn):
            buttons.addWidget(w)
        lay.addLayout(limits)
        lay.addLayout(buttons)
        lay.addWidget(self.background)
        lay.addWidget(self.restore_btn)

    def follow_image(self, layer) -> None:
        """A new image in the dock: the slice range spans its slices, no object is tracked, and its autosave is
        offered (see :meth:`offer_restore`)."""
        shape = spatial_shape(layer) if layer is not None else ()
        top = max(0, shape[0] - 1) if len(shape) == 3 else 0
        for spin, value in ((self.first, 0), (self.last, top)):
            spin.setRange(0, top)
            spin.setValue(value)
        self.tracked = {}
        self.offer_restore(layer)

    def slice_range(self, z: int) -> tuple[int, int] | None:
        """The ``(first, last)`` slices set here, ``None`` when they span the whole volume of ``z`` slices."""
        lo, hi = sorted((self.first.value(), self.last.value()))
        return None if (lo, hi) == (0, z - 1) else (lo, hi)

    def offer_restore(self, layer) -> bool:
        """Show "Restore autosaved annotations" when ``layer``'s image has an autosave that its shape fits and the
        viewer has no annotations of that shape yet (a crash or an unsaved close); returns whether it is offered."""
        from ..io.autosave import Autosave, cached_image_key

        entry = None
        if layer is not None:
            viewer = self.dock.viewer
            has = ANNOTATIONS_LAYER in viewer.layers and np.any(viewer.layers[ANNOTATIONS_LAYER].data)
            entry = None if has else Autosave().latest(cached_image_key(layer.data))
            if entry is not None and tuple(entry.labels.shape) != spatial_shape(layer):
                entry = None
        self._autosave = entry
        self.restore_btn.setVisible(entry is not None)
        if entry is not None:
            import time

            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(entry.saved_at))
            self.restore_btn.setToolTip(f"{len(entry.records)} object(s), saved {when}")
        return entry is not None

    def restore(self) -> int:
        """Put the offered autosave into "VIP annotations" (with its records); returns the number of objects."""
        entry, dock = self._autosave, self.dock
        if entry is None:
            return 0
        layer = dock.image_layer()
        dock.session.store = None
        dock.session.open_store(spatial_shape(layer), entry.labels.astype(np.int32), entry.records)
        dock._sync_annotations(dock.annotations_layer(layer))
        self._autosave = None
        self.restore_btn.setVisible(False)
        dock.status.setText(f"Restored {len(entry.records)} autosaved object(s).")
        return len(entry.records)

    def slice_prompt(self):
        """The :class:`~napari_vip.models.propagation.SlicePrompt` of the slice in view: the candidate shown (its
        mask), else the selected or newest marker's box; VipInputError when there is neither, or no 3D volume."""
        from ..models.propagation import SlicePrompt, refuse_colour_picture

        dock = self.dock
        layer = dock.image_layer()
        shape = spatial_shape(layer)
        if getattr(layer, "rgb", False):
            refuse_colour_picture(layer.data.shape)
        if len(shape) != 3:
            raise VipInputError(f"Propagation needs a 3D gray volume; {layer.name!r} has spatial shape {shape}.")
        axis = scrolled_axis(layer, dock.viewer.dims)
        k = slice_position(layer, dock.viewer.dims, axis)
        if axis != 0:  # the view slices across another axis (napari's dims.order): a box drawn in that plane
            box = marker_box_across(dock.viewer, layer, axis)
            if box is None:
                raise VipInputError(f"The view slices {layer.name!r} along axis {axis}: draw the box on a 3D Shapes "
                                    f"layer named {MARKERS_LAYER!r} in this view, or roll the view back to axis 0.")
            return SlicePrompt(k, box_xyxy=tuple(box))
        session = dock.session
        if session.result is not None and session.result.masks.shape[0] == 1:
            return SlicePrompt(k, mask=session.result.masks[0, session.shown_candidate()])
        from .segment_layers import layer_prompts

        boxes, _, _ = layer_prompts(dock.viewer, layer, dock._box_index)
        if not boxes:
            raise VipInputError(f"Draw a box on slice {k} (or segment it first), then propagate.")
        return SlicePrompt(k, box_xyxy=tuple(boxes[0]))

    def request(self, prompts=None):
        """The :class:`~napari_vip.worker.volume.PropagateRequest` from ``prompts`` (default: the slice in view's
        prompt); VipInputError if there is none."""
        from ..worker.volume import PropagateRequest

        dock = self.dock
        prompts = prompts or [self.slice_prompt()]
        layer = dock.image_layer()
        limits, invert = display_window(layer)
        axis = scrolled_axis(layer, dock.viewer.dims)  # propagation follows the slider
        n = spatial_shape(layer)[axis]
        span = self.slice_range(spatial_shape(layer)[0])  # the range row counts axis 0's slices; all: None
        return PropagateRequest(volume=np.asarray(layer.data), prompts=list(prompts), model=dock.model.spec(),
                                axis=axis, slice_range=span and (min(span[0], n - 1), min(span[1], n - 1)),
                                window=limits, invert=invert,
                                stop_when_empty=self.stop_empty.isChecked(), device=dock.model.device_name())

    def embed_in_background(self) -> int | None:
        """Send a :class:`~napari_vip.worker.volume.VolumeEmbedRequest` from the slice in view outward (the worker
        stops it whenever a prompt waits; it is sent again after the next embedding or mask, until one run has
        finished for this volume, model and window).  Only for a 3D gray volume, weights from a file (random
        weights are not cached on disk) and the local worker; returns the job id or None."""
        from ..worker.volume import VolumeEmbedRequest
        from .remote_server import REMOTE_DEVICE

        dock = self.dock
        layer = dock.image_layer(required=False)
        if (not self.background.isChecked() or layer is None or len(spatial_shape(layer)) != 3
                or getattr(layer, "rgb", False) or dock.model.device_name() == REMOTE_DEVICE):
            return None
        try:
            spec = dock.model.spec()
        except VipInputError:
            return None
        if spec.untrained:
            return None
        limits, invert = display_window(layer)
        what = (id(layer.data), spec, limits, invert, dock.model.device_name())
        if what == self._background_done:
            return None
        axis = scrolled_axis(layer, dock.viewer.dims)
        req = VolumeEmbedRequest(np.asarray(layer.data), slice_position(layer, dock.viewer.dims, axis), spec,
                                 axis=axis, window=limits, invert=invert, device=dock.model.device_name())
        return dock.bridge.submit(req, "VIP segment: embedding the other slices",
                                  lambda result: self._on_embedded_volume(result, what), self._on_error_background,
                                  channel="segment-volume-embed")

    def _on_embedded_volume(self, result, what) -> None:
        self.last_background = result
        if not result.cancelled:
            self._background_done = what
            self.dock.embed_status.setText(f"embedding: ready; all {len(result.sources)} slices cached")

    def _on_error_background(self, failed) -> None:
        if failed.kind not in ("stale", "cancelled"):
            self.dock.embed_status.setText(f"background embedding stopped: {failed.message}")

    def correction_target(self) -> int | None:
        """The object a correction re-propagates: the annotations layer's selected label when it is a propagated
        object, else the last object propagated; ``None`` when none was."""
        viewer, store = self.dock.viewer, self.dock.session.store
        alive = [k for k in self.tracked if store is not None and k in store.records]  # not undone
        if ANNOTATIONS_LAYER in viewer.layers:
            selected = int(viewer.layers[ANNOTATIONS_LAYER].selected_label)
            if selected in alive:
                return selected
        return alive[-1] if alive else None

    def propagate(self) -> int | None:
        """Send the propagation of a new object (newest wins); returns the job id, or None after showing why not."""
        return self._send(None)

    def correct(self) -> int | None:
        """Propagate the target object again with this slice's prompt added; returns the job id or None."""
        target = self.correction_target()
        if target is None:
            self.dock._warn("Nothing to correct yet: propagate an object first; a correction re-runs its "
                            "propagation from the slice in view.")
            return None
        return self._send(target)

    def _send(self, target: int | None) -> int | None:
        try:
            prompts = None
            if target is not None:
                new = self.slice_prompt()
                prompts = [p for p in self.tracked[target] if p.slice_index != new.slice_index] + [new]
            req = self.request(prompts)
        except VipInputError as exc:
            self.dock._warn(str(exc))
            return None
        self._target = target
        self._job = self.dock.bridge.submit(req, "VIP segment: propagation", self._on_result, self._on_error,
                                            channel="segment-propagate")
        for b in (self.button, self.correct_btn):
            b.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        k = req.prompts[-1].slice_index
        self.dock.status.setText(f"Correcting object {target} from slice {k}…" if target is not None
                                 else f"Propagating from slice {k}…")
        return self._job

    def cancel(self) -> None:
        if self._job is not None:
            self.dock.bridge.cancel(self._job)

    def _finished(self) -> None:
        self._job = None
        for b in (self.button, self.correct_btn):
            b.setEnabled(True)
        self.cancel_btn.setEnabled(False)

    def _on_error(self, failed) -> None:
        self._finished()
        if failed.kind != "stale":
            self.dock._warn(failed.message, notify=False)

    def _on_result(self, result) -> None:
        """Keep the result and commit it on the next event-loop turn (receiving a large mask and writing it into
        the label volume are two pauses of the viewer; one after the other they would be one long pause)."""
        self._finished()
        self.last_result = result
        QTimer.singleShot(5, lambda target=self._target: self._commit(result, target))

    def _commit(self, result, target: int | None) -> None:
        """Commit the propagated mask as one object (or replace the corrected object where the run reached); the
        layer is refreshed on the next event-loop turn and the annotations autosaved on the one after."""
        dock = self.dock
        layer = dock.image_layer()
        ann = dock.annotations_layer(layer)
        prompts = {"slices": [int(s) for s in result.slices], "prompts": [p.to_dict() for p in result.prompts]}
        try:
            if target is not None and target in dock.session.store.records:
                dock.session.revise_volume(target, result.mask, result.slices, prompts, result.provenance.to_dict())
                obj, done = target, "corrected on"
            elif result.mask_box is None:
                dock._warn("The propagation found the object on no slice; nothing to commit.")
                return
            else:
                obj = dock.session.commit_volume(result.mask, prompts=prompts, provenance=result.provenance.to_dict(),
                                                 source="propagation", box=result.box_slices())
                done = "propagated to"
        except VipInputError as exc:
            dock._warn(str(exc))
            return
        self.tracked.pop(obj, None)
        self.tracked[obj] = list(result.prompts)  # newest last: the default correction target
        done = "cancelled: kept" if result.cancelled else done
        dock.status.setText(f"Object {obj} {done} {len(result.slices)} slice(s).")

        def show_and_save():  # the layer's redraw, then the autosave: each its own event-loop turn
            dock._sync_annotations(ann)
            self.committed = (obj, result)
            QTimer.singleShot(5, lambda: autosave_annotations(layer, dock.session))

        QTimer.singleShot(5, show_and_save)


def autosave_annotations(image_layer, session) -> None:
    """Save the session's label volume and records beside the user's cache, keyed by the image's content, on the
    autosave writer thread (:func:`napari_vip.io.autosave.save_in_background`)."""
    from ..io.autosave import Autosave, cached_image_key, save_in_background

    if session.store is not None:
        save_in_background(Autosave(), cached_image_key(image_layer.data), session.store.labels,
                           session.records_metadata())
