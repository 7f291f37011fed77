"""SAM 2.1 (hiera tiny/small/base+/large) and MedSAM2: model spec, safe loading, image and video models.

Built from Meta's ``sam2`` package configs (``sam2/configs/sam2.1/*.yaml``) with ``sam2.build_sam``;
weights are the official checkpoint layout ``{"model": state_dict}`` read with ``torch.load(weights_only=True)``.

Input preparation
-----------------
- **SAM 2.1** (2D): exactly ``SAM2ImagePredictor``: the ``(H, W, 3)`` uint8 plane resized to the model's square
  input (``image_size``, 1024 for the released models, aspect ratio not kept), scaled to [0, 1] and normalised
  with ImageNet mean/std; boxes and points scaled by ``image_size / W`` and ``image_size / H``.
- **SAM 2.1** (volume, slices as frames): as ``SAM2VideoPredictor``'s frame loader: each slice resized with
  PIL to ``image_size`` squared, scaled to [0, 1], ImageNet mean/std.
- **MedSAM2** (``arch="medsam2"``): a SAM 2.1 hiera-tiny network run at 512x512 (MedSAM2's
  ``sam2.1_hiera_t512`` config); the volume is windowed, min-max scaled over the whole volume to 0..255 uint8,
  each slice converted to RGB and resized with PIL to 512x512, then /255 and ImageNet mean/std.  Propagation
  runs forward and backward from the key slice and keeps the largest 3D connected component (MedSAM2's 3D CT
  inference recipe).

torch and sam2 are imported inside functions only.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..core.errors import VipInputError
from .checkpoint import WeightsProvenance, load_network
from .sam import DecodeOutput

#: Released architectures: name -> (sam2 config, image size, trunk embed dim, trunk blocks).
SAM2_ARCHS = {
    "sam2.1_hiera_t": ("configs/sam2.1/sam2.1_hiera_t.yaml", 1024, 96, 12),
    "sam2.1_hiera_s": ("configs/sam2.1/sam2.1_hiera_s.yaml", 1024, 96, 16),
    "sam2.1_hiera_b+": ("configs/sam2.1/sam2.1_hiera_b+.yaml", 1024, 112, 24),
    "sam2.1_hiera_l": ("configs/sam2.1/sam2.1_hiera_l.yaml", 1024, 144, 48),
    "medsam2": ("configs/sam2.1/sam2.1_hiera_t.yaml", 512, 96, 12),
}
#: The fast default where sam2 is installed.
DEFAULT_SAM2_ARCH = "sam2.1_hiera_t"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Version of the input preparation; part of every embedding cache key.
PREPARE_VERSION = 1


def is_sam2_arch(arch: str) -> bool:
    """Whether ``arch`` names a SAM 2 family model (a released name or a SAM 2 ``.json`` config)."""
    if arch in SAM2_ARCHS:
        return True
    if str(arch).lower().endswith(".json") and Path(arch).is_file():
        try:
            return "sam2_base" in json.loads(Path(arch).read_text())
        except (OSError, json.JSONDecodeError):
            return False
    return False


@dataclass(frozen=True)
class Sam2Spec:
    """Which SAM 2 family model: an architecture and where its weights come from.

    Attributes
    ----------
    arch : str
        ``sam2.1_hiera_t``, ``sam2.1_hiera_s``, ``sam2.1_hiera_b+``, ``sam2.1_hiera_l``, ``medsam2``, or a
        ``.json`` file ``{"sam2_base": NAME, "image_size": S, "overrides": [hydra overrides]}`` for a smaller
        network of the same family (tests).
    checkpoint : str, optional
        Local ``.pt/.pth`` file in the official SAM 2.1 layout ``{"model": state_dict}`` (or a bare state dict).
    untrained : bool
        Random weights of the real architecture, to try the workflow; flagged in every result.
    precision : str
        ``auto|fp32|bf16|fp16``: the dtype of the image encoder, memory attention and memory encoder
        (:mod:`napari_vip.models.precision`); prompt encoder and mask decoder run in float32.
    """

    arch: str = DEFAULT_SAM2_ARCH
    checkpoint: str | None = None
    untrained: bool = False
    precision: str = "auto"

    def __post_init__(self):
        from .precision import check_precision

        check_precision(self.precision)
        if self.arch not in SAM2_ARCHS and not str(self.arch).lower().endswith(".json"):
            raise VipInputError(f"Unknown SAM 2 architecture {self.arch!r}; choose one of {', '.join(SAM2_ARCHS)}.")
        if bool(self.checkpoint) == bool(self.untrained):
            raise VipInputError(
                f"SAM 2 {self.arch}: give exactly one source of weights: a local checkpoint file "
                "(--sam-checkpoint FILE, e.g. sam2.1_hiera_tiny.pt or MedSAM2_latest.pt) or --untrained to try the "
                "workflow with random weights."
            )
        if self.checkpoint and not self.checkpoint.lower().endswith((".pt", ".pth", ".bin", ".safetensors")):
            raise VipInputError(f"SAM 2 checkpoint {self.checkpoint!r} must be a .pt/.pth state dict file.")

    @property
    def medsam2(self) -> bool:
        return self.arch == "medsam2" or arch_config(self.arch)[3] == "medsam2"

    def describe(self) -> str:
        name = "MedSAM2" if self.arch == "medsam2" else (Path(self.arch).stem if self.arch.endswith(".json")
                                                          else self.arch.replace("sam2.1_", "SAM 2.1 "))
        return f"{name} (untrained: random weights)" if self.untrained else f"{name} from {self.checkpoint}"

    def to_dict(self) -> dict:
        return asdict(self)


def arch_config(arch: str) -> tuple[str, list[str], int, str]:
    """``(sam2 config name, hydra overrides, image size, released base name)`` of ``arch``."""
    if arch in SAM2_ARCHS:
        cfg, size, _, _ = SAM2_ARCHS[arch]
        base = arch
    else:
        p = Path(arch).expanduser()
        try:
            d = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise VipInputError(f"SAM 2 config {arch!r} is not a readable JSON file ({exc}).") from None
        base = d.get("sam2_base")
        if base not in SAM2_ARCHS:
            raise VipInputError(f"SAM 2 config {arch!r}: 'sam2_base' must be one of {', '.join(SAM2_ARCHS)}.")
        cfg = SAM2_ARCHS[base][0]
        size = int(d.get("image_size", SAM2_ARCHS[base][1]))
        extra = [str(o) for o in d.get("overrides", [])]
        return cfg, _size_overrides(size) + extra, size, base
    return cfg, _size_overrides(size) if size != 1024 else [], size, base


def _size_overrides(size: int) -> list[str]:
    """Hydra overrides running a SAM 2.1 config at ``size`` squared (memory attention's RoPE grid follows)."""
    grid = size // 16
    return [f"++model.image_size={size}",
            f"++model.memory_attention.layer.self_attention.feat_sizes=[{grid},{grid}]",
            f"++model.memory_attention.layer.cross_attention.feat_sizes=[{grid},{grid}]"]


def _require_sam2():
    try:
        import sam2  # noqa: F401
    except ImportError:
        raise VipInputError(
            "SAM 2 / MedSAM2 need Meta's sam2 package: pip install -e '.[qt]' installs it (see the README)."
        ) from None


def build_sam2_network(arch: str, video: bool = False):
    """The real ``SAM2Base`` (``SAM2VideoPredictor`` when ``video``) of ``arch`` with random weights, eval, CPU."""
    _require_sam2()
    from sam2.build_sam import build_sam2, build_sam2_video_predictor

    cfg, overrides, _, _ = arch_config(arch)
    build = build_sam2_video_predictor if video else build_sam2
    return build(cfg, None, device="cpu", hydra_overrides_extra=overrides)


def guess_sam2_arch(state: dict) -> str | None:
    """The released hiera size a state dict belongs to (``sam2.1_hiera_t``...), ``"custom"`` for another
    SAM 2, ``None`` when it holds no SAM 2 image encoder."""
    w = state.get("image_encoder.trunk.patch_embed.proj.weight")
    if w is None:
        return None
    dim = int(w.shape[0])
    blocks = len({k.split(".")[3] for k in state if k.startswith("image_encoder.trunk.blocks.")})
    for name, (_, _, d, n) in SAM2_ARCHS.items():
        if name != "medsam2" and (d, n) == (dim, blocks):
            return name
    return "custom"


@dataclass
class Sam2Embedding:
    """SAM 2 image features of one plane and its geometry.

    Attributes
    ----------
    image_embed : torch.Tensor
        ``(1, 256, s/16, s/16)`` float32 (``s`` the model's input size).
    high_res_feats : list of torch.Tensor
        ``[(1, 32, s/4, s/4), (1, 64, s/8, s/8)]`` float32.
    original_size : (int, int)
        ``(H, W)`` of the plane.
    input_size : (int, int)
        ``(s, s)``: SAM 2 resizes every plane to its square input.
    """

    image_embed: object
    high_res_feats: list
    original_size: tuple[int, int]
    input_size: tuple[int, int]


@dataclass
class Sam2Model(WeightsProvenance):
    """A loaded SAM 2 family network (a ``SAM2VideoPredictor``, which is also the image model).

    Attributes
    ----------
    net : sam2.sam2_video_predictor.SAM2VideoPredictor
        In eval mode on ``device``.
    weights_id : str
        The checkpoint's sha256, or a per-load random id for untrained weights.
    precision : str
        What the image encoder, memory attention and memory encoder run in, ``fp32|bf16|fp16``; each gives
        float32 back, and the prompt encoder and mask decoder are float32.
    """

    net: object
    spec: Sam2Spec
    sha256: str | None
    device: str
    weights_id: str
    precision: str = "fp32"
    _image_predictor: object = field(default=None, repr=False)

    @property
    def image_size(self) -> int:
        return int(self.net.image_size)

    def image_predictor(self):
        """``SAM2ImagePredictor`` on this network, its feature grid sized for ``image_size``."""
        if self._image_predictor is None:
            from sam2.sam2_image_predictor import SAM2ImagePredictor

            p = SAM2ImagePredictor(self.net)
            s = self.image_size
            p._bb_feat_sizes = [(s // 4, s // 4), (s // 8, s // 8), (s // 16, s // 16)]
            self._image_predictor = p
        return self._image_predictor

    # -- 2D ------------------------------------------------------------------------------------------------
    @property
    def prepare_version(self) -> int:
        return PREPARE_VERSION

    def embed(self, image_rgb: np.ndarray) -> Sam2Embedding:
        """Image features of an ``(H, W, 3)`` uint8 plane (``SAM2ImagePredictor.set_image``)."""
        import torch

        rgb = np.ascontiguousarray(image_rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise VipInputError(f"SAM 2 needs an (H, W, 3) uint8 image; got {rgb.shape} {rgb.dtype}.")
        p = self.image_predictor()
        with torch.inference_mode():
            p.set_image(rgb)
        return Sam2Embedding(p._features["image_embed"], list(p._features["high_res_feats"]), tuple(rgb.shape[:2]),
                             (self.image_size, self.image_size))

    def _grid_shapes(self) -> list[tuple[int, ...]]:
        s = self.image_size
        dims = (int(self.net.sam_mask_decoder.transformer_dim),) + tuple(
            int(c.out_channels) for c in (self.net.sam_mask_decoder.conv_s0, self.net.sam_mask_decoder.conv_s1))
        return [(1, dims[0], s // 16, s // 16), (1, dims[1], s // 4, s // 4), (1, dims[2], s // 8, s // 8)]

    def embedding_array(self, emb: Sam2Embedding) -> np.ndarray:
        """``(N,)`` float32: the image embedding and both high-resolution feature maps, flattened in that order
        (what the disk cache stores)."""
        parts = [emb.image_embed, *emb.high_res_feats]
        return np.concatenate([t.float().cpu().numpy().reshape(-1) for t in parts])

    def embedding_from_array(self, features: np.ndarray, input_size, original_size) -> Sam2Embedding:
        """The :class:`Sam2Embedding` that :meth:`embedding_array` flattened; VipInputError when the size is not
        this model's."""
        import torch

        flat = np.ascontiguousarray(features, dtype=np.float32).reshape(-1)
        shapes = self._grid_shapes()
        sizes = [int(np.prod(s)) for s in shapes]
        if flat.size != sum(sizes):
            raise VipInputError(f"A stored SAM 2 embedding has {flat.size} values; this model needs {sum(sizes)}.")
        tensors, at = [], 0
        for shape, n in zip(shapes, sizes):
            tensors.append(torch.from_numpy(flat[at:at + n].reshape(shape).copy()).to(self.device))
            at += n
        return Sam2Embedding(tensors[0], tensors[1:], tuple(int(v) for v in original_size),
                             tuple(int(v) for v in input_size))

    def decode(self, emb: Sam2Embedding, boxes_xyxy=None, points_xy=None, point_labels=None, mask_logits=None,
               multimask: bool = True) -> DecodeOutput:
        """Masks for prompts on ``emb`` (from :meth:`embed`), as ``SAM2ImagePredictor.predict``.

        Parameters
        ----------
        boxes_xyxy : (B, 4), optional
            ``(x0, y0, x1, y1)`` pixels of the plane; several boxes are one batch, one object each.
        points_xy : (N, 2), optional
            ``(x, y)`` pixels; ``point_labels`` ``(N,)`` 1 positive, 0 negative (one object).
        mask_logits : (1, s/4, s/4) or (s/4, s/4), optional
            Low-resolution logits of a previous decode (one object).

        Returns
        -------
        DecodeOutput
            ``masks`` ``(B, C, H, W)`` bool, ``scores`` ``(B, C)``, ``low_res_logits`` ``(B, C, s/4, s/4)``; ``C`` = 3
            (multimask) or 1, in the model's order.
        """
        import torch

        boxes = None if boxes_xyxy is None or len(boxes_xyxy) == 0 else np.asarray(boxes_xyxy, np.float32).reshape(-1, 4)
        pts = None if points_xy is None or len(points_xy) == 0 else np.asarray(points_xy, np.float32).reshape(-1, 2)
        if boxes is None and pts is None and mask_logits is None:
            raise VipInputError("Nothing to segment: give a box or at least one point.")
        if boxes is not None and len(boxes) > 1 and (pts is not None or mask_logits is not None):
            raise VipInputError("Clicks and the previous mask refine one object: use one box with them, "
                                "or several boxes alone.")
        p = self.image_predictor()
        p._features = {"image_embed": emb.image_embed, "high_res_feats": emb.high_res_feats}
        p._orig_hw = [tuple(emb.original_size)]
        p._is_image_set, p._is_batch = True, False
        labels = None if pts is None else np.asarray(point_labels, np.int32).reshape(-1)
        mask_in = None if mask_logits is None else np.asarray(mask_logits, np.float32).reshape(
            1, *np.shape(mask_logits)[-2:])
        with torch.inference_mode():
            masks, scores, low = p.predict(point_coords=pts, point_labels=labels,
                                           box=None if boxes is None else (boxes[0] if len(boxes) == 1 else boxes),
                                           mask_input=mask_in, multimask_output=multimask)
        b = 1 if boxes is None else len(boxes)
        c = scores.shape[-1]
        return DecodeOutput(masks.reshape(b, c, *masks.shape[-2:]).astype(bool),
                            scores.reshape(b, c).astype(np.float32),
                            low.reshape(b, c, *low.shape[-2:]).astype(np.float32))

    # -- volumes -------------------------------------------------------------------------------------------
    def frames_tensor(self, slices_rgb: np.ndarray):
        """``(Z, 3, S, S)`` float32 frames for ``(Z, H, W, 3)`` uint8 slices, prepared as the video predictor's
        frame loader prepares decoded JPEG frames (PIL resize to ``S`` squared, /255, ImageNet mean/std)."""
        import torch
        from PIL import Image

        s = self.image_size
        out = np.empty((len(slices_rgb), 3, s, s), np.float32)
        for i, sl in enumerate(slices_rgb):
            img = np.asarray(Image.fromarray(np.ascontiguousarray(sl)).resize((s, s)), dtype=np.float64) / 255.0
            out[i] = img.transpose(2, 0, 1)
        t = torch.from_numpy(out)
        mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32)[:, None, None]
        std = torch.tensor(IMAGENET_STD, dtype=torch.float32)[:, None, None]
        return (t - mean) / std


def load_sam2(spec: Sam2Spec, device: str = "cpu", progress=None) -> Sam2Model:
    """Build the SAM 2 family model ``spec`` names, with its weights, on ``device``.

    Raises
    ------
    VipInputError
        sam2 not installed; a missing, unsafe or unreadable file; a checkpoint of another hiera size (named);
        a file without SAM 2 weights.
    """
    _require_sam2()
    base = arch_config(spec.arch)[3]
    expected = ("sam2.1_hiera_t" if base == "medsam2" else base) if spec.arch in SAM2_ARCHS else None
    net, digest, weights_id = load_network(
        spec, device, progress, lambda: build_sam2_network(spec.arch, video=True), guess_sam2_arch, expected,
        SAM2_ARCHS, "SAM 2",
        "{path} is not a SAM 2 checkpoint (it has no hiera image encoder weights). Choose a sam2.1_hiera_*.pt or "
        "MedSAM2 .pt file, or a SAM 1 architecture for a segment-anything file.")
    from .precision import cast_module, resolve_precision

    precision = resolve_precision(spec.precision, device, "sam2")
    for part in (net.image_encoder, net.memory_attention, net.memory_encoder):  # the per-slice cost of tracking
        cast_module(part, precision)
    return Sam2Model(net, spec, digest, device, weights_id, precision)
