"""The image chooser the docks share: a combo box of the viewer's Image layers that are not napari-vip's own."""

from __future__ import annotations

from qtpy.QtWidgets import QComboBox

from ..core.errors import VipInputError

VIP_PREFIX = "VIP "
NO_IMAGE = "No image layer: open an image (File > Open, or File > Open Sample > napari-vip)."


def user_image_layers(layers) -> list:
    """The Image layers of ``layers`` that napari-vip did not make (names not starting with ``"VIP "``).

    Parameters
    ----------
    layers : napari.components.LayerList

    Returns
    -------
    list of napari.layers.Image
        In layer-list order.
    """
    from napari.layers import Image

    return [layer for layer in layers if isinstance(layer, Image) and not layer.name.startswith(VIP_PREFIX)]


class ImageLayerChooser(QComboBox):
    """Lists the user's Image layers by name and keeps the current choice while layers come and go.

    The owning dock connects ``viewer.layers.events.inserted`` / ``removed`` to :meth:`refresh` (or to its
    own slot that calls it), so it can act after the list is up to date.

    Parameters
    ----------
    viewer : napari.Viewer
    follow_active : bool
        Select the layer the user makes active in the layer list (when it is one of the listed layers).
    parent : QWidget, optional
    """

    def __init__(self, viewer, follow_active: bool = False, parent=None):
        super().__init__(parent)
        self.viewer = viewer
        if follow_active:
            viewer.layers.selection.events.active.connect(self._on_active)

    def refresh(self, event=None) -> None:
        """Re-list the layers without emitting signals; the current name stays chosen while it exists."""
        current = self.currentText()
        names = [layer.name for layer in user_image_layers(self.viewer.layers)]
        self.blockSignals(True)
        self.clear()
        self.addItems(names)
        if current in names:
            self.setCurrentText(current)
        self.blockSignals(False)

    def layer(self, required: bool = True):
        """The chosen layer.

        Parameters
        ----------
        required : bool
            Raise when there is none; otherwise return ``None``.

        Raises
        ------
        VipInputError
            No image layer is chosen and ``required``.
        """
        name = self.currentText()
        if name and name in self.viewer.layers:
            return self.viewer.layers[name]
        if required:
            raise VipInputError(NO_IMAGE)
        return None

    def _on_active(self, event=None) -> None:
        active = self.viewer.layers.selection.active
        if user_image_layers([active]):
            self.setCurrentText(active.name)
