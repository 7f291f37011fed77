"""What the server accepts: the request types it runs, array shapes and dtypes, files it may open.

Checked after decoding and before any model work; a refusal is a :class:`Refused` with the HTTP status and a
message for the user.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Request types the server runs.  Prompt learning (reads a dataset and writes a file on the server) and
#: language-model descriptors (the server would call out with the user's key) run on the viewer's computer.
SERVED = ("SelfTestRequest", "ClassifyRequest", "AttentionRequest", "ConceptClassifyRequest",
          "RegionConceptsRequest", "SegmentEmbedRequest", "SegmentRequest", "TextSegmentRequest")

#: Largest side of any array in a request (pixels).
MAX_SIDE = 32768


class Refused(ValueError):
    """A request the server will not run; ``status`` is the HTTP status that fits (400, 403, 413)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ArrayRule:
    """An array field: allowed ``ndim`` values, the size of the last axis (or None), dtype kinds (numpy's
    ``b u i f``) and, if given, the exact dtypes."""

    ndims: tuple[int, ...]
    last: int | None = None
    kinds: str = "u"
    dtypes: tuple[str, ...] = ()


RGB = ArrayRule((3,), 3, "u", ("uint8",))
#: Per request type, the rule of each array field (a list field: the rule of each item).
ARRAY_RULES = {
    "ClassifyRequest": {"image_rgb": RGB},
    "AttentionRequest": {"image_rgb": RGB},
    "ConceptClassifyRequest": {"image_rgb": RGB},
    "SegmentEmbedRequest": {"image_rgb": RGB},
    "SegmentRequest": {"image_rgb": RGB, "mask_logits": ArrayRule((2, 3), None, "f")},
    "TextSegmentRequest": {"image_rgb": RGB},
    "RegionConceptsRequest": {"image_rgb": ArrayRule((2, 3), None, "uif"), "mask": ArrayRule((2,), None, "buif")},
}


@dataclass
class ServerPolicy:
    """The server's choices applied to every request.

    Attributes
    ----------
    device : str
        The device every request runs on (the request's own choice is replaced).
    models_dirs : list of Path
        Folders that model files named in requests must lie in; relative names are looked up in them.
        Empty: requests may name no files (hub, pretrained tags and untrained models still work).
    precision : str
        ``auto|fp32|bf16|fp16``: the precision of every model a request names (the request's own is replaced,
        as its device is).
    """

    device: str = "auto"
    models_dirs: list = dataclasses.field(default_factory=list)
    precision: str = "auto"

    def admit(self, request):
        """The request as the server runs it; :class:`Refused` for one it does not run."""
        name = type(request).__name__
        if name not in SERVED:
            raise Refused(f"The server does not run {name}: it runs {', '.join(SERVED)}. Run it on this computer.")
        if name == "SelfTestRequest" and request.fail == "exit":
            raise Refused("A self-test that ends the process is not run by a server.", 403)
        for field, rule in ARRAY_RULES.get(name, {}).items():
            value = getattr(request, field, None)
            for k, arr in enumerate(value if isinstance(value, list) else [value]):
                if arr is not None:
                    check_array(f"{name}.{field}" + (f"[{k}]" if isinstance(value, list) else ""), arr, rule)
        changes = {}
        for field in ("model", "clip"):
            spec = getattr(request, field, None)
            if dataclasses.is_dataclass(spec):
                changes[field] = self._spec_files(spec)
        if getattr(request, "prompts_path", None):
            changes["prompts_path"] = self.model_file(request.prompts_path)
        if hasattr(request, "device"):
            changes["device"] = self.device
        if hasattr(request, "image_sig"):
            changes["image_sig"] = None  # the server computes it: a client's signature is not trusted
        return dataclasses.replace(request, **changes) if changes else request

    def _spec_files(self, spec):
        changes = {}
        if getattr(spec, "precision", self.precision) != self.precision:
            changes["precision"] = self.precision
        if getattr(spec, "checkpoint", None):
            changes["checkpoint"] = self.model_file(spec.checkpoint)
        if str(getattr(spec, "arch", "")).lower().endswith(".json"):
            changes["arch"] = self.model_file(spec.arch)
        return dataclasses.replace(spec, **changes) if changes else spec

    def relative_paths(self, text: str) -> str:
        """``text`` with every path inside :attr:`models_dirs` written relative to its folder (what a client
        named), so that messages sent to clients never reveal the server's folders."""
        for root in sorted((str(Path(r).resolve()) for r in self.models_dirs), key=len, reverse=True):
            text = text.replace(root.rstrip("/") + "/", "").replace(root, "the models folder")
        return text

    def model_file(self, name: str) -> str:
        """The server path of a model file named in a request; :class:`Refused` outside :attr:`models_dirs`."""
        if not self.models_dirs:
            raise Refused(f"The request names the file {name!r}, but this server opens no files: start it with "
                          "--models-dir DIR (files in requests are on the server, not on your computer).", 403)
        for root in self.models_dirs:
            root = Path(root).resolve()
            path = (root / name).resolve()
            if path.is_relative_to(root) and path.is_file():
                return str(path)
        raise Refused(f"No file {name!r} in the server's models folder(s); name a file there (paths are on the "
                      "server, not on your computer).", 403)


def check_array(label: str, arr, rule: ArrayRule) -> None:
    """Refuse an array whose ndim, last axis, dtype kind or side lengths break ``rule`` (status 400/413)."""
    if not isinstance(arr, np.ndarray):
        raise Refused(f"{label} must be an array, got {type(arr).__name__}.")
    if arr.ndim not in rule.ndims or (rule.last is not None and arr.shape[-1] != rule.last):
        want = " or ".join(f"{n}-d" for n in rule.ndims) + (f" with {rule.last} channels" if rule.last else "")
        raise Refused(f"{label} has shape {list(arr.shape)}; it must be {want}.")
    if arr.dtype.kind not in rule.kinds or (rule.dtypes and arr.dtype.name not in rule.dtypes):
        raise Refused(f"{label} has dtype {arr.dtype}; allowed: {', '.join(rule.dtypes) or rule.kinds} "
                      "(kinds: b bool, u unsigned, i signed, f float).")
    if arr.size == 0 or max(arr.shape) > MAX_SIDE:
        raise Refused(f"{label} of shape {list(arr.shape)} is empty or has a side over {MAX_SIDE}.", 413)
