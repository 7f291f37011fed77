"""Open napari with the VIP docks on a sample image or a file (``napari-vip gui``)."""

from __future__ import annotations

#: Manifest command ids of the docks opened by ``napari-vip gui``, in order.
DOCKS = [
    "napari-vip.classify_widget",
    "napari-vip.prompts_widget",
    "napari-vip.attention_widget",
    "napari-vip.segment_widget",
    "napari-vip.learn_widget",
    "napari-vip.evaluate_widget",
    "napari-vip.finetune_widget",
]


def open_viewer(path: str | None = None, screenshot: str | None = None, show: bool = True):
    """A viewer with ``path`` (or the bundled retina sample) and the VIP docks.

    With ``screenshot``, the window is saved to that PNG shortly after it appears and closed.
    """
    import napari

    from ..io.readers import project_plugin

    viewer = napari.Viewer(show=show)
    if path:  # napari-vip's reader for the formats it reads (napari's builtin one claims them too)
        viewer.open(path, plugin=project_plugin(path))
    else:
        viewer.open_sample("napari-vip", "retina")
    docks = [viewer.window.add_plugin_dock_widget("napari-vip", _widget_name(cmd), tabify=True)[0] for cmd in DOCKS]
    from qtpy.QtCore import QTimer

    from ..layers import MARKERS_LAYER

    if MARKERS_LAYER in viewer.layers:  # ready to draw a marker, not a segmentation click
        markers = viewer.layers[MARKERS_LAYER]
        viewer.layers.selection.active = markers
        markers.mode = "add_rectangle"

    if show:  # room for the image beside the docks
        width, height = viewer.window.geometry()[2:]
        viewer.window.resize(max(width, 1400), max(height, 900))

    def settle():
        if docks:  # the classify dock in front; the others are tabs beside it
            docks[0].raise_()
        viewer.reset_view()  # fit the image to the canvas the docks left

    QTimer.singleShot(0, settle)
    if screenshot:
        from qtpy.QtCore import QTimer

        def shoot():
            viewer.screenshot(screenshot, canvas_only=False)
            viewer.close()

        QTimer.singleShot(2000, shoot)
    return viewer


def _widget_name(command_id: str) -> str:
    import npe2

    pm = npe2.PluginManager.instance()
    manifest = pm.get_manifest("napari-vip")
    for w in manifest.contributions.widgets or []:
        if w.command == command_id:
            return w.display_name
    raise KeyError(command_id)
