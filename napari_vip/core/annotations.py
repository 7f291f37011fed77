"""Committed segmentation objects: a label image, one record per object, commit/undo, and a JSON sidecar.

No Qt, no torch.  The "VIP segment" dock keeps an :class:`AnnotationStore` beside its "VIP annotations"
Labels layer; the CLI uses the same store to write its output.

Label image
    Integer array with the image's spatial shape (``(H, W)``, or ``(..., H, W)`` for nD images); 0 is
    background and object ``k`` has value ``k``.  A commit paints only unlabelled pixels, so committing never
    overwrites an earlier object; undo restores exactly the pixels the last commit changed.
Sidecar JSON (``<label file stem>.json`` unless named)
    ``{"format": "napari-vip annotations", "version": 1, "shape": [...], "objects": [record, ...]}``; each
    record has ``id``, ``plane`` (indices of the leading axes; ``[]`` in 2D), ``prompts`` (``boxes_xyxy``,
    ``points_xy``, ``point_labels`` in (x, y) pixels of the plane), ``model`` (the result's provenance: model
    spec, weights sha256, untrained flag, package version), ``score``, ``area`` (pixels), ``bbox_rc``
    (``[r0, c0, r1, c1]``, end exclusive), ``created`` (ISO 8601 UTC time) and ``source``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .errors import VipInputError
from .label_image import LABEL_SUFFIXES, read_label_image, write_label_image

SIDECAR_FORMAT = "napari-vip annotations"
SIDECAR_VERSION = 1


@dataclass
class AnnotationRecord:
    """One committed object (see the module docstring for the fields)."""

    id: int
    plane: tuple[int, ...] = ()
    prompts: dict = field(default_factory=dict)
    model: dict = field(default_factory=dict)
    score: float | None = None
    area: int = 0
    bbox_rc: tuple[int, int, int, int] = (0, 0, 0, 0)
    created: str = ""
    source: str = "sam"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["plane"] = list(self.plane)
        d["bbox_rc"] = list(self.bbox_rc)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> AnnotationRecord:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        known["id"] = int(known["id"])
        known["plane"] = tuple(int(v) for v in known.get("plane", ()))
        known["bbox_rc"] = tuple(int(v) for v in known.get("bbox_rc", (0, 0, 0, 0)))
        return cls(**known)


@dataclass
class _Change:
    id: int
    plane: tuple[int, ...] | None  # None: the commit spanned the whole label volume
    flat_index: np.ndarray | None  # indices into the plane, ravelled, that the commit changed
    previous: np.ndarray  # their values before (in the order of flat_index, or of changed's True voxels)
    record: AnnotationRecord | None = None  # a revision: the object's record before it
    region: tuple[slice, ...] | None = None  # a volume change: the box it happened in
    changed: np.ndarray | None = None  # bool, the region's shape: the voxels changed

    def undo(self, labels: np.ndarray) -> None:
        if self.region is not None:
            labels[self.region][self.changed] = self.previous
        else:
            view = labels[self.plane] if self.plane else labels
            view.reshape(-1)[self.flat_index] = self.previous


class AnnotationStore:
    """Label image + records + undo history.

    Parameters
    ----------
    shape : tuple of int
        Spatial shape of the image: ``(H, W)`` or ``(..., H, W)``.
    labels : np.ndarray, optional
        Existing label image of that shape (copied); ``records`` their records.
    """

    def __init__(self, shape, labels: np.ndarray | None = None, records=None):
        self.shape = tuple(int(v) for v in shape)
        if len(self.shape) < 2:
            raise VipInputError(f"Annotations need a 2D or nD image shape; got {self.shape}.")
        if labels is None:
            self.labels = np.zeros(self.shape, dtype=np.int32)
        else:
            arr = np.asarray(labels)
            if arr.shape != self.shape:
                raise VipInputError(f"Label image has shape {arr.shape}; the image has {self.shape}.")
            if arr.dtype.kind not in "iub":
                raise VipInputError(f"Label image has dtype {arr.dtype}; expected integers.")
            self.labels = arr.astype(np.int32, copy=True)
        self.records: dict[int, AnnotationRecord] = {r.id: r for r in (records or [])}
        self._history: list[_Change] = []

    # -- ids -----------------------------------------------------------------------------------------------------
    def next_id(self) -> int:
        """One more than every id in use (in the records or the label image)."""
        top = max(self.records, default=0)
        if self.labels.size:
            top = max(top, int(self.labels.max()))
        return top + 1

    @property
    def can_undo(self) -> bool:
        return bool(self._history)

    def plane_view(self, plane=()) -> np.ndarray:
        plane = tuple(int(v) for v in plane)
        if len(plane) != len(self.shape) - 2:
            raise VipInputError(f"Plane index {plane} does not fit labels of shape {self.shape}.")
        return self.labels[plane] if plane else self.labels

    # -- commit / undo -------------------------------------------------------------------------------------------
    def commit(self, mask: np.ndarray, plane=(), prompts: dict | None = None, provenance: dict | None = None,
               score: float | None = None, source: str = "sam") -> int:
        """Add ``mask`` (``(H, W)`` bool, on plane ``plane``) as a new object; returns its id.

        Only unlabelled pixels are painted: earlier objects are never overwritten.  Raises
        :class:`VipInputError` for a mask of the wrong shape, an empty mask, or one that lies wholly on
        earlier objects.
        """
        view = self.plane_view(plane)
        m = np.asarray(mask)
        if m.shape != view.shape:
            raise VipInputError(f"Mask has shape {m.shape}; the image plane has {view.shape}.")
        m = m.astype(bool)
        if not m.any():
            raise VipInputError("The mask is empty; nothing to commit. Try another box or more positive clicks.")
        free = m & (view == 0)
        if not free.any():
            raise VipInputError("Every pixel of this mask already belongs to a committed object; nothing new to add.")
        new_id = self.next_id()
        idx = np.flatnonzero(free)
        flat = view.reshape(-1)  # a view: labels is C-contiguous
        prev = flat[idx].copy()
        flat[idx] = new_id
        rows, cols = np.nonzero(free)
        rec = AnnotationRecord(new_id, tuple(int(v) for v in plane), dict(prompts or {}), dict(provenance or {}),
                               None if score is None else float(score), int(free.sum()),
                               (int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1),
                               datetime.now(timezone.utc).isoformat(timespec="seconds"), source)
        self.records[new_id] = rec
        self._history.append(_Change(new_id, rec.plane, idx, prev))
        return new_id

    def commit_volume(self, mask: np.ndarray, prompts: dict | None = None, provenance: dict | None = None,
                      score: float | None = None, source: str = "propagation", box=None) -> int:
        """Add ``mask`` (bool, the store's whole shape, e.g. ``(Z, Y, X)``) as one new object; returns its id.

        As :meth:`commit`, on every plane at once: only unlabelled voxels are painted.  The record's ``plane``
        is ``()``, its ``bbox_rc`` the rows/columns extent over all planes, and its prompts get ``"planes"``:
        the ``[first, last]`` index of the first leading axis that holds the object.  The work is done inside the
        mask's bounding box (``box``: slices per axis that hold every ``True`` of ``mask``, when the caller knows
        them), so a small object in a large volume commits in milliseconds.
        """
        m = np.asarray(mask)
        if m.shape != self.shape:
            raise VipInputError(f"Mask has shape {m.shape}; the annotations have {self.shape}.")
        m = m.astype(bool, copy=False)
        box = bounding_box(m) if box is None else tuple(box)
        new_id = self.next_id()
        if box is None:
            free = None
        elif new_id == 1:  # no object yet: every voxel is free
            free = m[box]
        else:
            free = m[box] & (self.labels[box] == 0)
        if free is None or not free.any():
            raise VipInputError("The mask has no voxel outside committed objects; nothing to commit.")
        self.labels[box][free] = new_id  # free voxels were 0
        ext = tuple(slice(0, n) for n in free.shape) if new_id == 1 else bounding_box(free)  # within box
        lead, rows, cols = ext[0], ext[-2], ext[-1]
        off = [b.start for b in box]
        prompts = dict(prompts or {})
        if free.ndim > 2:
            prompts["planes"] = [lead.start + off[0], lead.stop - 1 + off[0]]
        rec = AnnotationRecord(new_id, (), prompts, dict(provenance or {}), None if score is None else float(score),
                               int(np.count_nonzero(free)), (rows.start + off[-2], cols.start + off[-1],
                                                             rows.stop + off[-2], cols.stop + off[-1]),
                               datetime.now(timezone.utc).isoformat(timespec="seconds"), source)
        self.records[new_id] = rec
        changed = free.copy() if new_id == 1 else free  # not a view of the caller's mask
        self._history.append(_Change(new_id, None, None, np.zeros(rec.area, self.labels.dtype), region=box,
                                     changed=changed))
        return new_id

    def revise_volume(self, object_id: int, mask: np.ndarray, planes, prompts: dict | None = None,
                      provenance: dict | None = None, source: str = "correction") -> int:
        """Replace object ``object_id`` on ``planes`` (indices of the first axis) by ``mask`` there; returns how
        many voxels changed.

        ``mask`` is bool of the store's whole shape; only its ``planes`` are read.  On those planes the object's
        voxels outside ``mask`` become background and ``mask``'s voxels that are background become the object:
        other objects' voxels are never taken.  The record gets the new prompts, provenance, area and extent
        (``planes`` over all its voxels).  Undo restores voxels and record exactly.
        """
        if object_id not in self.records:
            raise VipInputError(f"Object {object_id} is not among the annotations; propagate it first.")
        m = np.asarray(mask)
        if m.shape != self.shape:
            raise VipInputError(f"Mask has shape {m.shape}; the annotations have {self.shape}.")
        planes = sorted({int(p) for p in planes})
        if not planes:
            raise VipInputError("A correction needs the planes it reached.")
        z0, z1 = planes[0], planes[-1] + 1
        sel = np.zeros(z1 - z0, bool)
        sel[np.asarray(planes) - z0] = True
        sel = sel.reshape((-1,) + (1,) * (len(self.shape) - 1))
        slab, m = self.labels[z0:z1], m[z0:z1].astype(bool, copy=False)
        own = slab == object_id
        box = bounding_box((own | m) & sel)  # the work is done inside it
        change = None
        if box is not None:
            sub, sub_own = slab[box], own[box]
            sub_sel = np.broadcast_to(sel, slab.shape)[box]
            new = m[box] & ((sub == 0) | sub_own) & sub_sel  # never another object's voxels
            change = (sub_own & sub_sel) != new
            prev = sub[change]
            sub[change] = np.where(new[change], object_id, 0)
            box = (slice(box[0].start + z0, box[0].stop + z0),) + box[1:]
        old = self.records[object_id]
        whole = self.labels == object_id
        extent = bounding_box(whole)
        rec_prompts = dict(prompts if prompts is not None else old.prompts)
        if extent is not None and len(self.shape) > 2:
            rec_prompts["planes"] = [extent[0].start, extent[0].stop - 1]
        bbox = ((extent[-2].start, extent[-1].start, extent[-2].stop, extent[-1].stop) if extent is not None
                else (0, 0, 0, 0))
        self.records[object_id] = AnnotationRecord(
            object_id, old.plane, rec_prompts, dict(provenance if provenance is not None else old.model), old.score,
            int(np.count_nonzero(whole)), bbox, datetime.now(timezone.utc).isoformat(timespec="seconds"), source)
        if change is None:
            self._history.append(_Change(object_id, None, np.zeros(0, np.intp), np.zeros(0, self.labels.dtype), old))
            return 0
        self._history.append(_Change(object_id, None, None, prev, old, box, change))
        return int(np.count_nonzero(change))

    def undo(self) -> AnnotationRecord | None:
        """Take back the last commit or revision (its pixels return to their previous values, a revised object
        its previous record); returns the record taken back."""
        if not self._history:
            return None
        change = self._history.pop()
        change.undo(self.labels)
        if change.record is not None:
            taken = self.records.get(change.id)
            self.records[change.id] = change.record
            return taken
        return self.records.pop(change.id, None)

    # -- sidecar -------------------------------------------------------------------------------------------------
    def to_sidecar(self) -> dict:
        return {"format": SIDECAR_FORMAT, "version": SIDECAR_VERSION, "shape": list(self.shape),
                "objects": [self.records[k].to_dict() for k in sorted(self.records)]}

    def save(self, label_path, sidecar_path=None) -> tuple[str, str]:
        """Write the label image (PNG/TIFF/NumPy by extension) and the JSON sidecar; returns both paths."""
        return write_annotations_files(label_path, self.labels, self.to_sidecar(), sidecar_path)

    @classmethod
    def load(cls, label_path, sidecar_path=None) -> AnnotationStore:
        """Read a label image and its sidecar back (sidecar default: :func:`sidecar_for`)."""
        labels = read_label_image(label_path)
        side = Path(sidecar_path) if sidecar_path else sidecar_for(label_path)
        records = []
        if side.is_file():
            data = read_sidecar(side)
            if data["shape"] != list(labels.shape):
                raise VipInputError(f"Sidecar {str(side)!r} describes shape {tuple(data['shape'])}, but "
                                    f"{str(label_path)!r} has {labels.shape}; they do not belong together.")
            records = [AnnotationRecord.from_dict(o) for o in data["objects"]]
        present = set(np.unique(labels).tolist()) - {0}
        known = {r.id for r in records}
        for k in sorted(present - known):  # objects without a record (e.g. painted by hand)
            records.append(AnnotationRecord(int(k), source="unknown", area=int((labels == k).sum())))
        return cls(labels.shape, labels, records)


def bounding_box(mask: np.ndarray) -> tuple[slice, ...] | None:
    """Slices of the smallest box that holds every ``True`` of an nD bool ``mask``; ``None`` when it has none."""
    box = []
    for axis in range(mask.ndim):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        if not hit.size:
            return None
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(box)


def sidecar_for(label_path) -> Path:
    """``mask.png`` -> ``mask.json`` (the default sidecar next to a label image)."""
    p = Path(label_path)
    return p.with_suffix(".json")


def read_sidecar(path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise VipInputError(f"Sidecar {str(path)!r} is not valid JSON: line {exc.lineno}: {exc.msg}.") from None
    except OSError as exc:
        raise VipInputError(f"Could not read sidecar {str(path)!r}: {exc}.") from None
    if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT:
        raise VipInputError(f"{str(path)!r} is not a napari-vip annotations sidecar (no format "
                            f"{SIDECAR_FORMAT!r}).")
    if not isinstance(data.get("objects"), list) or not isinstance(data.get("shape"), list):
        raise VipInputError(f"Sidecar {str(path)!r} lacks its 'shape' or 'objects'.")
    return data


def write_annotations_files(label_path, labels, sidecar: dict, sidecar_path=None) -> tuple[str, str]:
    """Write ``labels`` by extension and ``sidecar`` as JSON; returns ``(label_path, sidecar_path)``."""
    p = Path(label_path)
    if p.suffix.lower() not in LABEL_SUFFIXES:
        raise VipInputError(f"Save annotations as {', '.join(LABEL_SUFFIXES)}; {p.name!r} has another extension.")
    written = write_label_image(p, labels)
    side = Path(sidecar_path) if sidecar_path else sidecar_for(written)
    side.parent.mkdir(parents=True, exist_ok=True)
    side.write_text(json.dumps(sidecar, indent=2))
    return written, str(side)
