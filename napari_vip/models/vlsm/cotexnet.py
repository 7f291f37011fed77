"""CoTexNet: conceptual text prompts learned from the region, distilled into the image (He et al., Engineering 2026).

Built on ``transformers.CLIPSegForImageSegmentation``, as the released code (Rango-bit/CoTexNet
``model/CoTexNet.py``, ``model/CLIPSeg_pse.py``, ``model/CLIPSeg_code.py``, ``train_utils/train_and_eval.py``,
``main.py``, ``dataset_config/train_config.yaml``) builds on it:

- **ImgToText** (``mapping_module``): the ROI (the normalised model input where the mask is set, 0 elsewhere,
  as released ``masked_fill`` after normalisation) through the frozen CLIPSeg vision encoder; its class token
  (``last_hidden_state[:, 0]``, before the post-layernorm) -> ``Linear(Dv, Dt)`` -> GELU -> ``Linear(Dt, Dt)``
  -> ``LayerNorm(Dt)`` = a pseudo-token that overwrites the text tower's input embedding (token + position
  embedding) at position :data:`TOKEN_POSITION` (5, the sixth: the keyword's first word in the released
  sentence ``"<sot> {number} {shape} {size} {color} {keyword}..."``) before the text transformer.
  ``Dv`` = ``vision_config.hidden_size`` (768 full size), ``Dt`` = ``text_config.hidden_size`` (512).
- **text embedding** = ``sigmoid(get_text_features(...))`` (B, P), P = ``projection_dim`` (512).
- **image-to-text head** (``img_projection``, released ``Img2text_module``): the query image's class token ->
  2 x [``Linear(Dv, Dv)``, Dropout(0), ReLU] -> ``Linear(Dv, P)`` -> Sigmoid; CLIPSeg_pse applies a second
  sigmoid: image embedding = ``sigmoid(img_projection(cls))`` in (0.5, 0.73).
- **condition**: training ``(1 - a) * text + a * image`` (``weight_alpha`` a learnable, init 0.2); text-free
  prediction ``image``; then ``condition * var + mean`` (learnable, init 1.0 and -0.002) into the decoder's FiLM.
- **loss** (:func:`cotexnet_loss`): MONAI ``DiceCELoss()`` (defaults) on ``sigmoid(logits)`` against the mask,
  plus ``10 * KLDiv(image embedding, text embedding detached)`` where KLDiv is
  ``F.kl_div(log_softmax(s / T, 1), softmax(t / T, 1), "batchmean") * T**2``, T = 1.
- **frozen**: the whole CLIP (vision and text towers); trained: decoder, both heads, a, var, mean.

Parameter names follow the released modules (``mapping_module``, ``img_projection``, ``weight_alpha``, ``var``,
``mean``).  Shapes: pixel values (B, 3, S, S) float32 normalised; masks (B, 1, S, S) float {0, 1}; logits
(B, 1, S, S).  Importing this module imports torch (as :mod:`.nets` does); transformers and MONAI are
imported inside functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .nets import ClipSegNet

#: Released constants (``CLIPSeg_pse.py``, ``CLIPSeg_code.py``, ``train_and_eval.py``).
TOKEN_POSITION = 5
ALPHA_INIT = 0.2
VAR_INIT = 1.0
MEAN_INIT = -0.002
DISTILL_WEIGHT = 10.0
KL_TEMPERATURE = 1.0
IMG2TEXT_LAYERS = 2
IMG2TEXT_DROPOUT = 0.0

#: The released training recipe (``dataset_config/train_config.yaml``, ``main.py``), overridable.
RELEASED_RECIPE: dict[str, Any] = {
    "optimizer": "AdamW", "lr": 3e-4, "weight_decay": 1e-4,
    "schedule": "cosine per step (timm CosineLRScheduler, t_initial = epochs x steps, lr_min 0, no warmup)",
    "warmup_epochs": 0, "warmup_lr": 3e-5,
    "batch_size": 16, "epochs": 500, "early_stop_patience": 50, "early_stop_after_epoch_fraction": 0.2,
    "select": "best validation Dice", "seed": 666, "input_size": 224, "amp": True,
    "distill_weight": DISTILL_WEIGHT, "kl_temperature": KL_TEMPERATURE,
    "loss": "DiceCELoss() on sigmoid(logits) + distill_weight * KL(image || text detached)",
    "frozen": "CLIP vision and text towers",
}


def build_heads(config, alpha_init: float = ALPHA_INIT, var_init: float = VAR_INIT, mean_init: float = MEAN_INIT,
                dropout: float = IMG2TEXT_DROPOUT):
    """The CoTexNet modules for a ``CLIPSegConfig`` (widths from the config, so a tiny config works).

    Returns an ``nn.Module`` with ``mapping_module`` (ROI class token -> pseudo-token), ``img_projection``
    (image class token -> (B, P) in (0, 1)), and the parameters ``weight_alpha`` (1,), ``var`` (1,), ``mean`` (1,).
    Layers keep PyTorch's default initialisation, as released (they are created outside CLIPSeg's ``post_init``).
    """
    nn = torch.nn
    dv = int(config.vision_config.hidden_size)
    dt = int(config.text_config.hidden_size)
    p = int(config.projection_dim)

    class Img2Text(nn.Module):
        """Released ``Img2text_module(embed_dim=Dv, middle_dim=Dv, output_dim=P, n_layer=2, dropout=0)``."""

        def __init__(self):
            super().__init__()
            blocks, d = [], dv
            for _ in range(IMG2TEXT_LAYERS):
                blocks.append(nn.Sequential(nn.Linear(d, dv), nn.Dropout(dropout), nn.ReLU()))
                d = dv
            self.layers = nn.Sequential(*blocks)
            self.fc_out = nn.Linear(dv, p)
            self.fc_fn = nn.Sigmoid()

        def forward(self, x):
            return self.fc_fn(self.fc_out(self.layers(x)))

    class Heads(nn.Module):
        def __init__(self):
            super().__init__()
            self.mapping_module = nn.Sequential(nn.Linear(dv, dt), nn.GELU(), nn.Linear(dt, dt), nn.LayerNorm(dt))
            self.img_projection = Img2Text()
            self.weight_alpha = nn.Parameter(torch.tensor([float(alpha_init)]))
            self.var = nn.Parameter(torch.tensor([float(var_init)]))
            self.mean = nn.Parameter(torch.tensor([float(mean_init)]))

    return Heads()


@dataclass
class VisionFeatures:
    """What the frozen vision encoder gives CoTexNet for a batch of images.

    ``activations``: list of (B, N + 1, Dv) float32, the hidden states after the layers in
    ``config.extract_layers`` (what CLIPSeg's decoder reads); ``cls``: (B, Dv), the class token of the last
    hidden state (before the post-layernorm, as released).
    """

    activations: list
    cls: Any


def encode_image(clipseg, pixel_values) -> VisionFeatures:
    """The frozen vision encoder on (B, 3, S, S) normalised pixels (no gradient)."""
    with torch.no_grad():
        out = clipseg.clip.vision_model(pixel_values=pixel_values, output_hidden_states=True)
        hs = out.hidden_states
        acts = [hs[i + 1] for i in clipseg.config.extract_layers]
        return VisionFeatures(activations=acts, cls=out.last_hidden_state[:, 0])


def roi_class_token(clipseg, roi_pixel_values):
    """(B, Dv): the class token of the ROI images through the frozen vision encoder (no gradient)."""
    with torch.no_grad():
        return clipseg.clip.vision_model(pixel_values=roi_pixel_values).last_hidden_state[:, 0]


def roi_pixels(pixel_values, mask):
    """The released ROI input: normalised ``pixel_values`` (B, 3, S, S) with 0 where ``mask`` (B, 1, S, S) is 0."""
    return pixel_values.masked_fill(~mask.bool(), 0)


def text_embedding(clipseg, input_ids, attention_mask=None, pseudo_token=None, position: int = TOKEN_POSITION):
    """``sigmoid(text features)`` (B, P); with ``pseudo_token`` (B, Dt), the text tower's input embedding at
    ``position`` is replaced by it first (gradients flow to the pseudo-token through the frozen tower)."""
    text_model = clipseg.clip.text_model
    if attention_mask is not None and input_ids.shape[-1] > position + 1:
        # Padding after the last real token changes nothing (causal attention, pooled at the first end token):
        # cut it, so a 77-token batch of short sentences costs what its longest sentence costs.
        keep = max(int(attention_mask.sum(dim=-1).max()), position + 1)
        input_ids, attention_mask = input_ids[:, :keep], attention_mask[:, :keep]
    handle = None
    if pseudo_token is not None:
        if input_ids.shape[-1] <= position:
            raise ValueError(f"Token sequences of length {input_ids.shape[-1]} have no position {position} for the "
                             "pseudo-token; pad the sentences to the tokenizer's full length (77).")

        def put_token(module, args, output):
            out = output.clone()
            out[:, position, :] = pseudo_token.to(out.dtype)
            return out

        handle = text_model.embeddings.register_forward_hook(put_token)
    try:
        feats = clipseg.clip.get_text_features(input_ids=input_ids, attention_mask=attention_mask).pooler_output
    finally:
        if handle is not None:
            handle.remove()
    return torch.sigmoid(feats)


def image_embedding(heads, cls):
    """(B, P): ``sigmoid(img_projection(cls))`` (the released double sigmoid)."""
    return torch.sigmoid(heads.img_projection(cls))


def condition(heads, image_emb, text_emb=None):
    """The decoder's condition: ``((1 - a) * text + a * image) * var + mean`` when ``text_emb`` is given
    (training), else ``image * var + mean`` (text-free)."""
    if text_emb is None:
        cond = image_emb
    else:
        a = heads.weight_alpha
        cond = (1 - a) * text_emb + a * image_emb
    return cond * heads.var + heads.mean


@dataclass
class CoTexNetOutput:
    """``logits`` (B, 1, S, S); ``image_embedding`` (B, P); ``text_embedding`` (B, P) detached, or ``None``."""

    logits: Any
    image_embedding: Any
    text_embedding: Any = None


def cotexnet_forward(net, features: VisionFeatures, input_ids=None, attention_mask=None, roi_cls=None,
                     use_cls_token: bool = False) -> CoTexNetOutput:
    """One CoTexNet pass of ``net`` (:class:`CoTexNetNet`) from the frozen encoder's ``features``.

    ``use_cls_token=False`` (training): the text embedding of the sentence, with the ROI's pseudo-token when
    ``roi_cls`` (B, Dv) is given, is mixed with the image embedding.  ``use_cls_token=True`` (prediction):
    the image embedding alone conditions the decoder; the text tower runs only when ``input_ids`` are given
    (to report the distillation loss), never for the prediction itself.
    """
    heads = net.heads
    img = image_embedding(heads, features.cls)
    text = None
    if input_ids is not None:
        token = heads.mapping_module(roi_cls) if roi_cls is not None else None
        text = text_embedding(net.clipseg, input_ids, attention_mask, token)
    if not use_cls_token:
        if text is None:
            raise ValueError("Training CoTexNet needs the sentence tokens (input_ids).")
        cond = condition(heads, img, text)
    else:
        cond = condition(heads, img)
    logits = net.decode(features.activations, cond)
    return CoTexNetOutput(logits=logits, image_embedding=img, text_embedding=None if text is None else text.detach())


def kl_div(student, teacher, temperature: float = KL_TEMPERATURE):
    """Released ``KLDiv``: ``kl_div(log_softmax(s / T, 1), softmax(t / T, 1), 'batchmean') * T**2``."""
    import torch.nn.functional as F

    return F.kl_div(F.log_softmax(student / temperature, dim=1), F.softmax(teacher / temperature, dim=1),
                    reduction="batchmean") * temperature ** 2


def cotexnet_loss(logits, mask, image_emb, text_emb, distill_weight: float = DISTILL_WEIGHT,
                  temperature: float = KL_TEMPERATURE):
    """The released training loss; returns ``(total, seg, kl)`` scalars.

    ``seg`` = MONAI ``DiceCELoss()`` (defaults: Dice without activation, smooth 1e-5, plus BCE-with-logits
    for one channel, both weight 1) on ``sigmoid(logits)`` (B, 1, S, S) against ``mask`` (B, 1, S, S);
    ``kl`` = :func:`kl_div` (image embedding, text embedding detached); total = seg + ``distill_weight`` * kl.
    """
    from monai.losses import DiceCELoss

    seg = DiceCELoss()(torch.sigmoid(logits), mask.to(logits.dtype))
    kl = kl_div(image_emb, text_emb.detach(), temperature)
    return seg + distill_weight * kl, seg, kl


class CoTexNetNet(ClipSegNet):
    """CLIPSeg with the CoTexNet heads: one ``nn.Module`` (state-dict keys ``clipseg.*`` as :class:`ClipSegNet`,
    plus ``heads.*``), so training, DDP, ``.to()`` and checkpoints treat it as one network.

    ``clipseg``: a ``transformers.CLIPSegForImageSegmentation``; ``heads``: :func:`build_heads` of its config.
    """

    def __init__(self, clipseg, heads=None):
        super().__init__(clipseg)
        self.heads = heads if heads is not None else build_heads(clipseg.config)

    def freeze_as_released(self) -> CoTexNetNet:
        """Freeze the whole CLIP (vision and text towers); decoder and heads trainable."""
        self.clipseg.clip.requires_grad_(False)
        self.clipseg.decoder.requires_grad_(True)
        self.heads.requires_grad_(True)
        return self

    def trainable(self) -> list:
        """Decoder + heads (the released ``[p for p in model.parameters() if p.requires_grad]``)."""
        return list(self.clipseg.decoder.parameters()) + list(self.heads.parameters())

    def trainable_groups(self) -> dict[str, list]:
        groups = super().trainable_groups()
        groups["cotexnet_heads"] = list(self.heads.parameters())
        return groups

    def features(self, pixel_values) -> VisionFeatures:
        """The frozen encoder's activations and class token (no gradient)."""
        return encode_image(self.clipseg, pixel_values)

    def roi_cls(self, pixel_values, mask):
        """(B, Dv): the class token of the released ROI input (:func:`roi_pixels`)."""
        return roi_class_token(self.clipseg, roi_pixels(pixel_values, mask))

    def text_conditional(self, input_ids, attention_mask, pseudo_token=None):
        """CoTexNet's text embedding (B, P): ``sigmoid`` of the text features (with the pseudo-token if given)."""
        return text_embedding(self.clipseg, input_ids, attention_mask, pseudo_token)

    def cotexnet(self, features: VisionFeatures, input_ids=None, attention_mask=None, roi_cls=None,
                 use_cls_token: bool = False) -> CoTexNetOutput:
        """:func:`cotexnet_forward` with this network's parts."""
        return cotexnet_forward(self, features, input_ids, attention_mask, roi_cls, use_cls_token)

    def forward(self, input_ids=None, attention_mask=None, pixel_values=None, hidden=None, cls=None, roi_cls=None,
                use_cls_token: bool = True):
        """Logits (B, 1, S, S).  Text-free by default (``use_cls_token=True``); ``hidden`` + ``cls`` stand for
        stored activations of ``pixel_values``."""
        if hidden is None or cls is None:
            features = self.features(pixel_values)
        else:
            features = VisionFeatures(list(hidden), cls)
        return self.cotexnet(features, input_ids, attention_mask, roi_cls, use_cls_token).logits

    def predict_logits(self, pixel_values=None, features: VisionFeatures | None = None):
        """Text-free logits (B, 1, S, S): no call to the text tower."""
        if features is None:
            features = self.features(pixel_values)
        return self.cotexnet(features, use_cls_token=True).logits


# -- a CoTexNet model behind the VlsmModel interface -------------------------------------------------------------
def cotexnet_vlsm(model, heads=None):
    """A :class:`CoTexNetVlsmModel` from a loaded CLIPSeg :class:`~napari_vip.models.vlsm.VlsmModel` (its CLIPSeg is
    shared, not copied); ``heads`` default to new ones (:func:`build_heads`) on the model's device."""
    from dataclasses import fields

    from ...core.errors import VipInputError

    if model.family != "clipseg":
        raise VipInputError(f"CoTexNet builds on CLIPSeg (as released); {model.family} is not CLIPSeg. Choose "
                            "--model clipseg.")
    clipseg = model.module.clipseg
    net = CoTexNetNet(clipseg, heads).to(model.device)
    kwargs = {f.name: getattr(model, f.name) for f in fields(model) if f.init}
    # stored activations of a CoTexNet model carry the class token where CLIPSeg's carry the projected embedding
    kwargs.update(module=net, needs_text=False, weights_id=f"{model.weights_id}+cotexnet-cls")
    return CoTexNetVlsmModel(**kwargs)


def _vlsm_model_class():
    from .model import VlsmModel

    return VlsmModel


class CoTexNetVlsmModel(_vlsm_model_class()):
    """A CoTexNet model as a :class:`~napari_vip.models.vlsm.VlsmModel`: ``module`` is a :class:`CoTexNetNet`,
    ``needs_text`` is False and :meth:`predict` segments from the image alone (``text`` is ignored)."""

    def encode_image(self, pixel_values):
        """:class:`ImageActivations` whose ``pooled`` is the class token (B, Dv) CoTexNet reads (not CLIPSeg's
        projected embedding: CoTexNet never uses that)."""
        from .model import ImageActivations

        f = self.module.features(pixel_values)
        return ImageActivations(list(f.activations), f.cls)

    def text_conditional(self, input_ids, attention_mask):
        """CoTexNet's text embedding (B, P) = sigmoid of the text features (no pseudo-token)."""
        return self.module.text_conditional(input_ids, attention_mask)

    def forward_logits(self, pixel_values, input_ids=None, attention_mask=None):
        """Text-free logits (B, 1, S, S); the text arguments are ignored (the text tower is never called)."""
        return self.module.predict_logits(pixel_values)

    def predict(self, image, text: str = ""):
        """Mask of the learned target on ``image`` (``(H, W, 3)`` uint8) without text."""
        from ...core.image import resize_nearest_exact
        from .model import VlsmPrediction

        was = self.module.training
        self.module.eval()
        try:
            with torch.no_grad():
                logits = self.module.predict_logits(self.preprocess([image]))
        finally:
            self.module.train(was)
        lg = logits[0, 0].float().cpu().numpy()
        prob_model = torch.sigmoid(torch.from_numpy(lg)).numpy()
        hw = image.shape[:2]
        prob = resize_nearest_exact(prob_model.astype("float32"), hw)
        mask = resize_nearest_exact(prob_model > self.threshold, hw)
        return VlsmPrediction(prob, mask.astype(bool), lg)

    def provenance(self) -> dict:
        d = super().provenance()
        d["needs_text"] = False
        return d


def load_cotexnet_folder(folder, cfg: dict, spec, device: str = "cpu"):
    """A CoTexNet folder written by ``napari-vip finetune --method cotexnet`` (``model.safetensors`` holding
    ``clipseg.*`` and ``heads.*``, ``config.json`` with the architecture and preprocessing, ``tokenizer/``)."""
    from pathlib import Path

    from ..checkpoint import load_into, load_state_dict, sha256_file
    from .build import _clip_tokenizer, _drop_legacy_buffers, _seeded
    from .sources import weights_file

    folder = Path(folder)
    from transformers import CLIPSegConfig, CLIPSegForImageSegmentation

    net = _seeded(lambda: CoTexNetNet(CLIPSegForImageSegmentation(CLIPSegConfig(**cfg["clipseg"]))))
    path = weights_file(folder)
    state = load_state_dict(path, what=spec.describe())
    load_into(net, _drop_legacy_buffers(state, net), "CoTexNet (CLIPSeg + CoTexNet heads of the folder's config)", path)
    sha = sha256_file(path)
    return CoTexNetVlsmModel(spec, net.to(device).eval(), "clipseg", int(cfg["input_size"]), tuple(cfg["mean"]),
                             tuple(cfg["std"]), _clip_tokenizer(folder / "tokenizer"), int(cfg["context_length"]), sha,
                             f"{sha}+cotexnet-cls", method="cotexnet", device=device, needs_text=False,
                             config={k: cfg[k] for k in ("clipseg", "base", "recipe") if k in cfg})


def _register():
    from .sources import METHOD_LOADERS

    METHOD_LOADERS["cotexnet"] = load_cotexnet_folder


_register()


# -- the fine-tuning method ----------------------------------------------------------------------------------------
class CotexnetMethod:
    """CoTexNet as a method of the VLSM fine-tuning loop (:func:`napari_vip.models.vlsm.finetune.finetune`,
    ``napari-vip finetune --method cotexnet``).

    Batches are the loop's dicts: ``pixel_values`` (B, 3, S, S) or stored ``activations`` (the hidden states
    at the decoder's layers), the attribute sentence's ``input_ids`` / ``attention_mask`` (B, L) (the loop draws
    the prompt type ``recipe.prompt``; the sentences are the items' prompts under :data:`PROMPT_KEY`), ``mask``
    (B, 1, S, S) float and ``items``.  The class token of each image and of its ROI (the released ROI input) are
    computed once per sample and run by the frozen encoder and kept in memory (``cls`` / ``roi_cls`` in a batch
    override them).  Training mixes text and image conditions; in eval mode (the loop's validation, as the released
    ``evaluate``) and in :meth:`predict` the prediction is text-free.

    Parameters
    ----------
    distill_weight : float
        Weight of the KL term (released 10; 0 switches distillation off).
    """

    name = "cotexnet"

    def __init__(self, distill_weight: float = DISTILL_WEIGHT, temperature: float = KL_TEMPERATURE,
                 keyword: str | None = None, attributes: str = "mask", sentences: dict | None = None, llm=None,
                 cache=None):
        self.distill_weight = float(distill_weight)
        self.temperature = float(temperature)
        self.keyword = " ".join(str(keyword or "").split()) or None
        self.attributes = attributes
        self.sentences = dict(sentences or {})
        self.llm = llm
        self.cache = cache
        self.last: dict = {}
        self._tokens: dict[str, tuple] = {}

    def text_for(self, item) -> str:
        """The attribute sentence of a fine-tuning item (what the loop tokenises for it), made once per sample:
        the user's sentence (``sentences[sample_id]``, e.g. an edited CSV), else the item's prompt under
        :data:`PROMPT_KEY`, else measured from its mask (``attributes="mask"``) or asked of the multimodal model
        (``"llm"``) on the image and mask the item loads, with :attr:`keyword`."""
        sid = item.sample_id
        if sid in self.sentences:
            return self.sentences[sid]
        if PROMPT_KEY in item.prompts:
            return item.prompts[PROMPT_KEY]
        from ...core.errors import VipInputError
        from ...core.region_attributes import mask_attributes

        if not self.keyword:
            raise VipInputError(f"Sample {sid!r} has no CoTexNet sentence: give --keyword (e.g. \"polyp area\") to "
                                "make the sentences, or --sentences CSV (napari-vip sentences).")
        rgb, mask = item.load()
        if rgb.shape[:2] != mask.shape:
            from PIL import Image

            rgb = np.asarray(Image.fromarray(rgb).resize((mask.shape[1], mask.shape[0]), Image.BILINEAR))
        if self.attributes == "llm":
            from ..region_describer import AttributeCache, RegionSample, describe_regions

            rep = describe_regions([RegionSample(sid, lambda: (rgb, mask))], self.keyword, self.llm,
                                   AttributeCache(self.cache))
            sentence = rep.rows[0].sentence
        else:
            sentence = mask_attributes(rgb, mask).sentence(self.keyword)
        self.sentences[sid] = sentence
        return sentence

    def prepare(self, model):
        """``model`` as a :class:`CoTexNetVlsmModel` (changed in place when it is a plain CLIPSeg model: new heads
        around the same CLIPSeg), frozen as released; returns it."""
        if not isinstance(model, CoTexNetVlsmModel):
            from ...core.errors import VipInputError

            if model.family != "clipseg":
                raise VipInputError(f"CoTexNet builds on CLIPSeg (as released); {model.family} is not CLIPSeg. "
                                    "Choose --model clipseg.")
            model.module = CoTexNetNet(model.module.clipseg).to(model.device)
            model.__class__ = CoTexNetVlsmModel
            model.needs_text = False
            model.weights_id = f"{model.weights_id}+cotexnet-cls"
        model.module.freeze_as_released()
        return model

    def trainable(self, model) -> list:
        return self.prepare(model).module.trainable()

    def _class_tokens(self, model, batch):
        """``(cls (B, Dv), roi_cls (B, Dv))`` for the batch's items, computed once per sample."""
        if batch.get("cls") is not None and batch.get("roi_cls") is not None:
            return batch["cls"], batch["roi_cls"]
        px, mask = batch.get("pixel_values"), batch["mask"]
        items = batch.get("items")
        keys = [getattr(it, "sample_id", None) for it in items] if items else None
        if keys is None or any(k is None or k not in self._tokens for k in keys):
            if px is None:
                px = model.preprocess([it.load()[0] for it in items])
            feats = model.module.features(px)
            roi = model.module.roi_cls(px, mask)
            if keys is None:
                return feats.cls, roi
            for k, c, r in zip(keys, feats.cls, roi):
                self._tokens[k] = (c.detach(), r.detach())
        cls = torch.stack([self._tokens[k][0] for k in keys])
        roi = torch.stack([self._tokens[k][1] for k in keys])
        return cls, roi

    def _features(self, model, batch, cls) -> VisionFeatures:
        acts = batch.get("activations")
        if acts is not None:
            hidden = acts.hidden if hasattr(acts, "hidden") else acts
            return VisionFeatures(list(hidden), cls)
        return VisionFeatures(model.module.features(batch["pixel_values"]).activations, cls)

    def loss(self, model, batch):
        """``(loss, logits)``: the released DiceCE on the mask + ``distill_weight`` x KL (:func:`cotexnet_loss`).

        In training mode the decoder sees the mixed condition; in eval mode (validation) the logits are the
        text-free ones and the loss is computed on them, as the released ``evaluate`` does."""
        net = batch.get("module")
        if net is not None and net is not model.module:
            from ...core.errors import VipInputError

            raise VipInputError("CoTexNet trains in one process (its loss calls the network's parts, which a "
                                "DistributedDataParallel wrapper would not synchronise): run napari-vip finetune "
                                "--method cotexnet without torchrun.")
        cls, roi = self._class_tokens(model, batch)
        feats = self._features(model, batch, cls)
        training = model.module.training
        out = model.module.cotexnet(feats, batch["input_ids"], batch.get("attention_mask"), roi,
                                    use_cls_token=not training)
        total, seg, kl = cotexnet_loss(out.logits, batch["mask"], out.image_embedding, out.text_embedding,
                                       self.distill_weight, self.temperature)
        self.last = {"seg_loss": float(seg.detach()), "kl": float(kl.detach()),
                     "alpha": float(model.module.heads.weight_alpha.detach())}
        return total, out.logits

    def predict(self, model, batch):
        """Text-free logits (B, 1, S, S) (the text tower is not called)."""
        acts = batch.get("activations")
        if acts is not None and batch.get("cls") is None and hasattr(acts, "pooled"):
            cls = acts.pooled  # a CoTexNetVlsmModel's ImageActivations carry the class token there
        else:
            cls = self._class_tokens(model, batch)[0] if acts is not None else None
        if cls is None:
            feats = model.module.features(batch["pixel_values"])
        else:
            feats = self._features(model, batch, cls)
        return model.module.cotexnet(feats, use_cls_token=True).logits

    def extra_state(self) -> dict:
        """The heads live in the model's state dict (``heads.*``); the method keeps only its settings."""
        return {"distill_weight": self.distill_weight, "kl_temperature": self.temperature}

    def load_extra_state(self, state: dict) -> None:
        self.distill_weight = float(state.get("distill_weight", self.distill_weight))
        self.temperature = float(state.get("kl_temperature", self.temperature))

    def default_recipe(self) -> dict:
        return dict(RELEASED_RECIPE, distill_weight=self.distill_weight)


#: The prompt type under which a fine-tuning item carries its CoTexNet sentence.
PROMPT_KEY = "cotexnet"

#: The released recipe in the loop's :class:`~napari_vip.models.vlsm.finetune.Recipe` fields (the user's
#: ``--epochs/--batch-size/--lr`` override them): AdamW 3e-4, weight decay 1e-4, batch 16, 500 epochs, early stop
#: after 50 epochs without a better validation Dice (not in the first fifth), seed 666, no gradient clipping, a
#: cosine schedule per step.
RECIPE_DEFAULTS = {"prompt": PROMPT_KEY, "lr": 3e-4, "weight_decay": 1e-4, "batch_size": 16, "epochs": 500,
                   "early_stop_patience": 50, "min_epochs": 100, "early_stop_min_delta": 0.0, "seed": 666,
                   "grad_clip": 0.0, "schedule": "cosine"}


def make_method(recipe=None, model=None, **options) -> CotexnetMethod:
    """The method the fine-tuning worker builds for ``--method cotexnet`` (``options``: ``distill_weight``,
    ``keyword``, ``attributes``, ``sentences`` (a dict, or the path of a sentence CSV), ``llm``, ``cache``,
    ``input_size``).  A CLIPSeg ``model`` is set to run at its vision tower's own size (``input_size`` option
    otherwise): 224 for ``CIDAS/clipseg-rd64-refined``, CoTexNet's released input size."""
    if model is not None and getattr(model, "family", None) == "clipseg":
        # released: input 224, the vision tower's own size (CLIPSeg's processor would give 352)
        native = int(model.module.clipseg.config.vision_config.image_size)
        model.input_size = int(options.pop("input_size", native))
    options.pop("input_size", None)
    sentences = options.pop("sentences", None)
    if isinstance(sentences, (str, bytes)) or hasattr(sentences, "__fspath__"):
        from ...core.region_attributes import read_sentence_csv

        sentences = read_sentence_csv(sentences)
    return CotexnetMethod(sentences=sentences, **options)


def save_cotexnet_folder(model, folder, recipe: dict | None = None, base: str | None = None,
                         provenance: dict | None = None):
    """Write a trained :class:`CoTexNetVlsmModel` as a fine-tuned folder :func:`load_cotexnet_folder` (and
    ``load_vlsm(VlsmSpec(source=folder))``) reads: ``model.safetensors`` (``clipseg.*`` and ``heads.*``),
    ``config.json`` (family, method ``cotexnet``, architecture, preprocessing, base, recipe), ``tokenizer/``,
    ``provenance.json``.  Returns the folder."""
    import json
    from pathlib import Path

    from safetensors.torch import save_file

    from ... import __version__
    from ..checkpoint import sha256_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.module.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"))
    cfg = {"napari_vip": __version__, "family": "clipseg", "method": "cotexnet", "clipseg": model.config["clipseg"],
           "input_size": int(model.input_size), "mean": list(model.mean), "std": list(model.std),
           "context_length": int(model.context_length), "base": base, "recipe": recipe or {}}
    (folder / "config.json").write_text(json.dumps(cfg, indent=1))
    model.tokenizer.save_pretrained(str(folder / "tokenizer"))
    prov = {"napari_vip_version": __version__, "method": "cotexnet", "base": base,
            "weights_sha256": sha256_file(folder / "model.safetensors"), **(provenance or {})}
    (folder / "provenance.json").write_text(json.dumps(prov, indent=1, default=str))
    return folder
