"""napari layers <-> napari-vip types (no Qt): the plane in view, markers from the markers layer, arrows.

napari shape vertices are (row, col) in the shapes layer's data coordinates; they are mapped through
world coordinates onto the image layer's pixels, then converted to (x, y) by :mod:`napari_vip.core.coords`.
"""

from __future__ import annotations

import numpy as np

from .core.coords import box_xyxy_from_vertices_rc, rc_to_xy
from .core.errors import VipInputError
from .core.markers import COLORS, STYLES, Marker

MARKERS_LAYER = "VIP markers"
ARROWS_LAYER = "VIP arrows"
CLICKS_LAYER = "VIP clicks"
HEATMAP_LAYER = "VIP text heatmap"
CURRENT_LAYER = "VIP current mask"
ANNOTATIONS_LAYER = "VIP annotations"
MODEL_VIEW_LAYER = "VIP model view"
#: Render style a new shape gets from its napari shape type.
DEFAULT_STYLE = {"rectangle": "bbox", "ellipse": "circle", "line": "arrow", "polygon": "bbox", "path": "bbox"}


def plane_index(layer, viewer_dims=None) -> tuple[int, ...]:
    """Indices of an Image layer's leading (non-plane) axes at the viewer's position; ``()`` for 2D images.

    The position is rounded and clipped to the data; without ``viewer_dims`` every leading index is 0.
    """
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    nd = data.ndim - (1 if getattr(layer, "rgb", False) else 0)
    if nd < 2:
        raise VipInputError(f"Layer {layer.name!r} has {nd} spatial dimension(s); napari-vip needs an image.")
    if nd == 2:
        return ()
    if viewer_dims is None:
        return (0,) * (nd - 2)
    world_point = np.asarray(viewer_dims.point, dtype=float)
    data_point = np.asarray(layer.world_to_data(world_point[-layer.ndim:]), dtype=float)
    return tuple(int(np.clip(np.round(v), 0, data.shape[i] - 1)) for i, v in enumerate(data_point[: nd - 2]))


def image_plane(layer, viewer_dims=None) -> np.ndarray:
    """The 2D plane of an Image layer in view: ``(H, W)`` or ``(H, W, 3|4)`` ndarray.

    For nD layers the non-displayed axes take the viewer's current position (:func:`plane_index`); the
    last two layer axes are the plane.  Multiscale layers use their full-resolution level.
    """
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    return np.asarray(data[plane_index(layer, viewer_dims)])


def spatial_shape(layer) -> tuple[int, ...]:
    """An Image layer's spatial shape: its data shape without the colour axis (full-resolution level)."""
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    shape = tuple(int(v) for v in data.shape)
    return shape[:-1] if getattr(layer, "rgb", False) else shape


def display_window(layer) -> tuple[tuple[float, float], bool]:
    """``(contrast_limits, invert)`` the user sees: inverted for ``gray_r``-like colormaps."""
    name = getattr(layer.colormap, "name", "") or ""
    invert = name.endswith("_r") or name in ("I Blue", "I Forest", "I Bordeaux", "I Purple", "I Orange")
    return tuple(float(v) for v in layer.contrast_limits), bool(invert)


def model_input(layer, viewer_dims=None):
    """:class:`~napari_vip.core.image.ModelImage` of the plane in view, windowed as displayed."""
    from .core.image import to_model_rgb

    plane = image_plane(layer, viewer_dims)
    limits, invert = display_window(layer)
    rgb = bool(getattr(layer, "rgb", False))
    if rgb and plane.dtype == np.uint8 and tuple(limits) == (0.0, 255.0):
        limits = None  # unwindowed colour photograph: pass through exactly
    return to_model_rgb(plane, contrast_limits=limits, invert=invert, rgb=rgb)


def ensure_markers_layer(viewer, image_layer=None):
    """The "VIP markers" Shapes layer, added (over ``image_layer``'s extent and scale) if missing."""
    if MARKERS_LAYER in viewer.layers:
        return viewer.layers[MARKERS_LAYER]
    kwargs = {}
    edge_width = 2.0
    if image_layer is not None:
        kwargs = {"scale": image_layer.scale[-2:], "translate": image_layer.translate[-2:]}
        plane = image_layer.data[0] if getattr(image_layer, "multiscale", False) else image_layer.data
        hw = plane.shape[-3:-1] if getattr(image_layer, "rgb", False) else plane.shape[-2:]
        edge_width = max(2.0, 0.004 * max(hw))  # visible at whole-image zoom
    layer = viewer.add_shapes(
        name=MARKERS_LAYER, ndim=2, edge_color="red", face_color="transparent", edge_width=edge_width,
        features={"style": np.array([], dtype=object), "color": np.array([], dtype=object)},
        feature_defaults={"style": "", "color": ""}, **kwargs,
    )
    layer.mode = "add_rectangle"
    return layer


def shape_style(layer, i: int) -> str:
    """The render style of shape ``i``: its ``style`` feature, else (``""``) the default for its shape type."""
    if "style" in layer.features and i < len(layer.features):
        val = layer.features["style"].iloc[i]
        if isinstance(val, str) and val in STYLES:
            return val
    return DEFAULT_STYLE.get(layer.shape_type[i], "bbox")


def shape_color(layer, i: int, default: str = "red") -> str:
    """The colour of shape ``i``: its ``color`` feature, else (``""``) ``default``."""
    if "color" in layer.features and i < len(layer.features):
        val = layer.features["color"].iloc[i]
        if isinstance(val, str) and val in COLORS:
            return val
    return default


def _to_image_rc(shapes_layer, image_layer, vertices) -> np.ndarray:
    """Shape vertices (data coords of the shapes layer) -> (row, col) pixels of the image layer's plane."""
    v = np.asarray(vertices, dtype=float)
    world = np.array([shapes_layer.data_to_world(p) for p in v])
    img_nd = image_layer.ndim
    pad = img_nd - world.shape[1]
    if pad > 0:  # 2D markers over an nD image: only the displayed plane matters
        world = np.hstack([np.zeros((len(world), pad)), world])
    data = np.array([image_layer.world_to_data(p[-img_nd:]) for p in world])
    return data[:, -2:]


def markers_from_layer(shapes_layer, image_layer, line_width: int = 1, selected_only: bool = False,
                       default_color: str = "red") -> list[Marker]:
    """:class:`Marker` for each shape on the markers layer, in the image layer's pixel (x, y) frame.

    Rectangles and polygons give their bounding box, ellipses their bounding box, lines an arrow
    (first vertex tail, second vertex head).
    """
    markers = []
    indices = sorted(shapes_layer.selected_data) if selected_only else range(len(shapes_layer.data))
    for i in indices:
        rc = _to_image_rc(shapes_layer, image_layer, shapes_layer.data[i])
        style, color = shape_style(shapes_layer, i), shape_color(shapes_layer, i, default_color)
        if shapes_layer.shape_type[i] == "line":
            tail, head = rc_to_xy(rc[0]), rc_to_xy(rc[-1])
            arrow = Marker.from_arrow(tail, head, color, line_width)
            markers.append(Marker(arrow.box_xyxy, style, color, line_width, arrow.arrow_xy))
        else:
            markers.append(Marker(box_xyxy_from_vertices_rc(rc), style, color, line_width))
    return markers


def arrow_vectors(shapes_layer) -> np.ndarray:
    """``(N, 2, 2)`` napari vectors (position, projection) for the line shapes: tail -> head."""
    vecs = []
    for data, kind in zip(shapes_layer.data, shapes_layer.shape_type):
        if kind == "line":
            tail, head = np.asarray(data[0], float)[-2:], np.asarray(data[-1], float)[-2:]
            vecs.append([tail, head - tail])
    return np.asarray(vecs, dtype=float).reshape(-1, 2, 2)


def sync_arrows_layer(viewer, shapes_layer) -> None:
    """Mirror the markers layer's lines into an arrow-styled Vectors layer so the heads show."""
    vecs = arrow_vectors(shapes_layer)
    colors = [shape_color(shapes_layer, i) for i, k in enumerate(shapes_layer.shape_type) if k == "line"]
    if ARROWS_LAYER in viewer.layers:
        layer = viewer.layers[ARROWS_LAYER]
        layer.data = vecs
    elif len(vecs):
        layer = viewer.add_vectors(vecs, name=ARROWS_LAYER, vector_style="arrow", length=1,
                                   edge_width=float(np.max(shapes_layer.edge_width)) if len(shapes_layer.data) else 2.0,
                                   scale=shapes_layer.scale, translate=shapes_layer.translate, opacity=1.0)
    else:
        return
    if len(vecs):
        layer.edge_color = [c for c in colors]
