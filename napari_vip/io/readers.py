"""Which of napari-vip's readers opens a path: DICOM (file, folder, list), NIfTI, JSRT ``.IMG``.

napari's builtin reader also claims ``.nii``/``.nii.gz``/``.dcm`` names (through imageio), so opening such a
file without naming a plugin stops with napari's ``MultipleReaderError``.  :func:`project_plugin` says when to
name ``napari-vip`` (``viewer.open(path, plugin=project_plugin(path))``); every other file is left to napari.
"""

from __future__ import annotations

#: The plugin name of napari-vip's readers (the manifest's ``name``).
PLUGIN = "napari-vip"


def project_reader(path):
    """The reader function of napari-vip that claims ``path`` (str, Path or list of those), or ``None``."""
    from .dicom_reader import get_dicom_reader
    from .jsrt import get_jsrt_reader
    from .nifti import get_nifti_reader

    if not isinstance(path, (list, tuple)):
        path = str(path)
    for get in (get_nifti_reader, get_jsrt_reader, get_dicom_reader):
        reader = get(path)
        if reader is not None:
            return reader
    return None


def project_plugin(path) -> str | None:
    """``"napari-vip"`` when one of its readers claims ``path``, else ``None`` (napari chooses)."""
    return PLUGIN if project_reader(path) is not None else None
