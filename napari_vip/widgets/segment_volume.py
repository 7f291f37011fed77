"""The volume row of the "VIP segment" dock: propagate the object on the slice in view through the stack.

The prompt is the candidate shown on the slice in view (its mask), else the box of the selected or newest marker.
A :class:`~napari_vip.worker.volume.PropagateRequest` runs in the worker with progress and cancel (a cancelled run
keeps the slices it reached); the propagated ``(Z, Y, X)`` mask becomes one object of "VIP annotations" through
:meth:`~napari_vip.worker.segment_session.SegmentSession.commit_volume` (other objects' voxels are kept), and the
annotations are autosaved (:mod:`napari_vip.io.autosave`) so a crash loses nothing.
"""

from __future__ import annotations

import numpy as np
from qtpy.QtWidgets import QHBoxLayout, QPushButton, QWidget

from ..core.errors import VipInputError
from ..layers import plane_index, spatial_shape


class VolumeRow(QWidget):
    """"Propagate through the volume" and its cancel button, for the segment dock ``dock``."""

    def __init__(self, dock, parent=None):
        super().__init__(parent)
        self.dock = dock
        self.last_result = None
        self._job: int | None = None
        self.button = QPushButton("Propagate through the volume")
        self.button.clicked.connect(lambda *_: self.propagate())
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
        self.cancel_btn.clicked.connect(lambda *_: self.cancel())
        self.restore_btn = QPushButton("Restore autosaved annotations")
        self.restore_btn.setVisible(False)
        self.restore_btn.clicked.connect(lambda *_: self.restore())
        self._autosave = None  # the entry offered for restoring
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.button)
        row.addWidget(self.cancel_btn)
        row.addWidget(self.restore_btn)

    def offer_restore(self, layer) -> bool:
        """Show "Restore autosaved annotations" when ``layer``'s image has an autosave that its shape fits and the
        viewer has no annotations of that shape yet (a crash or an unsaved close); returns whether it is offered."""
        from ..io.autosave import Autosave, image_key
        from ..layers import ANNOTATIONS_LAYER

        entry = None
        if layer is not None:
            viewer = self.dock.viewer
            has = ANNOTATIONS_LAYER in viewer.layers and np.any(viewer.layers[ANNOTATIONS_LAYER].data)
            entry = None if has else Autosave().latest(image_key(layer.data))
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

    def request(self):
        """The :class:`~napari_vip.worker.volume.PropagateRequest` of the slice in view; VipInputError if none."""
        from ..models.propagation import SlicePrompt
        from ..worker.volume import PropagateRequest

        dock = self.dock
        layer = dock.image_layer()
        shape = spatial_shape(layer)
        if len(shape) != 3 or getattr(layer, "rgb", False):
            raise VipInputError(f"Propagation needs a 3D gray volume; {layer.name!r} has spatial shape {shape}.")
        (k,) = plane_index(layer, dock.viewer.dims)
        session = dock.session
        if session.result is not None and session.result.masks.shape[0] == 1:
            prompt = SlicePrompt(k, mask=session.result.masks[0, session.shown_candidate()])
        else:
            from .segment_layers import layer_prompts

            boxes, _, _ = layer_prompts(dock.viewer, layer, dock._box_index)
            if not boxes:
                raise VipInputError("Draw a box on this slice (or segment it first), then propagate.")
            prompt = SlicePrompt(k, box_xyxy=tuple(boxes[0]))
        limits = tuple(float(v) for v in layer.contrast_limits)
        return PropagateRequest(volume=np.asarray(layer.data), prompts=[prompt], model=dock.model.spec(), axis=0,
                                window=limits, device=dock.model.device_name())

    def propagate(self) -> int | None:
        """Send the propagation (newest wins); returns the job id, or None after showing why not."""
        try:
            req = self.request()
        except VipInputError as exc:
            self.dock._warn(str(exc))
            return None
        self._job = self.dock.bridge.submit(req, "VIP segment: propagation", self._on_result, self._on_error,
                                            channel="segment-propagate")
        self.button.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        self.dock.status.setText(f"Propagating from slice {req.prompts[0].slice_index}…")
        return self._job

    def cancel(self) -> None:
        if self._job is not None:
            self.dock.bridge.cancel(self._job)

    def _finished(self) -> None:
        self._job = None
        self.button.setEnabled(True)
        self.cancel_btn.setEnabled(False)

    def _on_error(self, failed) -> None:
        self._finished()
        if failed.kind != "stale":
            self.dock._warn(failed.message, notify=False)

    def _on_result(self, result) -> None:
        """Commit the propagated mask as one object, then autosave the annotations."""
        self._finished()
        self.last_result = result
        dock = self.dock
        layer = dock.image_layer()
        ann = dock.annotations_layer(layer)
        if not np.any(result.mask):
            dock._warn("The propagation found the object on no slice; nothing to commit.")
            return
        try:
            new = dock.session.commit_volume(result.mask, prompts={"slices": [int(s) for s in result.slices],
                                                                   "prompts": [p.to_dict() for p in result.prompts]},
                                             provenance=result.provenance.to_dict(), source="propagation")
        except VipInputError as exc:
            dock._warn(str(exc))
            return
        dock._sync_annotations(ann)
        autosave_annotations(layer, dock.session)
        done = "cancelled: kept" if result.cancelled else "propagated to"
        dock.status.setText(f"Object {new} {done} {len(result.slices)} slice(s).")


def autosave_annotations(image_layer, session) -> None:
    """Save the session's label volume and records beside the user's cache, keyed by the image's content."""
    from ..io.autosave import Autosave, image_key

    if session.store is not None:
        Autosave().save(image_key(image_layer.data), session.store.labels, session.records_metadata())
