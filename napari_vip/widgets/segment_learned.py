"""The segment dock's "Segment as learned" row: a text-free segmenter (a CoTexNet folder written by
``napari-vip finetune --method cotexnet``) run on the plane in view with one click, or on every slice of the
volume in view ("Every slice": :class:`~napari_vip.worker.learned_volume.LearnedVolumeRequest`, the masks in the
Labels layer :data:`VOLUME_LAYER`).

The request is the VLSM one (:class:`~napari_vip.worker.vlsm.VlsmSegmentRequest`) with no text: the model reads
none (``needs_text`` False).  Its mask becomes the dock's candidate like every other (commit, undo, annotations);
its probability map goes to "VIP text heatmap".  The weights' provenance, with ``method: cotexnet``, goes with it.
"""

from __future__ import annotations

from qtpy.QtWidgets import QFormLayout, QLineEdit, QWidget

from ..core.errors import VipInputError
from ..layers import plane_index
from .form_rows import button, hbox

VOLUME_LAYER = "VIP learned volume"


class LearnedRow(QWidget):
    """Folder of a text-free model and the "Segment as learned" button.

    Parameters
    ----------
    dock : SegmentWidget
        Gives the image in view, the bridge, the SAM device and ``_on_result`` / ``_on_error`` (through its VLSM
        row's result handler).
    """

    def __init__(self, dock, parent=None):
        super().__init__(parent)
        self.dock = dock
        self.folder = QLineEdit()
        self.folder.setPlaceholderText("folder written by napari-vip finetune --method cotexnet")
        self.folder.setToolTip("A CoTexNet model segments what it was trained on, from the image alone (no text)")
        self.run_btn = button("Segment as learned", self.submit)
        self.volume_btn = button("Every slice", self.submit_volume)
        self.volume_btn.setToolTip("Segment every slice of the volume in view; the masks go to 'VIP learned volume'")
        lay = QFormLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addRow("learned", hbox(self.folder, self.run_btn, self.volume_btn))

    def spec(self):
        """The :class:`~napari_vip.models.vlsm.VlsmSpec` of the folder; VipInputError when it is not text-free."""
        from ..models.vlsm import VlsmSpec
        from ..models.vlsm.spec import text_free_source

        folder = self.folder.text().strip()
        if not folder:
            raise VipInputError("Give the folder of a model trained with napari-vip finetune --method cotexnet.")
        if not text_free_source(folder):
            raise VipInputError(f"{folder!r} is not a text-free model (a folder written by napari-vip finetune "
                                "--method cotexnet); text-prompted VLSMs go in the Text → mask row.")
        return VlsmSpec("clipseg", source=folder)

    def submit(self) -> int | None:
        """Segment the plane in view with the learned model (no text)."""
        from ..worker.vlsm import VlsmSegmentRequest

        dock = self.dock
        try:
            layer = dock.image_layer()
            image, sig, window, invert = dock.model_image(layer)
            req = VlsmSegmentRequest(image.rgb, "", self.spec(), window=window, invert=invert, image_sig=sig,
                                     device=dock.model.device_name())
        except VipInputError as exc:
            dock._warn(str(exc))
            return None
        dock._request_plane = plane_index(layer, dock.viewer.dims)
        return dock.bridge.submit(req, "VIP segment as learned", dock.vlsm._on_result, dock._on_error,
                                  channel="segment-decode")

    def submit_volume(self) -> int | None:
        """Segment every slice of the (Z, Y, X) image layer in view along the axis the viewer scrolls."""
        from ..worker.learned_volume import LearnedVolumeRequest
        from .segment_volume import scrolled_axis

        dock = self.dock
        try:
            layer = dock.image_layer()
            data = layer.data
            if getattr(layer, "rgb", False) or data.ndim != 3:
                raise VipInputError("Every slice needs a volume (a 3D image layer); use Segment as learned on a "
                                    "2D image.")
            axis = scrolled_axis(layer, dock.viewer.dims)
            req = LearnedVolumeRequest(volume=data, vlsm=self.spec(), axis=axis,
                                       window=tuple(float(v) for v in layer.contrast_limits),
                                       device=dock.model.device_name())
        except VipInputError as exc:
            dock._warn(str(exc))
            return None
        return dock.bridge.submit(req, "VIP segment every slice as learned", self._on_volume, dock._on_error,
                                  channel="segment-volume-learned")

    def _on_volume(self, result) -> None:
        viewer = self.dock.viewer
        labels = result.mask.astype("uint8")
        layer = self.dock.image_layer(required=False)
        if VOLUME_LAYER in viewer.layers:
            viewer.layers[VOLUME_LAYER].data = labels
        else:
            kw = {"scale": layer.scale, "translate": layer.translate} if layer is not None else {}
            viewer.add_labels(labels, name=VOLUME_LAYER, **kw)
        untrained = "<b style='color:#e8a33d'>UNTRAINED.</b> " if result.untrained else ""
        self.dock.status.setText(f"{untrained}segmented slices {result.slices[0]}..{result.slices[1]} as learned: "
                                 f"{int(result.mask.sum())} voxels in '{VOLUME_LAYER}'.")
