"""npe2 writer for the "VIP annotations" Labels layer: the label image plus the JSON sidecar of its objects.

The file formats are those of :mod:`napari_vip.core.annotations` (label image by extension, sidecar JSON).
"""

from __future__ import annotations

import numpy as np

from ..core.annotations import AnnotationRecord, AnnotationStore


def write_annotations(path, data, attributes: dict | None = None) -> list[str]:
    """npe2 writer: a Labels layer as a label image plus the JSON sidecar of its objects.

    The records come from ``attributes['metadata']['vip_annotations']`` (the list the "VIP segment" dock
    keeps there); label values without a record are listed with ``source: "unknown"``.
    """
    meta = (attributes or {}).get("metadata") or {}
    records = [AnnotationRecord.from_dict(d) for d in meta.get("vip_annotations", [])]
    arr = np.asarray(data)
    store = AnnotationStore(arr.shape, arr, [r for r in records])
    present = set(np.unique(arr).tolist()) - {0}
    for k in sorted(present - set(store.records)):
        store.records[int(k)] = AnnotationRecord(int(k), source="unknown", area=int((arr == k).sum()))
    for k in list(store.records):
        if k not in present:
            del store.records[k]
    return list(store.save(path))
