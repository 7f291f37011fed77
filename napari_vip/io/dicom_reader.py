"""npe2 reader entry for DICOM: one file, a folder holding one or more series, or a list of files.

Single files are read by :mod:`napari_vip.io.dicom`, folders and lists by :mod:`napari_vip.io.dicom_series`.
"""

from __future__ import annotations

import os
from pathlib import Path

from .dicom import DICOM_SUFFIXES, has_dicom_preamble, looks_like_dicom, read_dicom_file
from .dicom_series import read_dicom_files, read_dicom_folder


def read_dicom(path, window: str | None = None) -> list[tuple]:
    """Read a DICOM file, a folder holding one or more series, or a list of files.

    This is the npe2 reader function. Folders and lists go through
    :func:`napari_vip.io.dicom_series.read_dicom_files`, one layer per series.

    Parameters
    ----------
    path : str, Path or list of those
    window : str, optional
        CT preset name to use instead of the file's window (gray images only).

    Returns
    -------
    list of (data, kwargs, "image")
    """
    if isinstance(path, (list, tuple)):
        if len(path) == 1:
            return read_dicom(path[0], window)
        return read_dicom_files([Path(p) for p in path], window=window)
    p = Path(path)
    if p.is_dir():
        return read_dicom_folder(p, window=window)
    return read_dicom_file(p, window=window)


def _folder_may_hold_dicom(folder: Path, limit: int = 300) -> bool:
    """Empty folders and folders with DICOM-looking files within the first ``limit`` entries."""
    if folder.suffix.lower() in (".zarr", ".n5", ".ome"):
        return False
    seen = 0
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for f in files:
            seen += 1
            if f.startswith(".") or f in ("zarr.json", ".zarray", ".zgroup"):
                continue
            p = Path(root) / f
            if p.suffix.lower() in DICOM_SUFFIXES or has_dicom_preamble(p):
                return True
            if seen >= limit:
                return False
    return seen == 0


def get_dicom_reader(path):
    """npe2 ``get_reader``: :func:`read_dicom` for DICOM files and folders, ``None`` otherwise.

    Files named like DICOM are claimed even when damaged, so the user gets a message saying
    what is wrong instead of "no reader found". Empty folders are claimed for the same reason.
    """
    if isinstance(path, (list, tuple)):
        return read_dicom if path and all(looks_like_dicom(p) for p in path) else None
    p = Path(path)
    if p.is_dir():
        return read_dicom if _folder_may_hold_dicom(p) else None
    return read_dicom if looks_like_dicom(p) else None

