"""The layers of the "VIP segment" dock: made over the image when missing, read for prompts, written with results.

Functions of the viewer and the image layer, so the dock keeps only its event wiring.  Names come from
:mod:`napari_vip.layers`.  Coordinates: layers are in world (row, col); prompts come out in the plane's (x, y) pixels.
"""

from __future__ import annotations

import numpy as np

from ..core.coords import box_xyxy_from_vertices_rc, rc_to_xy
from ..layers import (
    ANNOTATIONS_LAYER,
    CLICKS_LAYER,
    CURRENT_LAYER,
    HEATMAP_LAYER,
    MARKERS_LAYER,
    _to_image_rc,
    spatial_shape,
)
from ..worker.segment_session import RECORDS_METADATA

POSITIVE_COLOR = (0.1, 0.85, 0.2, 1.0)
NEGATIVE_COLOR = (0.95, 0.15, 0.15, 1.0)


def data_action(event) -> str | None:
    """A layer data event's action as text (``added``, ``changed``, ``removed``...), None when it has none."""
    action = getattr(event, "action", None)
    return str(getattr(action, "value", action)) if action is not None else None


def plane_geometry(layer) -> dict:
    """``{"scale": ..., "translate": ...}`` of the image layer's last two axes (for 2D layers over it)."""
    return {"scale": np.asarray(layer.scale[-2:]), "translate": np.asarray(layer.translate[-2:])}


def clicks_layer(viewer, image_layer=None):
    """The "VIP clicks" Points layer (positive/negative ``features``), made in add mode when missing."""
    if CLICKS_LAYER in viewer.layers:
        return viewer.layers[CLICKS_LAYER]
    kw = plane_geometry(image_layer) if image_layer is not None else {}
    layer = viewer.add_points(np.empty((0, 2)), ndim=2, name=CLICKS_LAYER, size=8, border_width=0,
                              features={"positive": np.array([], dtype=bool)}, feature_defaults={"positive": True},
                              **kw)
    layer.mode = "add"
    return layer


def color_clicks(layer) -> None:
    """Positive clicks green, negative red."""
    if len(layer.data):
        pos = np.asarray(layer.features["positive"], dtype=bool)
        layer.face_color = np.where(pos[:, None], POSITIVE_COLOR, NEGATIVE_COLOR)


def current_layer(viewer, shape_hw, image_layer):
    """The "VIP current mask" Labels layer (contour) of plane shape ``shape_hw``, remade when the shape changed."""
    if CURRENT_LAYER in viewer.layers:
        layer = viewer.layers[CURRENT_LAYER]
        if layer.data.shape == tuple(shape_hw):
            return layer
        viewer.layers.remove(layer)
    layer = viewer.add_labels(np.zeros(shape_hw, dtype=np.uint8), name=CURRENT_LAYER, opacity=0.9,
                              **plane_geometry(image_layer))
    layer.contour = 2
    layer.editable = False
    return layer


def annotations_layer(viewer, session, image_layer):
    """The "VIP annotations" Labels layer (the image's full spatial shape), its data the session's label volume.

    An existing layer of that shape is adopted with its records; one of another shape that holds objects is
    renamed "(previous image)" and kept, never dropped.
    """
    shape = spatial_shape(image_layer)
    if session.store is None or session.store.shape != shape:
        existing = viewer.layers[ANNOTATIONS_LAYER] if ANNOTATIONS_LAYER in viewer.layers else None
        if existing is not None and tuple(existing.data.shape) == shape:
            session.open_store(shape, existing.data, existing.metadata.get(RECORDS_METADATA))
        else:
            session.open_store(shape)
    if ANNOTATIONS_LAYER in viewer.layers:
        layer = viewer.layers[ANNOTATIONS_LAYER]
        if layer.data is not session.store.labels:
            if tuple(layer.data.shape) != shape and np.any(layer.data):
                layer.name = ANNOTATIONS_LAYER + " (previous image)"  # never drop committed work
                return annotations_layer(viewer, session, image_layer)
            layer.data = session.store.labels
        return layer
    return viewer.add_labels(session.store.labels, name=ANNOTATIONS_LAYER, opacity=0.5, scale=image_layer.scale,
                             translate=image_layer.translate)


def show_heatmap(viewer, heatmap: np.ndarray, image_layer) -> None:
    """Show a ``(H, W)`` float map in [0, 1] as "VIP text heatmap" (inferno, additive) over the plane."""
    if HEATMAP_LAYER in viewer.layers and viewer.layers[HEATMAP_LAYER].data.shape == heatmap.shape:
        viewer.layers[HEATMAP_LAYER].data = heatmap
        return
    if HEATMAP_LAYER in viewer.layers:
        viewer.layers.remove(HEATMAP_LAYER)
    viewer.add_image(heatmap, name=HEATMAP_LAYER, colormap="inferno", opacity=0.45, contrast_limits=(0, 1),
                     blending="additive", **plane_geometry(image_layer))


def marker_box(viewer, image_layer, index: int) -> tuple[float, float, float, float]:
    """``(x0, y0, x1, y1)`` in the plane's pixels of marker ``index`` (its vertices' bounding box)."""
    ml = viewer.layers[MARKERS_LAYER]
    return box_xyxy_from_vertices_rc(_to_image_rc(ml, image_layer, ml.data[index]))


def layer_prompts(viewer, image_layer, box_index: int | None, all_markers: bool = False):
    """``(boxes_xyxy, points_xy, labels)`` from the markers and clicks layers, in the plane's (x, y) pixels.

    The box is the selected marker, else marker ``box_index``; ``all_markers`` takes every marker and no clicks.
    ``points_xy`` is ``(N, 2)`` float, ``labels`` ``(N,)`` int64 (1 positive, 0 negative).
    """
    boxes = []
    if MARKERS_LAYER in viewer.layers:
        ml = viewer.layers[MARKERS_LAYER]
        n = len(ml.data)
        if all_markers:
            boxes = [marker_box(viewer, image_layer, i) for i in range(n)]
        elif n:
            sel = sorted(i for i in ml.selected_data if i < n)
            index = sel[-1] if sel else (box_index if box_index is not None and box_index < n else None)
            if index is not None:
                boxes = [marker_box(viewer, image_layer, index)]
    pts, labels = np.empty((0, 2)), np.empty((0,), dtype=np.int64)
    if CLICKS_LAYER in viewer.layers and not all_markers:
        cl = viewer.layers[CLICKS_LAYER]
        if len(cl.data):
            pts = rc_to_xy(_to_image_rc(cl, image_layer, cl.data))
            labels = np.asarray(cl.features["positive"], dtype=bool).astype(np.int64)
    return boxes, pts, labels
