"""Text features from open_clip text towers, trimmed to the tokens that can change them.

open_clip's CLIP text transformer is causal: the output at a position depends only on the tokens up to it,
and the feature is pooled at the end token.  So tokens after the last end token in a batch (padding, up to
77 positions) never change any pooled output, and running the tower on ``ids[:, :last_end + 1]`` gives the
same features for a fraction of the work (``encode_text`` on 20 short prompts: about 4x less).

Towers this applies to: ``open_clip.CLIP`` and a ``TextTransformer`` inside ``CustomTextCLIP`` with a causal
attention mask, no class token and no padding mask, pooled at the end token (``argmax`` or ``eos``).
Everything else — Hugging Face towers such as BiomedCLIP's PubMedBERT (bidirectional: every token sees every
other, and padding is masked rather than cut), CoCa-style towers, ``first``/``last`` pooling — runs through the
model's own ``encode_text`` unchanged.
"""

from __future__ import annotations

POOLS = ("argmax", "eos")


def causal_tower(model):
    """``(module, pool, eos_id)`` of a causal open_clip text tower whose features can be trimmed, else ``None``.

    ``module`` holds ``token_embedding``, ``positional_embedding``, ``transformer``, ``ln_final``,
    ``attn_mask`` and ``text_projection`` (the model itself for ``open_clip.CLIP``, ``model.text`` for a
    ``CustomTextCLIP`` with a ``TextTransformer``).
    """
    text = getattr(model, "text", None)
    if hasattr(model, "token_embedding") and hasattr(model, "ln_final"):
        t, pool, eos = model, getattr(model, "text_pool_type", "argmax"), getattr(model, "text_eos_id", None)
    elif text is not None and hasattr(text, "token_embedding") and hasattr(text, "ln_final"):
        if getattr(text, "cls_emb", None) is not None or getattr(text, "use_pad_mask", False):
            return None
        t, pool, eos = text, getattr(text, "pool_type", "argmax"), getattr(text, "eos_id", None)
    else:
        return None
    if getattr(t, "attn_mask", None) is None or pool not in POOLS:
        return None
    return t, pool, eos


def pool_positions(ids, pool: str, eos_id=None):
    """``(N,)`` int64 position of the token whose output becomes each text's feature (``ids``: ``(N, L)``)."""
    if pool == "argmax":
        return ids.argmax(dim=-1)
    return (ids == eos_id).int().argmax(dim=-1)


def encode_embeddings(tower, x, positions):
    """``(N, D)`` projected, not normalised, features of an open_clip text transformer from token embeddings.

    Parameters
    ----------
    tower : torch.nn.Module
        ``open_clip.CLIP`` or a ``TextTransformer`` (the module of :func:`causal_tower`).
    x : torch.Tensor
        ``(N, L', W)`` token embeddings, ``L'`` no more than the context length (fewer only for causal towers).
    positions : torch.Tensor
        ``(N,)`` int64 position pooled into each feature (:func:`pool_positions`).
    """
    import torch
    from torch import nn

    length = x.shape[1]
    cast = tower.transformer.get_cast_dtype()
    h = x.to(cast) + tower.positional_embedding[:length].to(cast)
    mask = tower.attn_mask[:length, :length] if tower.attn_mask is not None else None
    h = tower.ln_final(tower.transformer(h, attn_mask=mask))
    pooled = h[torch.arange(h.shape[0], device=h.device), positions.to(h.device)]
    proj = tower.text_projection
    if proj is None:
        return pooled
    return proj(pooled) if isinstance(proj, nn.Linear) else pooled @ proj


def encode_text(model, tokens):
    """Text features of ``tokens`` equal to ``model.encode_text(tokens)`` (within float rounding), faster.

    Parameters
    ----------
    model : open_clip.CLIP or open_clip.CustomTextCLIP
    tokens : torch.Tensor
        ``(N, L)`` int64 from the model's tokenizer.

    Returns
    -------
    torch.Tensor
        ``(N, D)`` projected, not normalised; causal towers run on ``tokens[:, :last_end + 1]`` only.
    """
    found = causal_tower(model)
    if found is None:
        return model.encode_text(tokens)
    tower, pool, eos_id = found
    positions = pool_positions(tokens, pool, eos_id)
    ids = tokens[:, :int(positions.max()) + 1]
    return encode_embeddings(tower, tower.token_embedding(ids), positions)
