"""SAM's two-way transformer with the prompt-independent work of its first block done once per image.

In segment-anything's ``TwoWayTransformer`` the first block's image side does not depend on the prompt:
the token-to-image attention projects the image tokens to keys (image + positional encoding) and values
(image), and the image-to-token attention projects them to queries (image + positional encoding).
:class:`ImageSide` keeps those three projections; :func:`two_way_transformer` runs the transformer with them
and gives the same result as ``TwoWayTransformer.forward`` (tested to float32 rounding).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class ImageSide:
    """Prompt-independent tensors of the first block, each ``(1, h*w, internal_dim)``; ``keys`` and ``pe``
    are the flattened image tokens and positional encoding ``(1, h*w, C)``."""

    keys: object
    pe: object
    token_to_image_k: object
    token_to_image_v: object
    image_to_token_q: object


def image_side(transformer, src, pe) -> ImageSide:
    """Project the image tokens for the first block once.

    Parameters
    ----------
    transformer : segment_anything.modeling.transformer.TwoWayTransformer
    src, pe : torch.Tensor
        ``(1, C, h, w)`` image embedding (with the dense prompt added) and positional encoding.
    """
    keys = src.flatten(2).permute(0, 2, 1)
    pe_flat = pe.flatten(2).permute(0, 2, 1)
    first = transformer.layers[0]
    with_pe = keys + pe_flat
    return ImageSide(keys, pe_flat, first.cross_attn_token_to_image.k_proj(with_pe),
                     first.cross_attn_token_to_image.v_proj(keys), first.cross_attn_image_to_token.q_proj(with_pe))


def _attend(attn, q, k, v):
    """``Attention.forward`` after its input projections: heads, softmax, recombine, output projection."""
    import torch

    b = max(q.shape[0], k.shape[0])
    qh = attn._separate_heads(q.expand(b, -1, -1), attn.num_heads)
    kh = attn._separate_heads(k.expand(b, -1, -1), attn.num_heads)
    vh = attn._separate_heads(v.expand(b, -1, -1), attn.num_heads)
    weights = torch.softmax(qh @ kh.transpose(-2, -1) / math.sqrt(qh.shape[-1]), dim=-1)
    return attn.out_proj(attn._recombine_heads(weights @ vh))


def two_way_transformer(transformer, side: ImageSide, tokens):
    """``TwoWayTransformer.forward`` for ``(B, N, C)`` prompt tokens on one image's :class:`ImageSide`.

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        ``(B, N, C)`` processed tokens and ``(B, h*w, C)`` processed image tokens.
    """
    b = tokens.shape[0]
    first, rest = transformer.layers[0], transformer.layers[1:]
    point_pe = tokens
    # first block: self-attention without positional encoding (skip_first_layer_pe), then the cached image side
    queries = first.norm1(first.self_attn(q=tokens, k=tokens, v=tokens))
    t2i = first.cross_attn_token_to_image
    queries = first.norm2(queries + _attend(t2i, t2i.q_proj(queries + point_pe), side.token_to_image_k,
                                            side.token_to_image_v))
    queries = first.norm3(queries + first.mlp(queries))
    i2t = first.cross_attn_image_to_token
    q = queries + point_pe
    keys = first.norm4(side.keys + _attend(i2t, side.image_to_token_q, i2t.k_proj(q), i2t.v_proj(queries)))
    key_pe = side.pe.expand(b, -1, -1)
    for layer in rest:
        queries, keys = layer(queries=queries, keys=keys, query_pe=point_pe, key_pe=key_pe)
    attn_out = transformer.final_attn_token_to_image(q=queries + point_pe, k=keys + key_pe, v=keys)
    return transformer.norm_final_attn(queries + attn_out), keys
