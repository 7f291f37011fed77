"""Display windows (DICOM VOI windows and CT presets) as napari contrast limits.

A *window* is a ``(center, width)`` pair in the image's real units (Hounsfield units for CT).
napari shows an image through ``contrast_limits = (low, high)``: ``low`` is black, ``high`` white.
:func:`window_to_limits` converts one into the other exactly as the DICOM standard's VOI
windowing does, so napari's display and :func:`pydicom.pixels.apply_voi_lut` agree.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.errors import VipInputError


@dataclass(frozen=True)
class Window:
    """A display window in the image's real units.

    Attributes
    ----------
    center : float
        Window level (DICOM WindowCenter).
    width : float
        Window width (DICOM WindowWidth), positive.
    label : str
        Human-readable name ("lung", "file: WINDOW1"...).
    """

    center: float
    width: float
    label: str = ""

    @property
    def limits(self) -> tuple[float, float]:
        """``(low, high)`` contrast limits for the DICOM ``LINEAR`` function."""
        return window_to_limits(self.center, self.width)


#: CT presets in Hounsfield units ``(center, width)``; common radiology teaching values.
WINDOW_PRESETS: dict[str, Window] = {
    "lung": Window(-600.0, 1500.0, "lung"),
    "mediastinum": Window(50.0, 350.0, "mediastinum"),
    "soft_tissue": Window(40.0, 400.0, "soft tissue"),
    "bone": Window(400.0, 1800.0, "bone"),
    "brain": Window(40.0, 80.0, "brain"),
}

#: Other spellings accepted by :func:`preset_window`.
_ALIASES = {"soft tissue": "soft_tissue", "soft-tissue": "soft_tissue", "softtissue": "soft_tissue",
            "abdomen": "soft_tissue", "mediastinal": "mediastinum", "head": "brain"}


def window_to_limits(center: float, width: float, function: str = "LINEAR") -> tuple[float, float]:
    """Contrast limits ``(low, high)`` equivalent to a DICOM VOI window.

    Parameters
    ----------
    center, width : float
        WindowCenter and WindowWidth in the units of the modality-LUT output (e.g. HU).
    function : {"LINEAR", "LINEAR_EXACT", "SIGMOID"}
        DICOM VOILUTFunction. ``LINEAR`` (the default in DICOM) maps
        ``center - 0.5 - (width - 1) / 2`` to black and ``center - 0.5 + (width - 1) / 2`` to
        white (PS3.3 C.11.2.1.2.1). ``LINEAR_EXACT`` uses ``center -/+ width / 2``. ``SIGMOID``
        cannot be shown by a linear colormap; its ``LINEAR_EXACT`` limits are the closest match.

    Returns
    -------
    tuple of float
        ``(low, high)`` with ``low < high``.
    """
    center, width = float(center), float(width)
    function = (function or "LINEAR").upper()
    if function == "LINEAR":
        if width < 1:
            raise VipInputError(f"Window width {width} is below 1, which the DICOM LINEAR window does not allow.")
        c, w = center - 0.5, width - 1.0
        if w == 0:  # width 1: a threshold at the center
            return c, c + 1e-6
        return c - w / 2.0, c + w / 2.0
    if width <= 0:
        raise VipInputError(f"Window width {width} must be positive.")
    return center - width / 2.0, center + width / 2.0


def preset_window(name: str) -> Window:
    """The CT window preset called ``name`` (see :data:`WINDOW_PRESETS`; case and spaces ignored).

    Raises
    ------
    VipInputError
        If there is no such preset; the message lists those there are.
    """
    key = name.strip().lower()
    key = _ALIASES.get(key, key.replace(" ", "_").replace("-", "_"))
    if key not in WINDOW_PRESETS:
        raise VipInputError(f"No window preset called {name!r}; choose one of: {', '.join(WINDOW_PRESETS)}.")
    return WINDOW_PRESETS[key]


def preset_limits(name: str) -> tuple[float, float]:
    """``(low, high)`` contrast limits of the CT preset ``name``, in Hounsfield units."""
    return preset_window(name).limits


def apply_window_preset(layer, name: str) -> tuple[float, float]:
    """Set a napari Image layer's contrast limits to a CT preset and record it in its metadata.

    Parameters
    ----------
    layer : napari.layers.Image
        Any object with ``contrast_limits`` and ``metadata`` attributes (no Qt needed).
    name : str
        Preset name, see :data:`WINDOW_PRESETS`.

    Returns
    -------
    tuple of float
        The limits set. ``layer.metadata['vip_window']`` holds them too, so model code sees the
        same window as the user.
    """
    win = preset_window(name)
    low, high = win.limits
    # widen the range first: napari refuses limits outside contrast_limits_range
    rng = getattr(layer, "contrast_limits_range", None)
    if rng is not None:
        layer.contrast_limits_range = (min(low, rng[0]), max(high, rng[1]))
    layer.contrast_limits = (low, high)
    layer.metadata["vip_window"] = (low, high)
    info = dict(layer.metadata.get("vip_window_info") or {})
    info.update(center=win.center, width=win.width, function="LINEAR", source=f"preset: {win.label}")
    layer.metadata["vip_window_info"] = info
    return low, high
