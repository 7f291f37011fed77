"""A segmentation session: prompts -> request -> candidate -> commit/undo, per object and per slice.

No Qt and no napari: the "VIP segment" dock wires layer events to a :class:`SegmentSession` and shows what it
holds; scripts and tests drive the same session directly.

State
    ``store`` — the :class:`~napari_vip.core.annotations.AnnotationStore` of the image: one label volume of the
    image's spatial shape (``(H, W)`` or ``(..., H, W)``), object ``k`` has value ``k``, one record per object.
    ``result`` — the last :class:`~napari_vip.worker.segment.SegmentResult` (the candidate(s)), with the
    ``plane`` it was computed on (indices of the leading axes; ``()`` in 2D) and, for text prompts, the
    :class:`~napari_vip.worker.segment.TextSegmentResult` it came from.  ``candidate`` — which of SAM's
    candidates is shown.
Commit
    Each box of the result becomes a new object id, painted on its ``plane`` of the label volume where no other
    object is (committing never overwrites another object's voxels); its record keeps the prompts, the model's
    provenance, SAM's score and the source (``sam`` or ``text``).  :meth:`commit_volume` adds a whole ``(Z, Y,
    X)`` mask as one object; :meth:`revise_volume` replaces an object on the planes a correction reached.
    :meth:`undo` takes the last commit or revision back exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..core.annotations import AnnotationRecord, AnnotationStore
from ..core.errors import VipInputError
from .segment import SegmentRequest, check_prompts

#: Key of the layer metadata that holds the committed records (a list of record dicts).
RECORDS_METADATA = "vip_annotations"


@dataclass
class SegmentSession:
    """The segmentation state of one image (see the module docstring)."""

    store: AnnotationStore | None = None
    result: object | None = None
    plane: tuple[int, ...] = ()
    text_result: object | None = None
    candidate: int = 0
    notes: list[str] = field(default_factory=list)

    # -- the image's annotations --------------------------------------------------------------------------------
    def open_store(self, shape, labels: np.ndarray | None = None, records=None) -> AnnotationStore:
        """The store for an image of spatial ``shape``: kept when the shape matches, else a new one holding
        ``labels`` (an existing label volume of that shape, e.g. the annotations layer's data) and ``records``
        (record dicts or :class:`AnnotationRecord`)."""
        shape = tuple(int(v) for v in shape)
        if self.store is not None and self.store.shape == shape:
            return self.store
        recs = [r if isinstance(r, AnnotationRecord) else AnnotationRecord.from_dict(r) for r in (records or [])]
        if labels is not None and tuple(np.shape(labels)) == shape:
            self.store = AnnotationStore(shape, np.asarray(labels), recs)
        else:
            self.store = AnnotationStore(shape)
        return self.store

    def records_metadata(self) -> list[dict]:
        """The records as JSON-ready dicts, in id order (what the annotations layer's metadata holds)."""
        return [] if self.store is None else [r.to_dict() for r in self.store.records.values()]

    # -- prompts -> request -------------------------------------------------------------------------------------
    def request(self, image_rgb: np.ndarray, spec, boxes_xyxy, points_xy, point_labels, *, multimask: bool = True,
                refine: bool = True, window=None, invert: bool = False, image_sig: str | None = None,
                device: str = "auto") -> SegmentRequest:
        """A :class:`SegmentRequest` for the plane's prompts; bad prompts are refused here, before the worker.

        Parameters
        ----------
        image_rgb : np.ndarray
            ``(H, W, 3)`` uint8 model input of the plane.
        boxes_xyxy : list of (x0, y0, x1, y1)
        points_xy : array-like
            ``(N, 2)`` clicks in (x, y) pixels; ``point_labels`` ``(N,)`` 1 positive, 0 negative.
        refine : bool
            With clicks and a single-object result on the same plane size, the shown candidate's low-resolution
            logits go along, so SAM refines that mask.
        """
        pts = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
        labels = np.asarray(point_labels, dtype=np.int64).reshape(-1)
        check_prompts(boxes_xyxy, pts, labels, image_rgb.shape[:2])
        logits = None
        prev = self.result
        if (refine and prev is not None and len(pts) and prev.masks.shape[0] == 1
                and prev.masks.shape[2:] == image_rgb.shape[:2]):
            logits = prev.low_res_logits[0, self.shown_candidate()][None]
        return SegmentRequest(image_rgb=image_rgb, model=spec, boxes_xyxy=[tuple(b) for b in boxes_xyxy],
                              points_xy=pts.tolist(), point_labels=labels.tolist(), mask_logits=logits,
                              multimask=multimask, window=window, invert=invert, image_sig=image_sig, device=device)

    # -- candidate ----------------------------------------------------------------------------------------------
    def set_result(self, result, plane=(), text_result=None) -> None:
        """The worker's answer for ``plane``: it becomes the candidate (first of SAM's candidates)."""
        self.result, self.plane, self.text_result, self.candidate = result, tuple(plane), text_result, 0

    def shown_candidate(self) -> int:
        """Index of the candidate shown, within the result's candidates."""
        return 0 if self.result is None else min(self.candidate, self.result.masks.shape[1] - 1)

    def next_candidate(self) -> int:
        """Show SAM's next candidate (cycling); returns its index."""
        if self.result is not None:
            self.candidate = (self.candidate + 1) % self.result.masks.shape[1]
        return self.candidate

    def candidate_labels(self) -> np.ndarray | None:
        """``(H, W)`` uint8: object ``k + 1`` where box ``k``'s shown candidate is (first box wins overlaps)."""
        if self.result is None:
            return None
        b, _, h, w = self.result.masks.shape
        c = self.shown_candidate()
        out = np.zeros((h, w), dtype=np.uint8)
        for k in range(b):
            out[self.result.masks[k, c] & (out == 0)] = k + 1
        return out

    def clear(self) -> None:
        """Drop the candidate (committed objects stay)."""
        self.result, self.text_result, self.candidate = None, None, 0

    # -- commit / undo ------------------------------------------------------------------------------------------
    def commit(self) -> list[int]:
        """Add the shown candidate of every box as a new object on :attr:`plane`; returns the new ids.

        Raises VipInputError when there is nothing to commit or no store; a box whose mask is empty or covered
        by other objects is skipped with a note in :attr:`notes`.  The candidate is cleared afterwards.
        """
        result = self.result
        if result is None:
            raise VipInputError("Nothing to commit: draw a box or click first.")
        if self.store is None:
            raise VipInputError("No annotations to commit to: open an image first.")
        c = self.shown_candidate()
        prov = result.provenance.to_dict()
        source = "sam"
        text = self.text_result
        if text is not None and text.segment is result:
            prov, source = dict(prov, steps=text.steps), "text"
        ids, self.notes = [], []
        for b in range(result.masks.shape[0]):
            prompts = {"boxes_xyxy": [list(result.boxes_xyxy[b])] if len(result.boxes_xyxy) > b else [],
                       "points_xy": result.points_xy.tolist(), "point_labels": result.point_labels.tolist(),
                       "candidate": int(c)}
            if source == "text":
                prompts["text"] = text.text
            try:
                ids.append(self.store.commit(result.masks[b, c], self.plane, prompts, prov,
                                             float(result.scores[b, c]), source))
            except VipInputError as exc:
                self.notes.append(str(exc))
        self.clear()
        return ids

    def commit_volume(self, mask: np.ndarray, prompts: dict | None = None, provenance: dict | None = None,
                      score: float | None = None, source: str = "propagation", box=None) -> int:
        """Add a whole mask of the store's shape (e.g. ``(Z, Y, X)`` from propagation) as one object id.

        Voxels of other objects are kept; raises VipInputError for a wrong shape or an empty mask.  ``box``: slices
        per axis that hold every ``True`` of ``mask`` (e.g. :meth:`PropagateResult.box_slices`), when known.
        """
        if self.store is None:
            raise VipInputError("No annotations to commit to: open an image first.")
        return self.store.commit_volume(mask, prompts, provenance, score, source, box)

    def revise_volume(self, object_id: int, mask: np.ndarray, planes, prompts: dict | None = None,
                      provenance: dict | None = None) -> int:
        """Replace object ``object_id`` on ``planes`` by ``mask`` (a correction re-propagated from another slice);
        see :meth:`~napari_vip.core.annotations.AnnotationStore.revise_volume`.  Returns the voxels changed."""
        if self.store is None:
            raise VipInputError("No annotations to correct: open an image first.")
        return self.store.revise_volume(object_id, mask, planes, prompts, provenance)

    def save(self, path, sidecar=None) -> tuple[str, str]:
        """Write the label volume (PNG/TIFF/.npy by extension) and its JSON sidecar; returns both paths."""
        if self.store is None or not self.store.records:
            raise VipInputError("No annotations yet: commit an object first.")
        return self.store.save(path, sidecar)

    def load(self, path, shape, sidecar=None) -> AnnotationStore:
        """Replace the store with a label image + sidecar saved earlier for an image of spatial ``shape``.

        Raises VipInputError when the file's shape is not ``shape`` (the current store is kept then).
        """
        store = AnnotationStore.load(path, sidecar)
        if store.shape != tuple(shape):
            raise VipInputError(f"Annotations {str(path)!r} have shape {store.shape}; the image has {tuple(shape)}.")
        self.store = store
        return store

    def undo(self) -> int | None:
        """Take back the last commit; returns its id (``None`` when there is nothing to undo)."""
        if self.store is None or not self.store.can_undo:
            return None
        return self.store.undo().id
