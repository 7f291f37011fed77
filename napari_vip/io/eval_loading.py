"""One front door for evaluation data: the project's CSV, a folder per class, or a public layout's files."""

from __future__ import annotations

from pathlib import Path

from ..core.errors import VipInputError
from .eval_adapters import read_public
from .eval_data import EvalData, read_eval_csv, read_eval_folder


def load_eval_data(path, classes: list[str] | None = None, layout: str | None = None,
                   images: str | None = None, metadata: str | None = None) -> EvalData:
    """Samples from ``path``.

    Parameters
    ----------
    path : str
        The project's CSV, a folder of class folders, or a public metadata file (with ``layout``).
    layout : str, optional
        ``csv`` (default for files), ``folder``, or one of :data:`napari_vip.io.eval_adapters.LAYOUTS`.
    images : str, optional
        The user's local image folder of a public layout.
    metadata : str, optional
        PadChest-GR's metadata CSV (ImageID, label_group, label) beside its grounded reports JSON.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise VipInputError(f"Evaluation data {str(p)!r} does not exist; give a CSV of path,label,x0,y0,x1,y1, "
                            "a folder of class folders, or a public metadata file with --layout.")
    if layout in (None, "csv", "folder"):
        if p.is_dir():
            return read_eval_folder(p, classes)
        return read_eval_csv(p, classes)
    return read_public(p, layout, images, classes, metadata)
