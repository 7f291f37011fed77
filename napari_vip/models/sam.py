"""Segment Anything (SAM) and MedSAM: model spec, safe loading, image embedding and a fast prompt decoder.

Coordinates
-----------
Every box and point here is in (x, y) pixels of the *original* image (pixel centres at integers, see
:mod:`napari_vip.core.coords`); masks are ``(H, W)`` arrays, rows first.  Conversion from napari's
(row, col) happens before a request is built, in :mod:`napari_vip.core.coords` only.

Input preparation (what the image encoder sees)
-----------------------------------------------
- **SAM**: the ``(H, W, 3)`` uint8 image is resized so its longest side is the encoder's input size
  (1024), exactly as ``segment_anything.utils.transforms.ResizeLongestSide``; normalised with SAM's
  ``pixel_mean``/``pixel_std`` (0..255 scale) and zero-padded to a square (bottom/right).
- **MedSAM** (``SamSpec.medsam``): resized to a 1024x1024 square (bicubic, anti-aliased, aspect ratio
  *not* kept), min-max normalised to [0, 1], no mean/std, no padding; boxes scaled by 1024/W and 1024/H;
  one mask per prompt; the low-resolution probabilities are resized straight to ``(H, W)`` and
  thresholded at 0.5 — MedSAM's own inference recipe.

torch and segment_anything are imported inside functions only.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..core.errors import VipInputError
from .checkpoint import WeightsProvenance, load_network
from .sam_decoder import image_side, two_way_transformer

SAM_ARCHS = ("vit_b", "vit_l", "vit_h")
#: Encoder sizes of the released architectures: (embed dim, depth, heads, global attention blocks).
ARCH_SIZES = {
    "vit_b": (768, 12, 12, (2, 5, 8, 11)),
    "vit_l": (1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": (1280, 32, 16, (7, 15, 23, 31)),
}
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")
#: Version of the input preparation; part of every embedding cache key.
PREPARE_VERSION = 1


@dataclass(frozen=True)
class SamSpec:
    """Which SAM: an architecture and where its weights come from.

    Attributes
    ----------
    arch : str
        ``vit_b``, ``vit_l``, ``vit_h``, or a path to a ``.json`` config for a custom (e.g. tiny test)
        SAM with keys ``image_size, patch_size, encoder_embed_dim, encoder_depth, encoder_num_heads,
        encoder_global_attn_indexes, window_size, prompt_embed_dim, mask_in_chans, decoder_depth,
        decoder_mlp_dim, decoder_num_heads, iou_head_hidden_dim``.
    checkpoint : str, optional
        Local ``.pth/.pt/.bin/.safetensors`` state dict of a full ``Sam`` (as released by Meta or MedSAM).
    medsam : bool
        Use MedSAM's input normalisation and decoding (MedSAM checkpoints are ``vit_b``).
    untrained : bool
        Random weights of the real architecture, to try the workflow; flagged in every result.
    precision : str
        ``auto|fp32|bf16|fp16``: the dtype of the image encoder (:mod:`napari_vip.models.precision`); the prompt
        encoder and mask decoder run in float32.
    """

    arch: str = "vit_b"
    checkpoint: str | None = None
    medsam: bool = False
    untrained: bool = False
    precision: str = "auto"

    def __post_init__(self):
        from .precision import check_precision

        check_precision(self.precision)
        if not self.arch:
            raise VipInputError("A SAM model needs an architecture: vit_b, vit_l or vit_h.")
        if self.arch not in SAM_ARCHS and not self.arch.lower().endswith(".json"):
            raise VipInputError(f"Unknown SAM architecture {self.arch!r}; choose one of {', '.join(SAM_ARCHS)}.")
        if bool(self.checkpoint) == bool(self.untrained):
            raise VipInputError(
                f"SAM {self.arch}: give exactly one source of weights: a local checkpoint file "
                "(--sam-checkpoint FILE, e.g. sam_vit_b_01ec64.pth or medsam_vit_b.pth) or --untrained to try the "
                "workflow with random weights."
            )
        if self.checkpoint and not self.checkpoint.lower().endswith(CHECKPOINT_SUFFIXES):
            raise VipInputError(
                f"SAM checkpoint {self.checkpoint!r} must be one of {', '.join(CHECKPOINT_SUFFIXES)} (a state dict)."
            )
        if self.medsam and self.arch in ("vit_l", "vit_h"):
            raise VipInputError(f"MedSAM checkpoints are vit_b; {self.arch} with --medsam does not exist.")

    def describe(self) -> str:
        name = ("MedSAM " if self.medsam else "SAM ") + (Path(self.arch).stem if self.arch.endswith(".json")
                                                          else self.arch)
        if self.untrained:
            return f"{name} (untrained: random weights)"
        return f"{name} from {self.checkpoint}"

    def to_dict(self) -> dict:
        return asdict(self)


def arch_config(arch: str) -> dict:
    """The full config dict of ``arch`` (a released name or a ``.json`` path)."""
    if arch in ARCH_SIZES:
        dim, depth, heads, glob = ARCH_SIZES[arch]
        return dict(image_size=1024, patch_size=16, encoder_embed_dim=dim, encoder_depth=depth,
                    encoder_num_heads=heads, encoder_global_attn_indexes=list(glob), window_size=14,
                    prompt_embed_dim=256, mask_in_chans=16, decoder_depth=2, decoder_mlp_dim=2048,
                    decoder_num_heads=8, iou_head_hidden_dim=256)
    p = Path(arch).expanduser()
    if not p.is_file():
        raise VipInputError(f"SAM config {arch!r} does not exist.")
    try:
        cfg = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise VipInputError(f"SAM config {arch!r} is not valid JSON ({exc}).") from None
    base = arch_config("vit_b")
    unknown = set(cfg) - set(base)
    if unknown:
        raise VipInputError(f"SAM config {arch!r} has unknown keys: {', '.join(sorted(unknown))}.")
    base.update(cfg)
    return base


def build_sam(arch: str):
    """The real ``segment_anything.modeling.Sam`` for ``arch`` with random weights, in eval mode (CPU)."""
    from functools import partial

    import torch
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    c = arch_config(arch)
    emb = c["image_size"] // c["patch_size"]
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=c["encoder_depth"], embed_dim=c["encoder_embed_dim"], img_size=c["image_size"], mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=c["encoder_num_heads"],
            patch_size=c["patch_size"], qkv_bias=True, use_rel_pos=True,
            global_attn_indexes=tuple(c["encoder_global_attn_indexes"]), window_size=c["window_size"],
            out_chans=c["prompt_embed_dim"]),
        prompt_encoder=PromptEncoder(
            embed_dim=c["prompt_embed_dim"], image_embedding_size=(emb, emb),
            input_image_size=(c["image_size"], c["image_size"]), mask_in_chans=c["mask_in_chans"]),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=c["decoder_depth"], embedding_dim=c["prompt_embed_dim"],
                                          mlp_dim=c["decoder_mlp_dim"], num_heads=c["decoder_num_heads"]),
            transformer_dim=c["prompt_embed_dim"], iou_head_depth=3, iou_head_hidden_dim=c["iou_head_hidden_dim"]),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    return sam.eval()


def guess_arch(state: dict) -> str | None:
    """Which released SAM architecture a state dict belongs to (``vit_b/vit_l/vit_h``), ``"custom"`` for
    another SAM, ``None`` when it is no SAM checkpoint at all."""
    w = state.get("image_encoder.patch_embed.proj.weight")
    if w is None:
        return None
    dim = int(w.shape[0])
    depth = len({k.split(".")[2] for k in state if k.startswith("image_encoder.blocks.")})
    for name, (d, n, _, _) in ARCH_SIZES.items():
        if d == dim and n == depth:
            return name
    return "custom"


@dataclass
class SamEmbedding:
    """An image embedding and the geometry needed to decode masks on it.

    Attributes
    ----------
    features : torch.Tensor
        ``(1, C, h, w)`` float32 on the model's device (``C=256, h=w=64`` for the released models).
    input_size : (int, int)
        ``(rows, cols)`` of the resized image inside the encoder's square input (before padding).
    original_size : (int, int)
        ``(H, W)`` of the image.
    """

    features: object
    input_size: tuple[int, int]
    original_size: tuple[int, int]
    _image_side: object = field(default=None, repr=False)


@dataclass
class DecodeOutput:
    """Masks for ``B`` prompts with ``C`` candidates each (``C=3`` multimask, else 1).

    Attributes
    ----------
    masks : np.ndarray
        ``(B, C, H, W)`` bool, rows first, the image's size.
    scores : np.ndarray
        ``(B, C)`` float32, SAM's predicted IoU of each mask.
    low_res_logits : np.ndarray
        ``(B, C, h, w)`` float32 (``h=w=256`` for the released models): pass one ``(1, h, w)`` back as
        ``mask_logits`` to refine.
    """

    masks: np.ndarray
    scores: np.ndarray
    low_res_logits: np.ndarray


@dataclass
class SamModel(WeightsProvenance):
    """A loaded SAM/MedSAM with cached positional encodings.

    Attributes
    ----------
    sam : segment_anything.modeling.Sam
        In eval mode on ``device``.
    sha256 : str or None
        Of the checkpoint file; ``None`` for untrained models.
    weights_id : str
        ``sha256`` for checkpoints; a per-load random id for untrained models (their weights are new each
        time), so an embedding of other weights is never reused.
    precision : str
        What the image encoder runs in, ``fp32|bf16|fp16``; its features come back float32 and everything
        after it (prompt encoder, mask decoder, threshold) is float32.
    """

    sam: object
    spec: SamSpec
    sha256: str | None
    device: str
    weights_id: str
    precision: str = "fp32"
    _pe: object = field(default=None, repr=False)

    @property
    def image_size(self) -> int:
        return int(self.sam.image_encoder.img_size)

    # -- image -------------------------------------------------------------------------------------------------
    def prepare(self, image_rgb: np.ndarray):
        """``(1, 3, S, S)`` float32 encoder input and the resized ``input_size`` for an ``(H, W, 3)`` uint8 image."""
        import torch

        rgb = np.ascontiguousarray(image_rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise VipInputError(f"SAM needs an (H, W, 3) uint8 image; got {rgb.shape} {rgb.dtype}.")
        s = self.image_size
        if self.spec.medsam:
            from skimage.transform import resize

            img = resize(rgb, (s, s), order=3, preserve_range=True, anti_aliasing=True).astype(np.uint8)
            img = img.astype(np.float32)
            img = (img - img.min()) / max(float(img.max() - img.min()), 1e-8)
            x = torch.from_numpy(img).permute(2, 0, 1)[None].contiguous().to(self.device)
            return x, (s, s)
        from segment_anything.utils.transforms import ResizeLongestSide

        resized = ResizeLongestSide(s).apply_image(rgb)
        x = torch.as_tensor(resized, device=self.device).permute(2, 0, 1).contiguous()[None]
        return self.sam.preprocess(x.float()), tuple(resized.shape[:2])

    def embed(self, image_rgb: np.ndarray) -> SamEmbedding:
        """Run the image encoder on an ``(H, W, 3)`` uint8 image (the slow step: seconds on a CPU)."""
        import torch

        x, input_size = self.prepare(image_rgb)
        with torch.inference_mode():
            feats = self.sam.image_encoder(x)
        return SamEmbedding(feats, input_size, tuple(image_rgb.shape[:2]))

    @property
    def prepare_version(self) -> int:
        return PREPARE_VERSION

    def embedding_array(self, emb: SamEmbedding) -> np.ndarray:
        """``(1, C, h, w)`` float32 features of ``emb`` (what the disk cache stores)."""
        return emb.features.float().cpu().numpy()

    def embedding_from_array(self, features: np.ndarray, input_size, original_size) -> SamEmbedding:
        """A :class:`SamEmbedding` from stored ``(1, C, h, w)`` float32 features."""
        import torch

        return SamEmbedding(torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)).to(self.device),
                            tuple(int(v) for v in input_size), tuple(int(v) for v in original_size))

    # -- prompts -----------------------------------------------------------------------------------------------
    def to_input_xy(self, points_xy: np.ndarray, original_size) -> np.ndarray:
        """(x, y) original-image pixels -> the encoder input frame (same scaling as SAM's ``apply_coords``)."""
        from segment_anything.utils.transforms import ResizeLongestSide

        pts = np.asarray(points_xy, dtype=np.float64)
        h, w = original_size
        s = self.image_size
        if self.spec.medsam:
            out = pts.copy()
            out[..., 0] *= s / w
            out[..., 1] *= s / h
            return out
        nh, nw = ResizeLongestSide.get_preprocess_shape(h, w, s)
        out = pts.copy()
        out[..., 0] *= nw / w
        out[..., 1] *= nh / h
        return out

    def dense_pe(self):
        """The decoder's ``(1, C, h, w)`` positional encoding, computed once per model."""
        import torch

        if self._pe is None:
            with torch.inference_mode():
                self._pe = self.sam.prompt_encoder.get_dense_pe()
        return self._pe

    def decode(self, emb: SamEmbedding, boxes_xyxy=None, points_xy=None, point_labels=None, mask_logits=None,
               multimask: bool = True) -> DecodeOutput:
        """Masks for prompts on a computed embedding.

        Parameters
        ----------
        emb : SamEmbedding
        boxes_xyxy : array-like, optional
            ``(B, 4)`` boxes ``(x0, y0, x1, y1)`` in original-image pixels.  Several boxes are decoded as
            one batch (one object each); they cannot be combined with points or mask logits.
        points_xy : array-like, optional
            ``(N, 2)`` clicks ``(x, y)`` in original-image pixels; ``point_labels`` ``(N,)`` 1 positive, 0 negative.
        mask_logits : array-like, optional
            ``(1, h, w)`` low-resolution logits of a previous decode, to refine that mask.
        multimask : bool
            Three candidates per prompt (SAM's ambiguity outputs) instead of one.  Always one for MedSAM.

        Returns
        -------
        DecodeOutput
        """
        import torch

        boxes = None if boxes_xyxy is None or len(boxes_xyxy) == 0 else np.asarray(boxes_xyxy, np.float64).reshape(-1, 4)
        pts = None if points_xy is None or len(points_xy) == 0 else np.asarray(points_xy, np.float64).reshape(-1, 2)
        if boxes is None and pts is None and mask_logits is None:
            raise VipInputError("Nothing to segment: give a box or at least one point.")
        if boxes is not None and len(boxes) > 1 and (pts is not None or mask_logits is not None):
            raise VipInputError("Clicks and the previous mask refine one object: use one box with them, "
                                "or several boxes alone.")
        if self.spec.medsam:
            multimask = False
        dev = self.device
        with torch.inference_mode():
            box_t = pts_t = None
            if boxes is not None:
                box_t = torch.as_tensor(self.to_input_xy(boxes.reshape(-1, 2, 2), emb.original_size).reshape(-1, 4),
                                        dtype=torch.float, device=dev)
            if pts is not None:
                labels = np.asarray(point_labels, dtype=np.int64).reshape(-1)
                if len(labels) != len(pts):
                    raise VipInputError(f"{len(pts)} points but {len(labels)} labels; give one label per point.")
                pts_t = (torch.as_tensor(self.to_input_xy(pts, emb.original_size), dtype=torch.float, device=dev)[None],
                         torch.as_tensor(labels, dtype=torch.int, device=dev)[None])
            mask_t = None
            if mask_logits is not None:
                mask_t = torch.as_tensor(np.asarray(mask_logits, np.float32), device=dev).reshape(1, 1, *np.shape(mask_logits)[-2:])
            pe_mod = self.sam.prompt_encoder
            sparse, dense = pe_mod(points=pts_t, boxes=box_t, masks=mask_t)
            low, iou = self._decode_low_res(emb, sparse, dense if mask_t is not None else None, multimask)
            masks = self._postprocess(low, emb)
            return DecodeOutput(masks.cpu().numpy(), iou.float().cpu().numpy(), low.float().cpu().numpy())

    def _decode_low_res(self, emb: SamEmbedding, sparse, dense, multimask: bool):
        """SAM's ``MaskDecoder.predict_masks`` with the per-image parts precomputed: the positional encoding,
        the no-mask dense embedding and the first transformer block's image-side projections (once per
        embedding, see :mod:`napari_vip.models.sam_decoder`), no per-prompt copy of the embedding, the
        hypernetwork only for the mask tokens that are returned, and the upscaling convolutions in
        channels-last layout."""
        import torch

        dec = self.sam.mask_decoder
        b = sparse.shape[0]
        out_tokens = torch.cat([dec.iou_token.weight, dec.mask_tokens.weight], dim=0)
        tokens = torch.cat((out_tokens.unsqueeze(0).expand(b, -1, -1), sparse), dim=1)
        pe = self.dense_pe()
        if dense is None:  # no previous mask: the image side of the first block is the same for every prompt
            if emb._image_side is None:
                no_mask = self.sam.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
                emb._image_side = image_side(dec.transformer, emb.features + no_mask, pe)
            side = emb._image_side
        else:
            side = image_side(dec.transformer, emb.features + dense, pe)
        _, c, h, w = emb.features.shape
        hs, src_out = two_way_transformer(dec.transformer, side, tokens)
        chosen = range(1, dec.num_mask_tokens) if multimask else range(1)
        grid = src_out.transpose(1, 2).reshape(b, c, h, w)
        up = dec.output_upscaling(grid.contiguous(memory_format=torch.channels_last))  # ~1.5x faster on CPUs
        hyper = torch.stack([dec.output_hypernetworks_mlps[i](hs[:, 1 + i, :]) for i in chosen], dim=1)
        bu, cu, hu, wu = up.shape
        low = (hyper @ up.reshape(bu, cu, hu * wu)).reshape(bu, -1, hu, wu)
        iou = dec.iou_prediction_head(hs[:, 0, :])[:, list(chosen)]
        return low, iou

    def _postprocess(self, low, emb: SamEmbedding):
        """Low-resolution logits ``(B, C, h, w)`` -> bool masks ``(B, C, H, W)`` (SAM's or MedSAM's recipe)."""
        import torch
        import torch.nn.functional as F

        if self.spec.medsam:
            prob = torch.sigmoid(low)
            return F.interpolate(prob, emb.original_size, mode="bilinear", align_corners=False) > 0.5
        s = self.image_size
        up = F.interpolate(low, (s, s), mode="bilinear", align_corners=False)
        ih, iw = emb.input_size
        if (ih, iw) != (s, s):
            up = up[..., :ih, :iw].contiguous()
        if tuple(emb.original_size) != (ih, iw):
            up = F.interpolate(up, emb.original_size, mode="bilinear", align_corners=False)
        return up > self.sam.mask_threshold


def load_sam(spec: SamSpec, device: str = "cpu", progress=None) -> SamModel:
    """Build the SAM ``spec`` names, with its weights, on ``device`` (a resolved torch device string).

    Raises
    ------
    VipInputError
        Missing, unsafe or unreadable file; a checkpoint of another architecture (named, e.g. "this is a
        vit_l checkpoint") or no SAM checkpoint at all.
    """
    net, digest, weights_id = load_network(
        spec, device, progress, lambda: build_sam(spec.arch), guess_arch,
        spec.arch if spec.arch in SAM_ARCHS else None, SAM_ARCHS, "SAM",
        "{path} is not a SAM/MedSAM checkpoint (it has no image_encoder weights). Choose a segment-anything or "
        "MedSAM .pth file.", named="SAM {}")
    from .precision import cast_module, resolve_precision

    precision = resolve_precision(spec.precision, device, "sam")
    cast_module(net.image_encoder, precision)
    return SamModel(net, spec, digest, device, weights_id, precision)
