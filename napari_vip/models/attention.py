"""Where a CLIP image tower looks: attention rollout, Grad-CAM and patch–text similarity.

Tower kinds (:func:`tower_kind`) and the methods each supports (:data:`SUPPORTED`):

- ``vit``: open_clip's own ``VisionTransformer`` (ViT-B-16, ...): all three methods;
- ``timm-vit``: an open_clip ``TimmModel`` whose trunk is a timm ``VisionTransformer`` (BiomedCLIP's
  image tower is one): all three methods;
- ``resnet``: open_clip's ``ModifiedResNet`` (RN50, ...): Grad-CAM on the last convolutional stage
  (``layer4``) only; rollout and similarity are refused by name.

Methods, all for one image (batch of 1):

- ``rollout`` (Abnar & Zuidema 2020): per layer, the head-averaged attention matrix plus the identity,
  rows renormalised; the product through the layers; the class token's row over the patches.  It does
  not depend on the text.
- ``gradcam``: the gradient of the cosine similarity between the image embedding and the text
  embedding with respect to the last block's normalised input tokens (``ln_1``/``norm1``: the tokens
  the last attention reads, as pytorch-grad-cam does for ViTs); channel weights are the gradients
  averaged over the patches and a patch's value is its tokens' weighted sum.  The grid keeps the sign;
  the map is its positive part.
- ``similarity``: the last block's patch tokens through the tower's final norm and projection, cosine
  with the text embedding (MaskCLIP-style dense similarity).

Frames
------
Maps are returned in the (row, col) frame of the image passed, ``(H, W)`` float32 in [0, 1].  The model
sees the image through its own preprocessing (shortest side resized to ``S``, centre ``S x S`` crop):
the patch grid covers that centre part (``covered_rc``); pixels the model did not see are 0.  Square
images (the 256x256 marker renders) are covered entirely.

Clean hooks
-----------
Every computation runs inside :func:`pristine`, which puts the model in eval mode with no parameter
requiring gradients and restores every module's ``training`` flag and every parameter's
``requires_grad`` afterwards.  Attention probabilities are recomputed from each attention module's
input with the module's own weights in a forward hook (so fused attention and
``need_weights=False`` are left as they are); Grad-CAM takes gradients with ``torch.autograd.grad``
(nothing accumulates in ``.grad``).  Hooks live in :func:`forward_hooks`, which removes them even when
the forward pass fails.  torch is imported inside functions.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from ..core.errors import VipInputError

METHODS = ("rollout", "gradcam", "similarity")
#: Methods per tower kind.
SUPPORTED: dict[str, tuple[str, ...]] = {"vit": METHODS, "timm-vit": METHODS, "resnet": ("gradcam",)}
#: Human-readable tower kinds, for messages.
KIND_NAMES = {"vit": "open_clip ViT", "timm-vit": "timm ViT", "resnet": "ResNet (ModifiedResNet)"}


@dataclass
class AttentionMap:
    """One map for one image.

    Attributes
    ----------
    method : str
        One of :data:`METHODS`.
    heatmap : np.ndarray
        ``(H, W)`` float32 in [0, 1], rows first, in the frame of the image passed (or ``out_hw``).
    grid : np.ndarray
        ``(gh, gw)`` float32 raw values per patch (rows first): rollout weights (>= 0), signed Grad-CAM
        values, or cosine similarities.
    covered_rc : (int, int, int, int)
        ``(r0, r1, c0, c1)``: half-open rows and columns of the heatmap's frame the model saw.
    score : float or None
        Cosine similarity between the image embedding and the text (``None`` when no text was given).
    embedding : np.ndarray or None
        ``(D,)`` float32 L2-normalised image embedding from the same forward pass (for probabilities
        without a second pass).
    notes : list of str
    """

    method: str
    heatmap: np.ndarray
    grid: np.ndarray
    covered_rc: tuple[int, int, int, int]
    score: float | None = None
    embedding: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)


# -- tower kinds ----------------------------------------------------------------------------------------------
def _visual(model):
    visual = getattr(model, "visual", None)
    if visual is None:
        raise VipInputError(f"{type(model).__name__} has no image tower (.visual); attention maps need a CLIP model.")
    return visual


def tower_kind(model) -> str:
    """``vit``, ``timm-vit``, ``resnet`` or ``unknown`` for a CLIP model (or its ``.visual`` tower)."""
    visual = getattr(model, "visual", model)
    name = type(visual).__name__
    if name == "VisionTransformer" and hasattr(visual, "transformer") and hasattr(visual, "ln_post"):
        return "vit"
    if name == "TimmModel":
        trunk = getattr(visual, "trunk", None)
        if trunk is not None and hasattr(trunk, "blocks") and hasattr(trunk, "patch_embed"):
            return "timm-vit"
        return "unknown"
    if name == "ModifiedResNet" and hasattr(visual, "layer4"):
        return "resnet"
    return "unknown"


def check_method(model, method: str) -> str:
    """The tower kind, after refusing (by name) a method this kind of tower does not support."""
    if method not in METHODS:
        raise VipInputError(f"Unknown attention method {method!r}; choose one of {', '.join(METHODS)}.")
    kind = tower_kind(model)
    visual = getattr(model, "visual", model)
    if kind == "unknown":
        raise VipInputError(
            f"Attention maps are not available for a {type(visual).__name__} image tower; they need an open_clip "
            "ViT (e.g. ViT-B-16), a timm ViT tower (e.g. BiomedCLIP) or a ResNet CLIP (RN50, Grad-CAM only)."
        )
    if method not in SUPPORTED[kind]:
        raise VipInputError(
            f"Method {method!r} is not supported for a {KIND_NAMES[kind]} image tower; use "
            f"{' or '.join(SUPPORTED[kind])}."
        )
    if kind == "vit" and method == "similarity" and getattr(visual, "attn_pool", None) is not None:
        raise VipInputError("Method 'similarity' is not supported for an open_clip ViT with attentional pooling "
                            "(CoCa); use rollout or gradcam.")
    if kind == "timm-vit" and method == "rollout":
        trunk = visual.trunk
        if getattr(trunk, "cls_token", None) is None:
            raise VipInputError("Method 'rollout' needs a class token, and this timm ViT tower has none; use gradcam "
                                "or similarity.")
    if kind == "timm-vit" and method == "similarity" and getattr(visual.trunk, "attn_pool", None) is not None:
        raise VipInputError("Method 'similarity' is not supported for a timm ViT with attention pooling ('map'); "
                            "use rollout or gradcam.")
    if kind in ("vit", "timm-vit") and method in ("rollout", "gradcam"):
        for blk in _blocks(visual, kind):
            if method == "rollout":
                _attention_module(blk)
            elif _block_norm(blk) is None:
                raise VipInputError(f"Method 'gradcam' does not know the block type {type(blk).__name__}.")
    return kind


def _blocks(visual, kind: str):
    return list(visual.transformer.resblocks) if kind == "vit" else list(visual.trunk.blocks)


def _block_norm(block):
    """The norm whose output the block's attention reads (``ln_1`` / ``norm1``)."""
    norm = getattr(block, "ln_1", None)
    return norm if norm is not None else getattr(block, "norm1", None)


def _attention_module(block):
    """The block's attention module, when :func:`_attention_probs` understands it; else refused."""
    import torch.nn as nn

    attn = getattr(block, "attn", None)
    if isinstance(attn, nn.MultiheadAttention):
        if not attn._qkv_same_embed_dim or attn.bias_k is not None or attn.add_zero_attn:
            raise VipInputError("Method 'rollout' does not support this nn.MultiheadAttention variant.")
        return attn
    if attn is not None and hasattr(attn, "in_proj_weight") and hasattr(attn, "ln_q"):  # open_clip Attention
        return attn
    if attn is not None and type(attn).__name__ == "Attention" and hasattr(attn, "qkv") and hasattr(attn, "q_norm"):
        return attn  # timm Attention
    raise VipInputError(
        f"Method 'rollout' cannot read attention weights from {type(attn).__name__ if attn is not None else 'a block without .attn'}"
        "; use gradcam or similarity."
    )


# -- model state and hooks ------------------------------------------------------------------------------------
@contextmanager
def pristine(model):
    """Eval mode and no parameter requiring gradients inside; every flag restored on exit, even on error."""
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        for p in params:
            p.requires_grad_(False)
        yield model
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)
        for m, training in modes:
            m.training = training


@contextmanager
def forward_hooks(pairs):
    """Register ``module.register_forward_hook(fn)`` for each ``(module, fn)``; always removed on exit."""
    handles = []
    try:
        for module, fn in pairs:
            handles.append(module.register_forward_hook(fn))
        yield
    finally:
        for h in handles:
            h.remove()


def _attention_probs(attn, args):
    """Head-averaged attention probabilities ``(L, L)`` float32 of the first image, recomputed from the
    attention module's input ``args`` with its own weights."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    x = args[0]
    if isinstance(attn, nn.MultiheadAttention):
        k_in = args[1] if len(args) > 1 and args[1] is not None else x
        if not attn.batch_first:
            x, k_in = x.transpose(0, 1), k_in.transpose(0, 1)
        e, heads = attn.embed_dim, attn.num_heads
        w, b = attn.in_proj_weight, attn.in_proj_bias
        q = F.linear(x, w[:e], None if b is None else b[:e])
        k = F.linear(k_in, w[e:2 * e], None if b is None else b[e:2 * e])
        n, lq, _ = q.shape
        q = q.reshape(n, lq, heads, -1).transpose(1, 2)
        k = k.reshape(n, k.shape[1], heads, -1).transpose(1, 2)
        logits = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
    elif hasattr(attn, "in_proj_weight"):  # open_clip Attention (custom blocks)
        n, length, _ = x.shape
        q, k, _ = F.linear(x, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
        q = q.reshape(n, length, attn.num_heads, -1).transpose(1, 2)
        k = k.reshape(n, length, attn.num_heads, -1).transpose(1, 2)
        if attn.logit_scale is not None:
            scale = torch.clamp(attn.logit_scale, max=attn.logit_scale_max).exp()
            logits = (F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)) * scale
        else:
            q, k = attn.ln_q(q), attn.ln_k(k)
            logits = (q * attn.scale) @ k.transpose(-2, -1)
    else:  # timm Attention
        n, length, _ = x.shape
        qkv = attn.qkv(x).reshape(n, length, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
        q, k = attn.q_norm(qkv[0]), attn.k_norm(qkv[1])
        logits = (q * attn.scale) @ k.transpose(-2, -1)
    return logits[0].float().softmax(dim=-1).mean(dim=0)


# -- pure numerics --------------------------------------------------------------------------------------------
def attention_rollout(attentions, num_prefix: int = 1) -> np.ndarray:
    """Attention rollout (Abnar & Zuidema 2020) from per-layer attention matrices.

    Parameters
    ----------
    attentions : sequence of np.ndarray
        One per layer, first layer first: ``(L, L)`` or ``(heads, L, L)`` (averaged over heads), rows
        are queries and sum to 1.  Token 0 is the class token; tokens ``num_prefix..L-1`` are patches.
    num_prefix : int
        Class and register tokens before the patches.

    Returns
    -------
    np.ndarray
        ``(L - num_prefix,)`` float64: the class token's rolled-out attention to each patch,
        the row 0 of ``Â_n ... Â_1`` with ``Â = (A + I) / rowsum(A + I)``.
    """
    if len(attentions) == 0:
        raise ValueError("attention_rollout needs at least one layer")
    rolled = None
    for a in attentions:
        a = np.asarray(a, dtype=np.float64)
        if a.ndim == 3:
            a = a.mean(axis=0)
        if a.ndim != 2 or a.shape[0] != a.shape[1]:
            raise ValueError(f"attention matrices must be (L, L) or (heads, L, L); got {a.shape}")
        a = a + np.eye(a.shape[0])
        a = a / a.sum(axis=-1, keepdims=True)
        rolled = a if rolled is None else a @ rolled
    return rolled[0, num_prefix:]


def gradcam_from_tokens(tokens: np.ndarray, grads: np.ndarray) -> np.ndarray:
    """Signed Grad-CAM values per position: ``tokens @ mean(grads, axis=0)``.

    Parameters
    ----------
    tokens, grads : np.ndarray
        ``(N, D)`` activations of N patches (or conv positions) and the score's gradient w.r.t. them.

    Returns
    -------
    np.ndarray
        ``(N,)`` float64; positive where the patch pushes the score up along the average gradient.
    """
    tokens = np.asarray(tokens, dtype=np.float64)
    grads = np.asarray(grads, dtype=np.float64)
    if tokens.shape != grads.shape or tokens.ndim != 2:
        raise ValueError(f"tokens and grads must both be (N, D); got {tokens.shape} and {grads.shape}")
    return tokens @ grads.mean(axis=0)


def normalise_grid(method: str, grid: np.ndarray) -> tuple[np.ndarray, str | None]:
    """Raw grid -> [0, 1] and an optional note.

    rollout: divided by its maximum; gradcam: positive part divided by its maximum; similarity:
    min-max.  A map without positive range is all zeros (with a note).
    """
    g = np.asarray(grid, dtype=np.float64)
    if method == "similarity":
        lo, hi = float(g.min()), float(g.max())
        if hi - lo <= 1e-12:
            return np.zeros_like(g), "all patches are equally similar to the text: the map is flat (zeros)"
        return (g - lo) / (hi - lo), None
    if method == "gradcam":
        g = np.maximum(g, 0.0)
    hi = float(g.max())
    if hi <= 0.0:
        why = "no patch raises the class score (Grad-CAM is all <= 0)" if method == "gradcam" else "the map is all zeros"
        return np.zeros_like(g), why
    return g / hi, None


def covered_region(preprocess, hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """``(r0, r1, c0, c1)``: the half-open part of an ``hw`` image that ``preprocess`` keeps.

    Understands torchvision ``Resize`` (an int: shortest side; a pair: squash) followed by
    ``CenterCrop``; anything else is taken to keep the whole image.
    """
    h, w = (int(v) for v in hw)
    ts = list(getattr(preprocess, "transforms", []) or [])
    resize = next((t for t in ts if type(t).__name__ == "Resize"), None)
    crop = next((t for t in ts if type(t).__name__ == "CenterCrop"), None)
    if crop is None:
        return 0, h, 0, w
    size = getattr(resize, "size", None)
    if resize is None:
        rh, rw = float(h), float(w)
    elif isinstance(size, int) or (isinstance(size, (list, tuple)) and len(size) == 1):
        s = size if isinstance(size, int) else size[0]
        short, long_ = (h, w) if h <= w else (w, h)
        new_short, new_long = s, int(s * long_ / short)
        rh, rw = (float(new_short), float(new_long)) if h <= w else (float(new_long), float(new_short))
    else:
        rh, rw = float(size[0]), float(size[1])
    ch, cw = crop.size if isinstance(crop.size, (list, tuple)) else (crop.size, crop.size)
    top, left = int(round((rh - ch) / 2.0)), int(round((rw - cw) / 2.0))
    r0 = int(np.clip(round(max(top, 0) * h / rh), 0, h))
    r1 = int(np.clip(round(min(top + ch, rh) * h / rh), r0 + 1, h))
    c0 = int(np.clip(round(max(left, 0) * w / rw), 0, w))
    c1 = int(np.clip(round(min(left + cw, rw) * w / rw), c0 + 1, w))
    return r0, r1, c0, c1


def grid_to_image(grid01: np.ndarray, hw: tuple[int, int], covered_rc=None) -> np.ndarray:
    """Bilinear upsampling of a ``(gh, gw)`` map in [0, 1] onto the covered part of an ``hw`` frame.

    Patch edges map onto pixel edges; pixels outside ``covered_rc`` are 0.  Returns ``(H, W)`` float32.
    """
    from skimage.transform import resize

    h, w = (int(v) for v in hw)
    r0, r1, c0, c1 = covered_rc if covered_rc is not None else (0, h, 0, w)
    out = np.zeros((h, w), dtype=np.float32)
    part = resize(np.asarray(grid01, dtype=np.float64), (r1 - r0, c1 - c0), order=1, mode="edge",
                  anti_aliasing=False, preserve_range=True)
    out[r0:r1, c0:c1] = np.clip(part, 0.0, 1.0)
    return out


# -- the three methods ----------------------------------------------------------------------------------------
def _grid_shape(visual, kind: str, x) -> tuple[int, int]:
    if kind == "vit":
        ph, pw = visual.patch_size
    else:
        ph, pw = visual.trunk.patch_embed.patch_size
    return int(x.shape[-2]) // int(ph), int(x.shape[-1]) // int(pw)


def _num_prefix(visual, kind: str) -> int:
    return 1 if kind == "vit" else int(getattr(visual.trunk, "num_prefix_tokens", 1))


def _text_embedding(clip, text: str):
    """``(1, D)`` float32 normal (not inference-mode) tensor: the L2-normalised text embedding."""
    return clip.encode_texts([text]).clone()


def _rollout_grid(clip, x, kind: str):
    """``(gh, gw)`` rollout weights and the ``(1, D)`` image features of the same forward pass."""
    import torch

    visual = _visual(clip.model)
    blocks = _blocks(visual, kind)
    mats: list = [None] * len(blocks)

    def recorder(i):
        def hook(module, args, output):
            mats[i] = _attention_probs(module, args).detach().cpu().double().numpy()
        return hook

    pairs = [(_attention_module(blk), recorder(i)) for i, blk in enumerate(blocks)]
    with forward_hooks(pairs), torch.inference_mode():
        feats = clip.model.encode_image(x)
    if any(m is None for m in mats):
        raise RuntimeError("attention rollout: a block's attention did not run")
    weights = attention_rollout(mats, _num_prefix(visual, kind))
    gh, gw = _grid_shape(visual, kind, x)
    return weights.reshape(gh, gw), feats


def _gradcam_grid(clip, x, kind: str, text: str):
    import torch
    import torch.nn.functional as F

    visual = _visual(clip.model)
    txt = _text_embedding(clip, text)
    store: dict = {}

    def capture(module, args, output):
        out = output.detach().requires_grad_(True)
        store["act"] = out
        return out

    target = visual.layer4 if kind == "resnet" else _block_norm(_blocks(visual, kind)[-1])
    with forward_hooks([(target, capture)]), torch.enable_grad():
        feats = clip.model.encode_image(x)
        score = (F.normalize(feats.float(), dim=-1) * txt.to(feats.device)).sum()
        (grad,) = torch.autograd.grad(score, store["act"])
    act = store.pop("act").detach()
    grad = grad.detach()
    if kind == "resnet":  # (1, C, h, w)
        gh, gw = act.shape[-2:]
        tokens = act[0].flatten(1).T
        grads = grad[0].flatten(1).T
    else:
        if kind == "vit" and not getattr(visual.transformer, "batch_first", True):
            act, grad = act.transpose(0, 1), grad.transpose(0, 1)
        prefix = _num_prefix(visual, kind)
        tokens, grads = act[0, prefix:], grad[0, prefix:]
        gh, gw = _grid_shape(visual, kind, x)
    cam = gradcam_from_tokens(tokens.float().cpu().numpy(), grads.float().cpu().numpy())
    return cam.reshape(int(gh), int(gw)), feats.detach()


def _patch_embeddings(clip, x, kind: str):
    """``(gh*gw, D)`` projected patch tokens and the ``(D,)`` pooled image embedding (not normalised)."""
    visual = _visual(clip.model)
    if kind == "vit":
        out = visual.forward_intermediates(x, indices=1, normalize_intermediates=True, output_fmt="NLC")
        tokens = out["image_intermediates"][-1][0]
        if visual.proj is not None:
            tokens = tokens @ visual.proj
        return tokens, out["image_features"][0]
    trunk = visual.trunk
    out = visual.forward_intermediates(x, indices=1, normalize_intermediates=True, output_fmt="NLC")
    tokens = out["image_intermediates"][-1][0]
    tokens = trunk.head(trunk.head_drop(trunk.fc_norm(tokens)))
    tokens = visual.head(tokens)
    return tokens, out["image_features"][0]


def _similarity_grid(clip, x, kind: str, text: str):
    import torch
    import torch.nn.functional as F

    visual = _visual(clip.model)
    txt = clip.encode_texts([text])
    with torch.inference_mode():
        tokens, pooled = _patch_embeddings(clip, x, kind)
        t = txt[0].to(tokens.device)
        sims = F.normalize(tokens.float(), dim=-1) @ t
    gh, gw = _grid_shape(visual, kind, x)
    return sims.cpu().double().numpy().reshape(gh, gw), pooled[None]


def compute_map(clip, image_rgb: np.ndarray, method: str, text: str | None = None,
                out_hw: tuple[int, int] | None = None) -> AttentionMap:
    """One attention map of ``clip``'s image tower for one image.

    Parameters
    ----------
    clip : napari_vip.models.clip.ClipModel
    image_rgb : np.ndarray
        ``(h, w, 3)`` uint8, rows first: what the model sees (e.g. a marker render).
    method : str
        ``rollout``, ``gradcam`` or ``similarity`` (see the module docstring).
    text : str, optional
        The prompt whose embedding Grad-CAM and similarity use; rollout ignores it (it then only gives
        ``score``).
    out_hw : (int, int), optional
        Frame of the returned heatmap when ``image_rgb`` is a resize of a larger image (the 256x256
        render of a full-resolution image): ``(H, W)`` of that image.  Default ``(h, w)``.

    Raises
    ------
    VipInputError
        Unknown method, a method the tower kind does not support, missing text, or a bad image.
    """
    import torch

    kind = check_method(clip.model, method)
    img = np.asarray(image_rgb)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise VipInputError(f"Attention maps need an (H, W, 3) uint8 image; got {img.shape} {img.dtype}.")
    if method != "rollout" and not (text and text.strip()):
        raise VipInputError(f"Method {method!r} needs a text (the class prompt) to compare the image with.")
    hw = img.shape[:2]
    frame = tuple(int(v) for v in (out_hw or hw))
    with pristine(clip.model):
        x = clip.image_batch([img])
        if method == "rollout":
            grid, feats = _rollout_grid(clip, x, kind)
        elif method == "gradcam":
            grid, feats = _gradcam_grid(clip, x, kind, text)
        else:
            grid, feats = _similarity_grid(clip, x, kind, text)
        with torch.inference_mode():
            emb = torch.nn.functional.normalize(feats.float(), dim=-1)[0]
            score = float(emb @ clip.encode_texts([text])[0].to(emb.device)) if text else None
            emb = emb.cpu().numpy().astype(np.float32)
    notes = []
    grid01, note = normalise_grid(method, grid)
    if note:
        notes.append(note)
    r0, r1, c0, c1 = covered_region(clip.preprocess, hw)
    if (r0, r1, c0, c1) != (0, hw[0], 0, hw[1]):
        notes.append(f"the model's preprocessing keeps only rows {r0}-{r1 - 1}, columns {c0}-{c1 - 1} of the "
                     f"{hw[1]}x{hw[0]} image (centre crop); the map is 0 elsewhere")
    sy, sx = frame[0] / hw[0], frame[1] / hw[1]
    covered = (int(round(r0 * sy)), max(int(round(r1 * sy)), int(round(r0 * sy)) + 1),
               int(round(c0 * sx)), max(int(round(c1 * sx)), int(round(c0 * sx)) + 1))
    heat = grid_to_image(grid01, frame, covered)
    return AttentionMap(method, heat, np.asarray(grid, dtype=np.float32), covered, score, emb, notes)


def patch_text_similarity(clip, image_rgb: np.ndarray, text: str) -> tuple[np.ndarray, np.ndarray]:
    """Dense patch–text cosine similarity of a CLIP ViT (open_clip or timm tower).

    Parameters
    ----------
    clip : napari_vip.models.clip.ClipModel
    image_rgb : np.ndarray
        ``(H, W, 3)`` uint8, rows first.
    text : str
        Embedded with ``clip.encode_texts`` exactly as given (no template applied).

    Returns
    -------
    heatmap : np.ndarray
        ``(H, W)`` float32 in [0, 1]: min-max normalised similarities, bilinearly upsampled to the
        image's frame (0 where the model's centre crop did not look).
    grid : np.ndarray
        ``(gh, gw)`` float32 raw cosine similarities in [-1, 1], rows first.

    Raises
    ------
    VipInputError
        For a ResNet (or other non-ViT) tower, an empty text or a bad image.
    """
    result = compute_map(clip, image_rgb, "similarity", text)
    return result.heatmap, result.grid
