"""``napari-vip segment VOLUME --slice K --box X0 Y0 X1 Y1 --propagate ... --out mask.nii.gz|seg.dcm``: propagate
one object through a NIfTI volume or a DICOM series and save it as a 3D label map or DICOM-SEG."""

from __future__ import annotations

import numpy as np

from ..core.errors import VipInputError


def save_volume_labels(path, labels: np.ndarray, layer_kwargs: dict, name: str, provenance: dict) -> list[str]:
    """Write ``labels`` ``(Z, Y, X)`` beside its source: ``.nii/.nii.gz`` with the source affine, ``.dcm`` as
    DICOM-SEG on the source series, ``.npy``/``.tif`` as arrays."""
    from ..io.labels_writers import write_labels_nifti, write_labels_npy, write_labels_tiff

    low = str(path).lower()
    attrs = {"metadata": layer_kwargs.get("metadata") or {}, "scale": layer_kwargs.get("scale")}
    if low.endswith((".nii", ".nii.gz")):
        return write_labels_nifti(path, labels, attrs)
    if low.endswith(".dcm"):
        from ..io.dicom_seg import write_dicom_seg

        files = attrs["metadata"].get("vip_files")
        if not files:
            raise VipInputError("DICOM-SEG references the DICOM series the mask was drawn on: give a DICOM folder as "
                                "VOLUME, or save as .nii.gz.")
        return write_dicom_seg(path, labels, files, names={1: name}, provenance=provenance)
    if low.endswith(".npy"):
        return write_labels_npy(path, labels)
    if low.endswith((".tif", ".tiff")):
        return write_labels_tiff(path, labels)
    raise VipInputError(f"--out {path}: save a volume as .nii.gz, .dcm (DICOM-SEG), .npy or .tif.")


def _volume(args):
    """``(data, layer kwargs, window, invert)`` of the VOLUME argument: ``--window``/``--preset`` and ``--invert``,
    else the file's own."""
    from ..io.open_image import open_image

    data, kwargs = open_image(args.image, window=args.preset)
    meta = kwargs.get("metadata") or {}
    window = tuple(args.window) if args.window else meta.get("vip_window", kwargs.get("contrast_limits"))
    invert = bool(meta.get("vip_invert", False)) if args.invert is None else bool(args.invert)
    return data, kwargs, None if window is None else (float(window[0]), float(window[1])), invert


def run_embed_slices(args) -> int:
    """``--embed-slices``: a :class:`~napari_vip.worker.volume.VolumeEmbedRequest` from ``--slice`` outward."""
    from ..worker.engine import Engine, ProgressReporter
    from ..worker.volume import VolumeEmbedRequest
    from .common import emit, stderr_progress, untrained_warning
    from .sam_args import sam_spec_from_args

    data, _, window, invert = _volume(args)
    req = VolumeEmbedRequest(np.asarray(data), args.slice or 0, sam_spec_from_args(args), axis=args.axis,
                             window=window, invert=invert, device=args.device,
                             disk_cache=not args.no_disk_cache)
    result = Engine().run(req, ProgressReporter(stderr_progress))
    d = result.to_dict()
    counts = {src: sum(1 for v in result.sources.values() if v == src) for src in ("computed", "disk", "memory")}
    lines = untrained_warning(result.provenance.untrained, "random weights are never cached on disk", "SAM")
    lines.append(f"{len(result.order)} slice(s) embedded from slice {result.order[0]} outward: "
                 + ", ".join(f"{n} {src}" for src, n in counts.items() if n) + f", {result.seconds:.1f} s")
    emit(d, args.json, "\n".join(lines))
    return 0


def run_volume(args) -> int:
    from ..models.propagation import SlicePrompt
    from ..worker.engine import Engine, ProgressReporter
    from ..worker.volume import PropagateRequest
    from .common import emit, stderr_progress, untrained_warning
    from .sam_args import sam_spec_from_args

    if args.slice is None:
        raise VipInputError("--propagate needs --slice K: the slice the box or clicks are drawn on.")
    if len(args.box) > 1:
        raise VipInputError("--propagate follows one object: give one --box.")
    if args.text is not None:
        raise VipInputError("--text does not propagate; segment the slice with --text, then propagate its box.")
    data, kwargs, window, invert = _volume(args)
    pts = args.points or []
    prompt = SlicePrompt(args.slice, box_xyxy=tuple(args.box[0]) if args.box else None,
                         points_xy=np.array([p[:2] for p in pts], float) if pts else None,
                         point_labels=np.array([p[2] for p in pts], int) if pts else None)
    fixes = [SlicePrompt(int(k), box_xyxy=(x0, y0, x1, y1)) for k, x0, y0, x1, y1 in args.correct]
    req = PropagateRequest(np.asarray(data), [prompt, *fixes], sam_spec_from_args(args), axis=args.axis,
                           slice_range=tuple(args.slice_range) if args.slice_range else None,
                           window=window, invert=invert, iou_threshold=args.iou_threshold, device=args.device,
                           disk_cache=not args.no_disk_cache)
    result = Engine().run(req, ProgressReporter(stderr_progress))
    d = result.to_dict()
    d["image"] = {"path": str(args.image), "shape": list(np.shape(data)), "window": req.window,
                  "scale": kwargs.get("scale")}
    if args.out:
        labels = result.mask.astype(np.uint8)
        d["out"] = {"labels": save_volume_labels(args.out, labels, kwargs, args.name, d)[0]}
    lines = untrained_warning(result.provenance.untrained, "the masks mean nothing", "SAM")
    lines += [f"note: {n}" for n in result.notes]
    lines.append(f"propagated from slice {args.slice} through {len(result.slices)} slice(s) "
                 f"({min(result.slices)}..{max(result.slices)}), {int(result.mask.sum())} voxels, "
                 f"{result.seconds:.1f} s")
    if args.out:
        lines.append(f"saved {d['out']['labels']}")
    emit(d, args.json, "\n".join(lines))
    return 0
