"""Assemble DICOM series from folders (or lists of files) into volumes.

Files are grouped by SeriesInstanceUID, one napari layer per series. Within a series, slices are
sorted by the projection of ImagePositionPatient on the slice normal (the cross product of the
two ImageOrientationPatient directions), falling back to InstanceNumber, then to the file name.
The slice axis scale is the median distance between neighbouring slices.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.errors import VipInputError
from .dicom import (
    colour_values,
    decode_pixels,
    has_pixels,
    is_colour,
    layer_kwargs,
    make_affine,
    modality_values,
    orientation,
    pixel_spacing,
    position,
    read_dataset,
    read_dicom_file,
    use_preset,
)

#: Files never read as images.
_SKIP_NAMES = {"dicomdir", "readme", "readme.txt", "license", "license.txt"}


@dataclass
class _Header:
    path: Path
    ds: object
    series: str
    size: tuple[int, int]
    frames: int
    iop: np.ndarray | None
    ipp: np.ndarray | None
    instance: int | None


@dataclass
class FolderScan:
    """What a folder holds: image headers by series, and the files that were skipped (and why)."""

    series: dict[str, list[_Header]] = field(default_factory=dict)
    not_dicom: list[Path] = field(default_factory=list)
    no_pixels: list[Path] = field(default_factory=list)
    n_files: int = 0


def _instance(ds) -> int | None:
    try:
        return int(ds.get("InstanceNumber"))
    except (TypeError, ValueError):
        return None


def scan_files(paths) -> FolderScan:
    """Read the headers of ``paths`` (no pixels) and group the images by SeriesInstanceUID."""
    scan = FolderScan()
    groups: dict[str, list[_Header]] = defaultdict(list)
    for p in paths:
        scan.n_files += 1
        try:
            ds = read_dataset(p, pixels=False)
        except VipInputError:
            scan.not_dicom.append(p)
            continue
        if not (has_pixels(ds) and "Rows" in ds and "Columns" in ds):  # SR, RT structures...
            scan.no_pixels.append(p)
            continue
        uid = str(ds.get("SeriesInstanceUID", "") or "")
        groups[uid].append(_Header(p, ds, uid, (int(ds.Rows), int(ds.Columns)),
                                   int(ds.get("NumberOfFrames", 1) or 1), orientation(ds), position(ds),
                                   _instance(ds)))
    scan.series = dict(groups)
    return scan


def list_folder(folder: Path) -> list[Path]:
    """Every regular, non-hidden file below ``folder`` (recursively), sorted by path."""
    out = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for f in sorted(files):
            if f.startswith(".") or f.lower() in _SKIP_NAMES or f.lower().startswith("dicomdir"):
                continue
            out.append(Path(root) / f)
    return out


def read_dicom_folder(folder, window: str | None = None) -> list[tuple]:
    """Read every DICOM series below ``folder``: one napari layer per series.

    Parameters
    ----------
    folder : str or Path
    window : str, optional
        CT preset to use instead of the files' window.

    Returns
    -------
    list of (data, kwargs, "image")
        Volumes are ``(slices, rows, cols)`` with ``scale = (slice_spacing, row_spacing, col_spacing)``.

    Raises
    ------
    VipInputError
        Empty folder, no DICOM images in it, or a series whose slices cannot be stacked.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise VipInputError(f"{folder} is not a folder.")
    files = list_folder(folder)
    if not files:
        raise VipInputError(f"The folder {folder} is empty: there are no DICOM files in it to open.")
    return read_dicom_files(files, window=window, where=f"the folder {folder}")


def read_dicom_files(paths, window: str | None = None, where: str = "the selected files") -> list[tuple]:
    """Read a set of DICOM files: one napari layer per series (see :func:`read_dicom_folder`)."""
    scan = scan_files([Path(p) for p in paths])
    if not scan.series:
        parts = []
        if scan.not_dicom:
            parts.append(f"{len(scan.not_dicom)} not DICOM (e.g. {scan.not_dicom[0].name})")
        if scan.no_pixels:
            parts.append(f"{len(scan.no_pixels)} without pixel data (e.g. {scan.no_pixels[0].name})")
        raise VipInputError(f"No DICOM images in {where}: of {scan.n_files} file(s), {'; '.join(parts)}.")
    layers = []
    for _uid, headers in sorted(scan.series.items(), key=lambda kv: _series_key(kv[1])):
        if len(headers) == 1 or any(h.frames > 1 for h in headers):
            for h in headers:  # single images and multi-frame files: one layer each
                layers.extend(read_dicom_file(h.path, window=window))
        else:
            layers.append(stack_series(headers, window=window))
    return layers


def _series_key(headers):
    try:
        number = int(headers[0].ds.get("SeriesNumber"))
    except (TypeError, ValueError):
        number = 1 << 30
    return number, str(headers[0].path)


def _describe(headers, key) -> str:
    counts = Counter(key(h) for h in headers)
    parts = []
    for value, n in counts.most_common():
        example = next(h.path.name for h in headers if key(h) == value)
        parts.append(f"{n} file(s) {value} (e.g. {example})")
    return "; ".join(parts)


def check_stackable(headers, label: str) -> None:
    """Raise a :class:`VipInputError` naming the odd files if slices differ in size or orientation."""
    sizes = {h.size for h in headers}
    if len(sizes) > 1:
        raise VipInputError(
            f"Series {label} mixes image sizes, so its slices cannot be stacked into a volume: "
            f"{_describe(headers, lambda h: f'{h.size[1]}x{h.size[0]} pixels')}. "
            "Open the odd files separately, or move them to another folder.")
    colours = {is_colour(h.ds) for h in headers}
    if len(colours) > 1:
        raise VipInputError(f"Series {label} mixes gray and colour images; open them separately.")
    iops = [h.iop for h in headers if h.iop is not None]
    if iops and any(not np.allclose(i, iops[0], atol=1e-3) for i in iops):
        def fmt(h):
            if h.iop is None:
                return "without orientation"
            return "oriented " + _plane_name(h.iop)
        raise VipInputError(
            f"Series {label} mixes slice orientations, so it is not one volume: {_describe(headers, fmt)}. "
            "A localizer (scout) often shares the series; open the slices of one orientation on their own.")


def _plane_name(iop: np.ndarray) -> str:
    normal = np.cross(iop[0], iop[1])
    axis = int(np.argmax(np.abs(normal)))
    name = ("sagittal", "coronal", "axial")[axis]
    return f"{name} [{', '.join(f'{v:.3g}' for v in iop.ravel())}]"


def sort_slices(headers) -> tuple[list, float | None, np.ndarray | None, list[str]]:
    """Order slices along the normal.

    Returns
    -------
    ordered : list
        Headers from the first to the last slice.
    spacing : float or None
        Median distance between neighbouring slices in mm (``None`` when positions are unknown).
    step : (3,) array or None
        Median LPS step from one slice to the next.
    notes : list of str
    """
    notes: list[str] = []
    iop = headers[0].iop
    if iop is not None and all(h.ipp is not None for h in headers):
        normal = np.cross(iop[0], iop[1])
        where = np.array([float(h.ipp @ normal) for h in headers])
        order = np.argsort(where, kind="stable")
        ordered = [headers[i] for i in order]
        gaps = np.diff(where[order])
        if np.all(gaps > 1e-4):
            spacing = float(np.median(gaps))
            if gaps.max() - gaps.min() > max(0.01 * spacing, 1e-3):
                notes.append(f"uneven slice spacing ({gaps.min():.3g} to {gaps.max():.3g} mm; missing slices?); "
                             f"scale uses the median {spacing:.3g} mm")
            steps = np.diff(np.stack([h.ipp for h in ordered]), axis=0)
            return ordered, spacing, np.median(steps, axis=0), notes
        notes.append("several images share a slice position (time points or echoes?): stacked by InstanceNumber")
    if all(h.instance is not None for h in headers):
        if not notes:
            notes.append("no ImagePositionPatient: slices sorted by InstanceNumber, slice spacing unknown")
        return sorted(headers, key=lambda h: h.instance), None, None, notes
    notes.append("no slice positions or instance numbers: slices sorted by file name")
    return sorted(headers, key=lambda h: str(h.path)), None, None, notes


def stack_series(headers, window: str | None = None) -> tuple:
    """Read, sort and stack the slices of one series into a ``(slices, rows, cols[, 3])`` layer."""
    first = headers[0].ds
    label = repr(str(first.get("SeriesDescription", "") or headers[0].path.parent.name))
    check_stackable(headers, label)
    ordered, spacing, step, notes = sort_slices(headers)
    colour = is_colour(first)
    planes = []
    datasets = []
    for h in ordered:
        ds = read_dataset(h.path)
        raw = decode_pixels(ds, h.path.name)
        if colour:
            planes.append(colour_values(raw, ds))
        else:
            planes.append(modality_values(raw, ds))
        datasets.append(ds)
    dtype = np.result_type(*[p.dtype for p in planes])
    if dtype == np.float64:
        dtype = np.float32
    data = np.stack([p.astype(dtype, copy=False) for p in planes])
    spacing_rc, tag = pixel_spacing(first)
    if spacing_rc is None:
        spacing_rc = (1.0, 1.0)
        notes.append("no pixel spacing in the files: scale is 1 per pixel")
    if spacing is None:
        thickness = first.get("SpacingBetweenSlices") or first.get("SliceThickness")
        try:
            spacing = float(thickness)
            notes.append("slice spacing taken from SpacingBetweenSlices/SliceThickness")
        except (TypeError, ValueError):
            spacing = 1.0
    affine = None
    if ordered[0].iop is not None and ordered[0].ipp is not None and step is not None:
        affine = make_affine(ordered[0].iop, ordered[0].ipp, spacing_rc, step)
    # the window most slices share (slices of one series rarely differ)
    ref = _most_common_window_ds(datasets)
    name = str(first.get("SeriesDescription", "") or ordered[0].path.parent.name)
    kwargs = layer_kwargs(ref, data, name=name, source=ordered[0].path.parent, scale=(spacing, *spacing_rc),
                          affine=affine, notes=notes, colour=colour)
    kwargs["metadata"]["vip_files"] = [str(h.path) for h in ordered]
    if window:
        use_preset(kwargs, window)
    return data, kwargs, "image"


def _most_common_window_ds(datasets):
    def key(ds):
        return str(ds.get("WindowCenter")), str(ds.get("WindowWidth"))

    counts = Counter(key(ds) for ds in datasets)
    best = counts.most_common(1)[0][0]
    return next(ds for ds in datasets if key(ds) == best)
