"""DICOM-SEG export of a label map that lies on a DICOM series, with highdicom.

The label map is ``(Z, Y, X)`` integer, slice ``z`` on the ``z``-th file of ``source_files`` as the series
reader ordered them (``metadata["vip_files"]`` of the image layer).  Each object id becomes one segment,
labelled with the annotation's name; the prompts and model provenance go into the segments' algorithm
parameters, so the SEG says how every mask was made.  highdicom is imported inside functions.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..core.errors import VipInputError


def write_dicom_seg(path, labels, source_files, names: dict | None = None, provenance: dict | None = None,
                    series_description: str = "napari-vip segmentation") -> list[str]:
    """Write ``labels`` as a binary DICOM Segmentation that references the source series.

    Parameters
    ----------
    path : path
        The ``.dcm`` file to write.
    labels : (Z, Y, X) integer array
        0 background; every other value one object (one segment).
    source_files : list of path
        The series' files in the label map's slice order (``Z`` of them, each ``(Y, X)``).
    names : dict, optional
        ``{object id: name}`` for segment labels (default ``object N``).
    provenance : dict, optional
        Prompts and model provenance (JSON-serialisable); stored in each segment's algorithm parameters.

    Returns
    -------
    list of str
        The written path.
    """
    import highdicom as hd
    from pydicom import dcmread
    from pydicom.sr.codedict import codes

    from .. import __version__

    arr = np.asarray(labels)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or not np.issubdtype(arr.dtype, np.integer) and arr.dtype != bool:
        raise VipInputError(f"DICOM-SEG needs a (slices, rows, columns) integer label map; got {arr.shape} "
                            f"{arr.dtype}.")
    files = [Path(f) for f in (source_files or [])]
    if len(files) != arr.shape[0]:
        raise VipInputError(f"The label map has {arr.shape[0]} slices but the source series has {len(files)} files: "
                            "DICOM-SEG needs the labels of the DICOM series they were drawn on (open the series "
                            "folder with napari-vip's reader).")
    sources = [dcmread(str(f)) for f in files]
    rows, cols = int(sources[0].Rows), int(sources[0].Columns)
    if arr.shape[1:] != (rows, cols):
        raise VipInputError(f"The label map's slices are {arr.shape[1:]}, the series' images {(rows, cols)}.")
    ids = [int(v) for v in np.unique(arr) if v != 0]
    if not ids:
        raise VipInputError("The label map is empty: nothing to write to DICOM-SEG.")
    names = {int(k): str(v) for k, v in (names or {}).items()}
    params = {"napari_vip_version": __version__,
              "provenance": json.dumps(provenance or {}, default=str)[:10000]}
    algorithm = hd.AlgorithmIdentificationSequence(name="napari-vip", family=codes.cid7162.ArtificialIntelligence,
                                                   version=__version__, parameters=params)
    descriptions, stacked = [], np.zeros(arr.shape + (len(ids),), np.uint8)
    for n, obj in enumerate(ids, start=1):
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=n, segment_label=(names.get(obj) or f"object {obj}")[:64],
            segmented_property_category=codes.cid7150.Tissue, segmented_property_type=codes.cid7166.ConnectiveTissue,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC, algorithm_identification=algorithm,
            tracking_id=f"napari-vip object {obj}", tracking_uid=hd.UID()))
        stacked[..., n - 1] = arr == obj
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=stacked, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=9001,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="napari-vip",
        manufacturer_model_name="napari-vip", software_versions=__version__, device_serial_number="0",
        series_description=series_description[:64], omit_empty_frames=True)
    out = Path(path).expanduser()
    if out.suffix.lower() != ".dcm":
        out = out.with_name(out.name + ".dcm")
    out.parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(str(out))
    return [str(out)]


def read_dicom_seg(path, source_files) -> tuple[np.ndarray, dict]:
    """``(labels (Z, Y, X) uint16, {object number: segment label})`` of a SEG, on ``source_files``' slices.

    Segment ``n`` is written back as label ``n``; slices are matched by the source SOP Instance UIDs.
    """
    import highdicom as hd
    from pydicom import dcmread

    seg = hd.seg.segread(str(path))
    uids = [str(dcmread(str(f), stop_before_pixels=True).SOPInstanceUID) for f in source_files]
    numbers = list(seg.segment_numbers)
    masks = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, segment_numbers=numbers,
                                              combine_segments=True, skip_overlap_checks=True)
    labels = {n: seg.get_segment_description(n).segment_label for n in numbers}
    return np.asarray(masks).astype(np.uint16), labels
