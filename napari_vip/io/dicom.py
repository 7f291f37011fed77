"""Read DICOM files into napari layers with real units, the file's window and the right colours.

What a DICOM viewer does, and napari's generic readers do not:

- **values**: stored pixels go through the Modality LUT (RescaleSlope/Intercept, or a Modality LUT
  Sequence) exactly as :func:`pydicom.pixels.apply_modality_lut` does, so CT is in Hounsfield units;
- **window**: the first WindowCenter/WindowWidth becomes ``contrast_limits`` (see
  :mod:`napari_vip.io.windows` for the exact DICOM formula and CT presets);
- **MONOCHROME1** (e.g. many radiographs) is shown with the ``gray_r`` colormap; the data stay as stored;
- **colour**: RGB, YBR and PALETTE COLOR become ``(..., 3)`` RGB;
- **geometry**: PixelSpacing (and slice spacing for volumes) is the layer ``scale``.

Layer metadata keys read by the rest of napari-vip:

``vip_window``  ``(low, high)`` floats, the contrast limits the reader chose;
``vip_invert``  ``True`` for MONOCHROME1;
``vip_window_info``  center/width/function/source, and every window the file offers;
``vip_affine``  ``(4, 4)`` float array mapping data indices (layer axis order) to RAS+ millimetres, or ``None``;
``vip_dicom``  key tags (modality, body part, study date, series description...). No patient identifiers.

Series folders are handled in :mod:`napari_vip.io.dicom_series`; the npe2 reader entry that picks
one or the other is :mod:`napari_vip.io.dicom_reader`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ..core.errors import VipInputError
from .windows import Window, window_to_limits

#: File name endings treated as DICOM (compared in lower case).
DICOM_SUFFIXES = (".dcm", ".dicom", ".dic", ".ima", ".dc3")

#: Tags copied into ``metadata['vip_dicom']``: descriptive, never identifying the patient.
KEY_TAGS = ("Modality", "BodyPartExamined", "StudyDate", "SeriesDescription", "StudyDescription",
            "Manufacturer", "PhotometricInterpretation", "ImageType", "RescaleType", "SliceThickness")

#: pip packages that let pydicom decode each compressed transfer syntax (by keyword prefix).
_DECODER_PACKAGES = (
    ("JPEGLS", "pylibjpeg pylibjpeg-libjpeg   (or: pyjpegls, or python-gdcm)"),
    ("JPEG2000", "pylibjpeg pylibjpeg-openjpeg   (or: python-gdcm)"),
    ("HTJ2K", "pylibjpeg pylibjpeg-openjpeg"),
    ("JPEGLossless", "pylibjpeg pylibjpeg-libjpeg   (or: python-gdcm)"),
    ("JPEGExtended", "pylibjpeg pylibjpeg-libjpeg   (or: python-gdcm)"),
    ("JPEG", "pylibjpeg pylibjpeg-libjpeg   (or: python-gdcm)"),
    ("RLE", "pylibjpeg pylibjpeg-rle"),
)


# ----------------------------------------------------------------------------------------------
# Reading a dataset
# ----------------------------------------------------------------------------------------------
def has_dicom_preamble(path) -> bool:
    """``True`` if ``path`` is a file with the 128-byte preamble followed by ``b"DICM"``."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def looks_like_dicom(path) -> bool:
    """Cheap test used to decide whether napari-vip should claim a file: preamble or a DICOM suffix."""
    p = Path(path)
    return p.is_file() and (p.suffix.lower() in DICOM_SUFFIXES or has_dicom_preamble(p))


def _plausible(ds) -> bool:
    """Whether a dataset read with ``force=True`` holds real DICOM elements rather than noise."""
    known = ("SOPClassUID", "Modality", "Rows", "PixelData", "StudyInstanceUID", "SeriesInstanceUID")
    try:
        return any(k in ds for k in known)
    except Exception:  # noqa: BLE001 - garbage decoded as elements can fail in many ways
        return False


def _set_missing_transfer_syntax(ds) -> None:
    """Files without a File Meta header still say how they were encoded; record it so pixels decode."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None)
    if meta is None:
        ds.file_meta = meta = FileMetaDataset()
    if "TransferSyntaxUID" in meta:
        return
    implicit, little = ds.original_encoding
    if implicit is None or little is None:
        return
    if implicit:
        meta.TransferSyntaxUID = ImplicitVRLittleEndian
    else:
        meta.TransferSyntaxUID = ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def read_dataset(path, pixels: bool = True):
    """Read one DICOM file with pydicom, turning every failure into a :class:`VipInputError`.

    Parameters
    ----------
    path : str or Path
        The file.
    pixels : bool
        ``False`` defers reading large values such as the pixel data (fast; for sorting a
        series): the elements are there, their bytes are read on first access.

    Returns
    -------
    pydicom.Dataset
        With ``file_meta.TransferSyntaxUID`` filled in when the file lacked it.

    Raises
    ------
    VipInputError
        The file is missing, not DICOM, or ends before its header does.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    path = Path(path)
    if not path.is_file():
        raise VipInputError(f"{path} does not exist or is not a file.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            try:
                ds = pydicom.dcmread(path, defer_size=None if pixels else 1024)
            except InvalidDicomError:
                # no preamble/'DICM': old or raw files; accept only if real elements come out
                ds = pydicom.dcmread(path, defer_size=None if pixels else 1024, force=True)
                if not _plausible(ds):
                    raise VipInputError(_not_dicom_message(path)) from None
        except VipInputError:
            raise
        except (EOFError, OSError) as err:
            raise VipInputError(
                f"{path.name}: the file ends in the middle of its DICOM header ({err}). It is probably "
                "truncated (an incomplete copy or download); copy it again from the source."
            ) from err
        except Exception as err:  # noqa: BLE001 - pydicom raises many types for damaged files
            raise VipInputError(
                f"{path.name} could not be read as DICOM ({type(err).__name__}: {err}). "
                "If it is DICOM, the file is damaged; otherwise open it with another reader."
            ) from err
    _set_missing_transfer_syntax(ds)
    return ds


def _not_dicom_message(path: Path) -> str:
    return (f"{path.name} is not a DICOM file: it has no 'DICM' marker and no DICOM elements could be "
            "read from it. Check that it was exported as DICOM and copied completely, or open it "
            "with a reader for its real format.")


def has_pixels(ds) -> bool:
    """Whether the dataset carries pixel data (SR documents and RT structures do not)."""
    return any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))


def _syntax(ds):
    meta = getattr(ds, "file_meta", None)
    return None if meta is None else meta.get("TransferSyntaxUID")


def decode_pixels(ds, name: str = "file") -> np.ndarray:
    """``ds.pixel_array`` with clear messages for missing pixels, missing decoders and damage.

    Returns
    -------
    np.ndarray
        pydicom's layout: ``(rows, cols)``, ``(rows, cols, 3)``, ``(frames, rows, cols)`` or
        ``(frames, rows, cols, 3)``; YBR already converted to RGB by pydicom; native byte order.
    """
    if not has_pixels(ds):
        sop = ds.get("SOPClassUID")
        kind = f" (a {sop.name})" if sop is not None and hasattr(sop, "name") else ""
        raise VipInputError(
            f"{name} has no pixel data{kind}: there is no image in it to show. DICOM files such as "
            "structured reports, RT structure sets and DICOMDIR indexes carry only text or contours."
        )
    ts = _syntax(ds)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = ds.pixel_array
    except Exception as err:  # noqa: BLE001 - translated below
        raise VipInputError(_pixel_error_message(ds, ts, err, name)) from err
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr


def _pixel_error_message(ds, ts, err: Exception, name: str) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if ts is not None and getattr(ts, "is_compressed", False):
        keyword = getattr(ts, "keyword", "") or ""
        pkgs = next((p for prefix, p in _DECODER_PACKAGES if keyword.startswith(prefix)),
                    "pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg   (or: python-gdcm)")
        return (f"{name}: its pixel data are compressed as '{ts.name}', which pydicom cannot decode with "
                f"the packages installed here. Install a decoder and open it again:\n"
                f"    pip install {pkgs}\n(pydicom said: {text})")
    if "less than expected" in text or "truncated" in text.lower():
        return (f"{name}: the pixel data are shorter than the image size in the header says ({text}). "
                "The file is probably truncated (an incomplete copy or download); copy it again.")
    if ts is None:
        return (f"{name}: the file does not say how its pixel data are encoded (no Transfer Syntax UID) "
                f"and it could not be guessed ({text}).")
    return (f"{name}: the pixel data could not be decoded ({type(err).__name__}: {text}). "
            "A required image attribute is missing or invalid, so the file is damaged or non-standard.")


# ----------------------------------------------------------------------------------------------
# Values, colours and windows
# ----------------------------------------------------------------------------------------------
def is_colour(ds) -> bool:
    """RGB, YBR_* or PALETTE COLOR (anything that is not MONOCHROME1/2)."""
    pi = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    return int(ds.get("SamplesPerPixel", 1) or 1) > 1 or pi.startswith(("RGB", "YBR", "PALETTE"))


def _smallest_int(lo: float, hi: float):
    for dt in (np.int16, np.int32, np.int64):
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return dt
    return None


def modality_values(arr: np.ndarray, ds) -> np.ndarray:
    """Stored values → real values, with :func:`pydicom.pixels.apply_modality_lut` semantics.

    Equal in value to pydicom's result, but integer rescales stay integer (``int16``/``int32``,
    e.g. CT in HU), and fractional ones give ``float32`` instead of ``float64``, halving memory.
    RT dose grids are also multiplied by DoseGridScaling (giving Gy).

    Parameters
    ----------
    arr : np.ndarray
        Stored gray values, any shape.
    ds : pydicom.Dataset

    Returns
    -------
    np.ndarray
        Same shape as ``arr``.
    """
    from pydicom.pixels import apply_modality_lut

    if ds.get("ModalityLUTSequence"):
        out = apply_modality_lut(arr, ds)
    elif ds.get("RescaleSlope") is not None and ds.get("RescaleIntercept") is not None:
        slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
        if slope == 1.0 and intercept == 0.0:
            out = arr
        elif slope.is_integer() and intercept.is_integer() and arr.dtype.kind in "iu" and arr.size:
            ends = np.array([arr.min(), arr.max()], dtype=np.float64) * slope + intercept
            dt = _smallest_int(ends.min(), ends.max())
            out = (arr.astype(np.int64) * int(slope) + int(intercept)).astype(dt) if dt else \
                apply_modality_lut(arr, ds)
        else:
            out = (arr.astype(np.float64) * slope + intercept).astype(np.float32)
    else:
        out = arr
    scaling = ds.get("DoseGridScaling")
    if str(ds.get("Modality", "")).upper() == "RTDOSE" and scaling is not None:
        out = (out.astype(np.float64) * float(scaling)).astype(np.float32)
    return out


def colour_values(arr: np.ndarray, ds) -> np.ndarray:
    """Colour pixels as RGB: PALETTE COLOR through its lookup table; RGB/YBR as pydicom decoded them."""
    pi = str(ds.get("PhotometricInterpretation", "")).upper()
    if pi.startswith("PALETTE"):
        from pydicom.pixels import apply_color_lut

        return apply_color_lut(arr, ds)
    return arr


def _as_list(value) -> list:
    if value is None:
        return []
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return list(value)
    return [value]


def file_windows(ds) -> list[Window]:
    """Every VOI window the dataset offers, in file order (labels from WindowCenterWidthExplanation)."""
    centers, widths = _as_list(ds.get("WindowCenter")), _as_list(ds.get("WindowWidth"))
    names = _as_list(ds.get("WindowCenterWidthExplanation"))
    out = []
    for i, (c, w) in enumerate(zip(centers, widths)):
        try:
            out.append(Window(float(c), float(w), str(names[i]) if i < len(names) else f"window {i + 1}"))
        except (TypeError, ValueError):
            continue
    return out


def _data_range(data: np.ndarray) -> tuple[float, float]:
    if data.size == 0:
        return 0.0, 1.0
    if data.dtype.kind == "f":
        finite = data[np.isfinite(data)]
        if finite.size == 0:
            return 0.0, 1.0
        lo, hi = float(finite.min()), float(finite.max())
    else:
        lo, hi = float(data.min()), float(data.max())
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def choose_window(ds, data: np.ndarray, colour: bool) -> tuple[tuple[float, float], dict]:
    """Contrast limits for ``data`` and a description of where they came from.

    Order: the file's first WindowCenter/Width; else the input range of a VOI LUT Sequence; else
    the data's finite min/max. Colour images use the full range of their bit depth.

    Returns
    -------
    limits : (float, float)
    info : dict
        ``center``, ``width``, ``function``, ``source`` and ``all`` (every window in the file).
    """
    if colour:
        top = float(np.iinfo(data.dtype).max) if data.dtype.kind in "iu" else 1.0
        if data.dtype.kind in "iu" and data.dtype.itemsize > 1:
            bits = int(ds.get("BitsStored", 8 * data.dtype.itemsize) or 8 * data.dtype.itemsize)
            if str(ds.get("PhotometricInterpretation", "")).upper().startswith("PALETTE"):
                bits = 8 * data.dtype.itemsize
            top = float(min(2 ** bits - 1, np.iinfo(data.dtype).max))
        return (0.0, top), {"source": "colour bit depth", "all": []}
    windows = file_windows(ds)
    function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
    listing = [{"center": w.center, "width": w.width, "label": w.label} for w in windows]
    for win in windows:
        try:
            limits = window_to_limits(win.center, win.width, function)
        except VipInputError:
            continue
        source = "file: WindowCenter/WindowWidth"
        if function == "SIGMOID":
            source += " (SIGMOID shown as its linear range)"
        return limits, {"center": win.center, "width": win.width, "function": function,
                        "source": source, "label": win.label, "all": listing}
    voi = ds.get("VOILUTSequence")
    if voi:
        try:
            n, first = int(voi[0].LUTDescriptor[0]) or 65536, float(voi[0].LUTDescriptor[1])
            return (first, first + n - 1), {"source": "file: VOI LUT input range (LUT shape not applied)",
                                             "all": listing}
        except (AttributeError, IndexError, TypeError, ValueError):
            pass
    return _data_range(data), {"source": "data range (the file has no window)", "all": listing}


# ----------------------------------------------------------------------------------------------
# Geometry
# ----------------------------------------------------------------------------------------------
def _first(seq_owner, *names):
    """Walk nested single-item sequences: ``_first(ds, 'SharedFunctionalGroupsSequence', 'PixelMeasuresSequence')``."""
    item = seq_owner
    for name in names:
        seq = item.get(name) if item is not None else None
        if not seq:
            return None
        item = seq[0]
    return item


def pixel_spacing(ds) -> tuple[tuple[float, float] | None, str]:
    """``(row_spacing, col_spacing)`` in mm and the tag it came from, or ``(None, reason)``."""
    candidates = [(ds, "PixelSpacing"),
                  (_first(ds, "SharedFunctionalGroupsSequence", "PixelMeasuresSequence"), "PixelSpacing"),
                  (_first(ds, "PerFrameFunctionalGroupsSequence", "PixelMeasuresSequence"), "PixelSpacing"),
                  (ds, "ImagerPixelSpacing")]
    for owner, tag in candidates:
        if owner is None:
            continue
        value = owner.get(tag)
        try:
            r, c = float(value[0]), float(value[1])
        except (TypeError, ValueError, IndexError):
            continue
        if r > 0 and c > 0:
            return (r, c), tag
    return None, "no PixelSpacing"


def orientation(ds) -> np.ndarray | None:
    """ImageOrientationPatient as ``(2, 3)``: row direction (along columns) and column direction, LPS."""
    value = ds.get("ImageOrientationPatient")
    if value is None:
        value = getattr(_first(ds, "SharedFunctionalGroupsSequence", "PlaneOrientationSequence"),
                        "ImageOrientationPatient", None)
    try:
        arr = np.asarray([float(v) for v in value], dtype=np.float64).reshape(2, 3)
    except (TypeError, ValueError):
        return None
    if not np.all(np.isfinite(arr)) or np.linalg.norm(np.cross(arr[0], arr[1])) < 1e-3:
        return None
    return arr


def position(ds) -> np.ndarray | None:
    """ImagePositionPatient ``(3,)`` in LPS mm, or ``None``."""
    value = ds.get("ImagePositionPatient")
    try:
        arr = np.asarray([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return arr if arr.shape == (3,) and np.all(np.isfinite(arr)) else None


def make_affine(iop: np.ndarray, origin_lps: np.ndarray, spacing_rc, slice_step_lps=None) -> np.ndarray:
    """``(4, 4)`` affine from data indices to RAS+ mm.

    Parameters
    ----------
    iop : (2, 3) array
        ImageOrientationPatient (LPS).
    origin_lps : (3,) array
        ImagePositionPatient of the first slice (LPS).
    spacing_rc : (float, float)
        Row and column spacing in mm.
    slice_step_lps : (3,) array, optional
        LPS step from one slice to the next. When given, the affine is for ``(slice, row, col)``
        indices; otherwise for ``(row, col, 0)`` with the third column along the slice normal.
    """
    row_dir, col_dir = iop[0], iop[1]  # direction of increasing column index, of increasing row index
    normal = np.cross(row_dir, col_dir)
    dr, dc = spacing_rc
    cols = [col_dir * dr, row_dir * dc]
    if slice_step_lps is not None:
        cols = [np.asarray(slice_step_lps, dtype=np.float64)] + cols
    else:
        cols = cols + [normal]
    aff = np.eye(4)
    aff[:3, :3] = np.stack(cols, axis=1)
    aff[:3, 3] = origin_lps
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ aff  # LPS -> RAS


def _frame_geometry(ds, n_frames: int):
    """Spacing and LPS step between the frames of a multi-frame file, when the file says."""
    iop = orientation(ds)
    positions = []
    for item in ds.get("PerFrameFunctionalGroupsSequence") or []:
        pos = _first(item, "PlanePositionSequence")
        positions.append(position(pos) if pos is not None else None)
    if iop is not None and len(positions) == n_frames and all(p is not None for p in positions):
        pts = np.stack(positions)
        diffs = np.diff(pts, axis=0)
        if n_frames > 1 and np.all(np.linalg.norm(diffs, axis=1) > 1e-6):
            step = np.median(diffs, axis=0)
            return float(np.linalg.norm(step)), pts[0], step, "PlanePositionSequence"
    offsets = ds.get("GridFrameOffsetVector")
    origin = position(ds)
    if offsets is not None and iop is not None and origin is not None and len(offsets) == n_frames > 1:
        d = np.diff(np.asarray([float(v) for v in offsets]))
        if np.all(d != 0):
            normal = np.cross(iop[0], iop[1])
            dz = float(np.median(d))
            return abs(dz), origin + normal * float(offsets[0]), normal * dz, "GridFrameOffsetVector"
    for owner in (ds, _first(ds, "SharedFunctionalGroupsSequence", "PixelMeasuresSequence")):
        value = owner.get("SpacingBetweenSlices") if owner is not None else None
        if value is not None and float(value) > 0:
            normal = np.cross(iop[0], iop[1]) if iop is not None else None
            step = normal * float(value) if normal is not None else None
            return float(value), origin, step, "SpacingBetweenSlices"
    return None, origin, None, "frames (no spacing in the file)"


# ----------------------------------------------------------------------------------------------
# Layers
# ----------------------------------------------------------------------------------------------
def key_tags(ds) -> dict:
    """Descriptive tags as plain Python values (strings, floats, lists); never patient identifiers."""
    out = {}
    for tag in KEY_TAGS:
        value = ds.get(tag)
        if value is None or value == "":
            continue
        out[tag] = [str(v) for v in value] if type(value).__name__ == "MultiValue" else str(value)
    ts = _syntax(ds)
    if ts is not None:
        out["TransferSyntax"] = getattr(ts, "name", str(ts))
    return out


def layer_kwargs(ds, data: np.ndarray, *, name: str, source, scale, affine, notes, colour: bool) -> dict:
    """napari Image layer keyword arguments (``name``, ``contrast_limits``, ``colormap``, ``rgb``,
    ``scale``, ``metadata``) for ``data`` read from ``ds``."""
    limits, info = choose_window(ds, data, colour)
    invert = (not colour) and str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1"
    modality = str(ds.get("Modality", "") or "")
    meta = {
        "vip_window": (float(limits[0]), float(limits[1])),
        "vip_invert": bool(invert),
        "vip_window_info": info,
        "vip_affine": affine,
        "vip_modality": modality,
        "vip_units": "HU" if modality == "CT" and not colour else ("Gy" if modality == "RTDOSE" else ""),
        "vip_dicom": key_tags(ds),
        "vip_source": str(source),
        "vip_notes": list(notes),
    }
    kwargs = {"name": name, "rgb": bool(colour), "metadata": meta, "scale": tuple(float(s) for s in scale)}
    if colour:
        if data.dtype != np.uint8:
            kwargs["contrast_limits"] = meta["vip_window"]
    else:
        kwargs["contrast_limits"] = meta["vip_window"]
        kwargs["colormap"] = "gray_r" if invert else "gray"
    return kwargs


def _layer_name(ds, path: Path) -> str:
    desc = str(ds.get("SeriesDescription", "") or "").strip()
    return f"{desc} ({path.stem})" if desc else path.stem


def read_dicom_file(path, window: str | None = None) -> list[tuple]:
    """Read one DICOM file (single or multi-frame) as napari layer data.

    Parameters
    ----------
    path : str or Path
    window : str, optional
        A CT preset name (``"lung"``, ``"mediastinum"``, ``"soft_tissue"``, ``"bone"``, ``"brain"``)
        to use instead of the file's window.

    Returns
    -------
    list of (data, kwargs, "image")
        ``data`` is ``(rows, cols)``, ``(rows, cols, 3)``, ``(frames, rows, cols)`` or
        ``(frames, rows, cols, 3)``; gray data are real values (HU for CT), colour data RGB.
        ``scale`` matches ``data``'s non-colour axes, in mm where the file says.

    Raises
    ------
    VipInputError
        Not DICOM, no pixel data, a compression without decoder (names the package), truncated.
    """
    path = Path(path)
    ds = read_dataset(path)
    raw = decode_pixels(ds, path.name)
    colour = is_colour(ds)
    data = colour_values(raw, ds) if colour else modality_values(raw, ds)
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    multi = n_frames > 1 and data.ndim == (4 if colour else 3)
    notes: list[str] = []
    spacing, spacing_tag = pixel_spacing(ds)
    if spacing is None:
        notes.append("no pixel spacing in the file: scale is 1 per pixel")
        spacing = (1.0, 1.0)
    elif spacing_tag == "ImagerPixelSpacing":
        notes.append("scale from ImagerPixelSpacing (at the detector, not corrected for magnification)")
    iop, affine = orientation(ds), None
    if multi:
        dz, origin, step, how = _frame_geometry(ds, n_frames)
        if dz is None:
            dz = 1.0
            notes.append("frames have no spacing in the file (time or cine?): frame axis scale is 1")
        scale = (dz, *spacing)
        if iop is not None and origin is not None and step is not None:
            affine = make_affine(iop, origin, spacing, step)
    else:
        scale = spacing
        origin = position(ds)
        if iop is not None and origin is not None:
            affine = make_affine(iop, origin, spacing)
    kwargs = layer_kwargs(ds, data, name=_layer_name(ds, path), source=path, scale=scale,
                          affine=affine, notes=notes, colour=colour)
    if window:
        use_preset(kwargs, window)
    return [(data, kwargs, "image")]


def use_preset(kwargs: dict, name: str) -> None:
    from .windows import preset_window

    win = preset_window(name)
    if kwargs.get("rgb"):
        raise VipInputError(f"Window presets apply to gray images; {kwargs['name']} is colour.")
    kwargs["contrast_limits"] = win.limits
    kwargs["metadata"]["vip_window"] = win.limits
    kwargs["metadata"]["vip_window_info"].update(center=win.center, width=win.width, function="LINEAR",
                                                 source=f"preset: {win.label}")
