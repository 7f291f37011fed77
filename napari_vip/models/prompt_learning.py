"""Learnable prompts on a frozen CLIP: the ViP context and merge prompts, and the CoOp baseline.

ViP (Fang et al., MICCAI 2024):

- **context prompt** — ``n_ctx`` (default 4) learnable vectors in the text tower's token-embedding space,
  inserted after the start token of every descriptor: ``[SOS] ctx1..ctx4 <descriptor>. [EOS]``.  The
  vectors are shared by all classes (default) or one set per class (``class_specific``).  The class
  name is *not* part of these prompts.
- **merge prompt** — one learnable query ``q`` (``(D,)``) per class that attends over its descriptors'
  text features ``T`` (``(K, D)``, after the text projection and *not* normalised, as the released code feeds
  them): ``merged = q + softmax((W_q q)(W_k T)^T / sqrt(D)) T`` with bias-free ``D x D`` projections
  ``W_q`` and ``W_k``.  The class logit is ``logit_scale * cos(image feature, merged)``.

CoOp (Zhou et al., IJCV 2022) is the same context prompt around the class name
(``[SOS] ctx1..ctx4 <class name>. [EOS]``), one prompt per class and no merge.

Only the prompt parameters are trained; the CLIP model stays frozen.  torch is imported lazily by
the callers: this module itself imports torch at import time, so import it inside functions.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..core.errors import VipInputError
from .text_encoding import POOLS, encode_embeddings, pool_positions

METHODS = ("vip", "coop")
DEFAULT_N_CTX = 4
#: What the merge prompt attends over: the raw projected descriptor features (the released code), or unit ones
#: (napari-vip before it followed the released code; only to read prompts files learned then).
MERGE_ON = ("raw", "unit")
#: How a descriptor becomes prompt text: ``project`` tidies it (underscores as spaces, a full stop unless it ends
#: with one) and cuts a prompt too long for the context; ``released`` appends a full stop as the released code
#: does and refuses a prompt longer than the context, as its tokenizer does.
TEXT_FORMS = ("project", "released")


# -- the text tower ---------------------------------------------------------------------------------------------
class TextTower:
    """Runs an open_clip text tower from token *embeddings*, so learned vectors can replace some tokens.

    Supports the three text towers open_clip builds: the built-in transformer of ``open_clip.CLIP``,
    a ``TextTransformer`` inside ``CustomTextCLIP``, and a Hugging Face encoder (``HFTextEncoder``,
    e.g. BiomedCLIP's PubMedBERT).

    Attributes
    ----------
    width : int
        Token-embedding width ``W``.
    embed_dim : int
        Output (joint embedding) dimension ``D``.
    context_length : int
        Token sequence length ``L`` of the tokenizer.
    sos_id, eos_id, pad_id, placeholder_id : int
        Start, end, padding token ids, and the id put where learned vectors go (never the padding id,
        always below ``eos_id`` so argmax pooling still finds the end token).
    """

    def __init__(self, model, tokenizer):
        self.model = model
        self.tokenizer = tokenizer
        text = getattr(model, "text", None)
        if hasattr(model, "token_embedding") and hasattr(model, "ln_final"):
            self.kind, self._t = "clip", model
            self._pool, self._eos_pool_id = model.text_pool_type, getattr(model, "text_eos_id", None)
        elif text is not None and hasattr(text, "token_embedding") and hasattr(text, "ln_final"):
            if getattr(text, "cls_emb", None) is not None or getattr(text, "use_pad_mask", False):
                raise VipInputError("Prompt learning does not support text towers with a class token or padding "
                                    "mask (CoCa-style); choose a CLIP model with a causal text transformer.")
            self.kind, self._t = "text_transformer", text
            self._pool, self._eos_pool_id = text.pool_type, getattr(text, "eos_id", None)
        elif text is not None and hasattr(text, "transformer") and hasattr(text, "pooler"):
            self.kind, self._t = "hf", text
            self._pool, self._eos_pool_id = "hf", None
        else:
            raise VipInputError(f"Prompt learning does not know the text tower of {type(model).__name__}.")
        probe = self._token_ids("x")
        self.pad_id = self._pad_id()
        n = self._length(probe)
        self.sos_id, self.eos_id = int(probe[0]), int(probe[n - 1])
        self.placeholder_id = int(probe[1])
        self.context_length = len(probe)
        with torch.no_grad():
            self.width = int(self.embed_tokens(torch.tensor([[self.sos_id]])).shape[-1])
            self.embed_dim = int(self.encode_embeddings(
                self.embed_tokens(torch.tensor([probe[:n]])), torch.tensor([probe[:n]])).shape[-1])

    # token ids ---------------------------------------------------------------------------------------------------
    def _pad_id(self) -> int:
        inner = getattr(self.tokenizer, "tokenizer", None)
        pad = getattr(inner, "pad_token_id", None)
        return int(pad) if pad is not None else 0

    def _token_ids(self, text: str) -> list[int]:
        return [int(v) for v in self.tokenizer([text])[0].tolist()]

    def _length(self, ids) -> int:
        """Number of tokens up to and including the end token (the rest is padding)."""
        pad = self._pad_id() if not hasattr(self, "pad_id") else self.pad_id
        nonpad = [i for i, v in enumerate(ids) if v != pad]
        return (nonpad[-1] + 1) if nonpad else 0

    def content_ids(self, text: str) -> list[int]:
        """The token ids of ``text`` between the start and end tokens."""
        ids = self._token_ids(text)
        return ids[1:self._length(ids) - 1]

    def prompt_ids(self, texts: list[str], n_ctx: int, refuse_long: bool = False) -> tuple[torch.Tensor, np.ndarray]:
        """Token ids of ``[SOS] X*n_ctx <text> [EOS] pad...`` for each text.

        Parameters
        ----------
        refuse_long : bool
            Raise :class:`VipInputError` for a prompt longer than the context (the released code's tokenizer
            does); by default such a text is cut before the end token (as open_clip's tokenizer does).

        Returns
        -------
        ids : torch.Tensor
            ``(N, L)`` int64; positions ``1..n_ctx`` hold :attr:`placeholder_id`.
        eos_pos : np.ndarray
            ``(N,)`` int64 index of each end token, ``= 1 + n_ctx + len(content)``.
        """
        L = self.context_length
        room = L - 2 - n_ctx
        if room < 1:
            raise VipInputError(f"{n_ctx} context vectors leave no room for text in {L} tokens.")
        rows, eos = [], []
        for t in texts:
            content = self.content_ids(t)
            if refuse_long and len(content) > room:
                raise VipInputError(
                    f"Descriptor {t[:80]!r}... with the start, end and {n_ctx} context tokens is longer than the "
                    f"text model's {L} tokens; shorten it to {room} tokens or fewer.")
            content = content[:room]
            row = [self.sos_id] + [self.placeholder_id] * n_ctx + content + [self.eos_id]
            eos.append(len(row) - 1)
            rows.append(row + [self.pad_id] * (L - len(row)))
        return torch.tensor(rows, dtype=torch.long), np.asarray(eos, dtype=np.int64)

    # embeddings -> features ---------------------------------------------------------------------------------------
    @property
    def causal(self) -> bool:
        """True when outputs up to a position do not depend on later tokens (causal attention mask)."""
        return self.kind in ("clip", "text_transformer") and self._t.attn_mask is not None

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        """``(N, L)`` int64 -> ``(N, L, W)`` token embeddings (no positions)."""
        dev = self.device
        if self.kind == "hf":
            return self._t.transformer.get_input_embeddings()(ids.to(dev))
        return self._t.token_embedding(ids.to(dev))

    @property
    def device(self):
        return next(self.model.parameters()).device

    def pool_index(self, ids: torch.Tensor) -> torch.Tensor:
        """``(N,)`` position whose output becomes the text feature, by the tower's own pooling rule."""
        n, length = ids.shape
        if self._pool in POOLS:
            return pool_positions(ids, self._pool, self._eos_pool_id)
        if self._pool == "first":
            return torch.zeros(n, dtype=torch.long)
        if self._pool == "last":
            return torch.full((n,), length - 1, dtype=torch.long)
        raise VipInputError(f"Prompt learning does not support text pooling {self._pool!r}.")

    def encode_embeddings(self, x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Text features from token embeddings.

        Parameters
        ----------
        x : torch.Tensor
            ``(N, L', W)`` token embeddings (learned vectors included), ``L' <= L``; for causal towers
            ``L'`` may stop right after the last end token.
        ids : torch.Tensor
            ``(N, L')`` the matching token ids (placeholders where learned vectors are); used for pooling
            and padding masks only.

        Returns
        -------
        torch.Tensor
            ``(N, D)`` projected, *not* normalised.
        """
        t = self._t
        ids = ids.to(x.device)
        if self.kind == "hf":
            mask = (ids != self.pad_id).long()
            out = t.transformer(inputs_embeds=x, attention_mask=mask)
            return t.proj(t.pooler(out, mask))
        return encode_embeddings(t, x, self.pool_index(ids))

    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        """Plain text features ``(N, D)`` (not normalised) through the same path, no learned vectors."""
        ids, _ = self.prompt_ids(texts, 0)
        with torch.no_grad():
            return self.encode_embeddings(self.embed_tokens(ids), ids)


def descriptor_text(text: str, form: str = "project") -> str:
    """The prompt text of a descriptor (or class name).

    ``form="project"``: ``"<descriptor>."``, stripped, underscores as spaces, a full stop unless it ends with one;
    ``form="released"``: ``text + "."`` exactly as the released ViP code builds it (the tokenizer lower-cases and
    collapses white space in both forms).
    """
    if form == "released":
        return str(text) + "."
    t = " ".join(str(text).replace("_", " ").split())
    return t if t.endswith((".", "!", "?")) else t + "."


# -- context prompt ---------------------------------------------------------------------------------------------
class ContextPrompt(nn.Module):
    """Learned context vectors in front of fixed texts: ``[SOS] ctx1..ctxM <text>. [EOS]``.

    Parameters
    ----------
    tower : TextTower
    texts : list of str
        ``N`` texts (descriptors for ViP, class names for CoOp); a full stop is added.
    groups : array-like
        ``(N,)`` class index of each text (picks the context set when ``class_specific``).
    n_classes : int
    n_ctx : int
        ``M`` context vectors.
    class_specific : bool
        One set of ``M`` vectors per class instead of one shared set.
    init_std : float
        Context vectors start as ``N(0, init_std^2)``, as in CoOp.
    text_form : {"project", "released"}
        See :data:`TEXT_FORMS`.

    Attributes
    ----------
    ctx : nn.Parameter
        ``(M, W)`` shared, or ``(C, M, W)`` class-specific.
    ids : torch.Tensor
        ``(N, L')`` token ids, placeholders at positions ``1..M``; ``L'`` ends after the last end token
        for causal towers (later positions cannot change the result), else ``L' = L``.
    eos_pos : torch.Tensor
        ``(N,)`` position of each prompt's end token.
    """

    def __init__(self, tower: TextTower, texts: list[str], groups, n_classes: int, n_ctx: int = DEFAULT_N_CTX,
                 class_specific: bool = False, init_std: float = 0.02, text_form: str = "project"):
        super().__init__()
        if n_ctx < 1:
            raise VipInputError(f"The context prompt needs at least one context vector (got {n_ctx}).")
        if text_form not in TEXT_FORMS:
            raise VipInputError(f"Unknown descriptor text form {text_form!r}; choose one of {', '.join(TEXT_FORMS)}.")
        self.tower = tower
        self.n_ctx = int(n_ctx)
        self.class_specific = bool(class_specific)
        self.texts = [descriptor_text(t, text_form) for t in texts]
        ids, eos = tower.prompt_ids(self.texts, self.n_ctx, refuse_long=text_form == "released")
        if tower.causal:
            ids = ids[:, :int(eos.max()) + 1]
        shape = (n_classes, n_ctx, tower.width) if class_specific else (n_ctx, tower.width)
        dev = tower.device
        self.ctx = nn.Parameter(torch.randn(shape, device=dev) * init_std)
        self.register_buffer("ids", ids.to(dev))
        self.register_buffer("eos_pos", torch.as_tensor(eos, device=dev))
        self.register_buffer("groups", torch.as_tensor(np.asarray(groups, dtype=np.int64), device=dev))
        with torch.no_grad():
            self.register_buffer("token_embeds", tower.embed_tokens(ids).detach().clone())

    def embeddings(self) -> torch.Tensor:
        """``(N, L', W)`` the prompts' token embeddings with the context vectors at positions ``1..M``."""
        n = self.ids.shape[0]
        ctx = self.ctx[self.groups] if self.class_specific else self.ctx.unsqueeze(0).expand(n, -1, -1)
        e = self.token_embeds
        return torch.cat([e[:, :1], ctx.to(e.dtype), e[:, 1 + self.n_ctx:]], dim=1)

    def forward(self) -> torch.Tensor:
        """``(N, D)`` text features (projected, not normalised)."""
        return self.tower.encode_embeddings(self.embeddings(), self.ids)


# -- merge prompt -----------------------------------------------------------------------------------------------
def merge_descriptors(q: torch.Tensor, T: torch.Tensor, mask: torch.Tensor, W_q: torch.Tensor,
                      W_k: torch.Tensor) -> torch.Tensor:
    """``q + softmax((W_q q)(W_k T)^T / sqrt(D)) T`` for each class.

    Parameters
    ----------
    q : torch.Tensor
        ``(C, D)`` one query per class.
    T : torch.Tensor
        ``(C, K, D)`` descriptor features, padded to ``K`` per class.
    mask : torch.Tensor
        ``(C, K)`` bool, True for real descriptors (padding gets no attention).
    W_q, W_k : torch.Tensor
        ``(D, D)`` projection matrices acting on column vectors (``W @ q``).

    Returns
    -------
    torch.Tensor
        ``(C, D)`` merged class features.
    """
    d = q.shape[-1]
    qp = q @ W_q.T  # (C, D): rows are (W_q q)^T
    kp = T @ W_k.T  # (C, K, D)
    scores = torch.einsum("cd,ckd->ck", qp, kp) / math.sqrt(d)
    scores = scores.masked_fill(~mask, float("-inf"))
    attn = torch.softmax(scores, dim=-1)
    return q + torch.einsum("ck,ckd->cd", attn, T)


class MergePrompt(nn.Module):
    """One learnable query per class merging its descriptor features (see :func:`merge_descriptors`).

    Parameters
    ----------
    T0 : torch.Tensor
        ``(C, K, D)`` initial descriptor features (their shape and dtype set the parameters').
    mask : torch.Tensor
        ``(C, K)`` bool.

    As the ViP paper's released code initialises them: one query per class ``N(0, 0.02^2)``, and ``W_q``, ``W_k``
    bias-free ``D x D`` maps, Xavier-normal.  (Queries at the class means with identity maps leave the attention
    uniform on near-identical unit descriptor features, and ``W_q``/``W_k`` then get gradients around 1e-5 of
    their size: they never learn.)  With a small query the merged class feature starts at the attention-weighted
    mean of the descriptor features, i.e. along the zero-shot descriptor ensemble.

    The width ``D`` is the projected feature's.  The released code sizes the query and the maps by the text
    transformer's width (``ln_final``), which is the same number for the ViT-B/16, ViT-L/14 and RN50x64 it was
    run with; where the two differ (e.g. RN50: 512 vs 1024) its attention cannot run at all.
    """

    def __init__(self, T0: torch.Tensor, mask: torch.Tensor):
        super().__init__()
        c, _, d = T0.shape
        self.query = nn.Parameter(torch.randn(c, d, dtype=T0.dtype, device=T0.device) * 0.02)
        self.W_q = nn.Linear(d, d, bias=False, dtype=T0.dtype, device=T0.device)
        self.W_k = nn.Linear(d, d, bias=False, dtype=T0.dtype, device=T0.device)
        nn.init.xavier_normal_(self.W_q.weight)
        nn.init.xavier_normal_(self.W_k.weight)
        self.register_buffer("mask", mask.clone())

    def forward(self, T: torch.Tensor) -> torch.Tensor:
        """``(C, K, D)`` descriptor features -> ``(C, D)`` merged."""
        return merge_descriptors(self.query, T, self.mask, self.W_q.weight, self.W_k.weight)


# -- the learner ------------------------------------------------------------------------------------------------
class PromptLearner(nn.Module):
    """ViP (context + merge prompts over descriptors) or CoOp (context + class name) on a frozen CLIP.

    Parameters
    ----------
    tower : TextTower
    classes : list of str
        ``C`` class names (label-index order).
    descriptors : dict, optional
        ``{class: [descriptor, ...]}``; required for ViP, each class needs at least one.
    method : {"vip", "coop"}
    n_ctx : int
    class_specific : bool
    logit_scale : float
        CLIP's (exponentiated) logit scale; kept fixed.
    text_form : {"project", "released"}
        How descriptors become prompt text (:data:`TEXT_FORMS`).
    merge_on : {"raw", "unit"}
        What the merge prompt attends over (:data:`MERGE_ON`): ``raw`` as released.
    """

    def __init__(self, tower: TextTower, classes: list[str], descriptors: dict | None = None, method: str = "vip",
                 n_ctx: int = DEFAULT_N_CTX, class_specific: bool = False, logit_scale: float = 100.0,
                 init_std: float = 0.02, text_form: str = "project", merge_on: str = "raw"):
        super().__init__()
        if method not in METHODS:
            raise VipInputError(f"Unknown prompt-learning method {method!r}; choose one of {', '.join(METHODS)}.")
        if merge_on not in MERGE_ON:
            raise VipInputError(f"Unknown merge input {merge_on!r}; choose one of {', '.join(MERGE_ON)}.")
        self.method = method
        self.merge_on = merge_on
        self.classes = list(classes)
        self.logit_scale = float(logit_scale)
        if method == "vip":
            descriptors = check_descriptors(self.classes, descriptors)
            texts, groups = [], []
            for k, c in enumerate(self.classes):
                texts += descriptors[c]
                groups += [k] * len(descriptors[c])
            self.descriptors = {c: list(descriptors[c]) for c in self.classes}
        else:
            # the released CoOp reads underscores in class names as spaces (trainers/coop.py)
            texts = [c.replace("_", " ") for c in self.classes] if text_form == "released" else list(self.classes)
            groups = list(range(len(self.classes)))
            self.descriptors = {c: [c] for c in self.classes}
        self.context = ContextPrompt(tower, texts, groups, len(self.classes), n_ctx, class_specific, init_std,
                                     text_form)
        groups_t = torch.as_tensor(groups)
        kmax = int(np.bincount(np.asarray(groups), minlength=len(self.classes)).max())
        slot = torch.zeros(len(groups), dtype=torch.long)
        seen = [0] * len(self.classes)
        for i, g in enumerate(groups):
            slot[i] = seen[g]
            seen[g] += 1
        self.register_buffer("slot_class", groups_t.to(tower.device))
        self.register_buffer("slot_index", slot.to(tower.device))
        self.kmax = kmax
        if method == "vip":
            with torch.no_grad():
                T0, mask = self.descriptor_features()
            self.merge = MergePrompt(T0.float(), mask)
        else:
            self.merge = None

    def descriptor_features(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``T`` ``(C, K, D)`` float32 descriptor features (padded) and its ``(C, K)`` bool mask.

        The projected text features as they are (``merge_on="raw"``, the released code: keys and values of the
        merge attention, norms around 20 for OpenAI ViT-B/16), or L2-normalised (``"unit"``, for older files).
        """
        feats = self.context().float()
        if self.merge_on == "unit":
            feats = nn.functional.normalize(feats, dim=-1)
        C, D = len(self.classes), feats.shape[-1]
        T = feats.new_zeros(C, self.kmax, D).index_put((self.slot_class, self.slot_index), feats)
        mask = torch.zeros(C, self.kmax, dtype=torch.bool, device=feats.device)
        mask[self.slot_class, self.slot_index] = True
        return T, mask

    def class_features(self) -> torch.Tensor:
        """``(C, D)`` L2-normalised class embeddings."""
        if self.method == "coop":
            feats = self.context().float()
        else:
            T, _ = self.descriptor_features()
            feats = self.merge(T)
        return nn.functional.normalize(feats, dim=-1)

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        """``(B, D)`` L2-normalised image features -> ``(B, C)`` logits ``logit_scale * cos``."""
        return self.logit_scale * image_features.float() @ self.class_features().T

    def trainable_state(self) -> dict:
        """The learned tensors only (``{name: tensor}`` on the CPU)."""
        return {k: v.detach().cpu().clone() for k, v in self.named_parameters()}

    def load_trainable_state(self, state: dict) -> None:
        own = dict(self.named_parameters())
        if set(own) != set(state):
            raise VipInputError(f"Learned prompts hold {sorted(state)}, expected {sorted(own)}.")
        with torch.no_grad():
            for k, p in own.items():
                if tuple(p.shape) != tuple(state[k].shape):
                    raise VipInputError(
                        f"Learned prompt tensor {k} has shape {tuple(state[k].shape)}, but this CLIP model needs "
                        f"{tuple(p.shape)}: the prompts were learned for another model.")
                p.copy_(state[k].to(p.device, p.dtype))


def check_descriptors(classes: list[str], descriptors: dict | None, modality: str | None = None) -> dict[str, list[str]]:
    """Descriptors for each class, blank ones dropped; raises VipInputError naming classes without any.

    A class's entry is its exact name, else what :func:`napari_vip.core.symptoms.descriptors_for` finds
    (case-insensitive, ``"<class> (<modality>)"`` preferred, known aliases; underscores read as spaces)."""
    from ..core.symptoms import descriptors_for

    if not descriptors:
        raise VipInputError("ViP needs visual-symptom descriptors for each class (--descriptors LIBRARY.json); "
                            "use --method coop to learn from class names alone.")
    out, missing = {}, []
    for c in classes:
        items = descriptors.get(c) or descriptors_for(descriptors, c, modality) \
            or descriptors_for(descriptors, c.replace("_", " "), modality)
        items = [str(d).strip() for d in items if str(d).strip()]
        if not items:
            missing.append(c)
        out[c] = items
    if missing:
        raise VipInputError(f"No descriptors for class(es) {missing} in the library (it has "
                            f"{sorted(descriptors)[:10]}); add them or use --method coop.")
    return out


def learner_options(config: dict) -> dict:
    """:class:`PromptLearner` keyword arguments from training-configuration fields (a dict, e.g. a prompts
    file's ``config``): ``n_ctx``, ``class_specific``, ``text_form``, ``merge_on``.

    A configuration without ``merge_on`` was saved before the merge prompt followed the released code, so its
    tensors were learned on unit descriptor features: ``"unit"``.
    """
    return {"n_ctx": int(config.get("n_ctx", DEFAULT_N_CTX)), "class_specific": bool(config.get("class_specific")),
            "text_form": str(config.get("text_form", "project")), "merge_on": str(config.get("merge_on", "unit"))}
