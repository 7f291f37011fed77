"""The VLSM networks as ``torch.nn.Module`` s with one interface (see :mod:`napari_vip.models.vlsm.model`).

- :class:`ClipSegNet`: transformers' ``CLIPSegForImageSegmentation`` split into its three steps exactly as its
  ``forward`` runs them (vision hidden states ``hidden_states[i + 1]`` for ``i`` in ``extract_layers``; text
  conditional ``clip.get_text_features``; ``decoder(activations, conditional)``).  transformers' ``forward``
  runs both CLIP towers under ``torch.no_grad()`` (4.35, the version medvlsm pins, as today), so medvlsm's
  "full" CLIPSeg fine-tuning (``freeze_encoder: false``) only ever changed the decoder.
- :class:`BiomedClipSegNet`: medvlsm's ``src/models/biomedclipseg.py``: an open_clip BiomedCLIP model (timm ViT
  image tower, PubMedBERT text tower through ``open_clip.hf_model``) and a CLIPSeg decoder; the ViT's block
  outputs at ``extract_layers`` (``hidden_states[i + 1]`` of the list of block outputs, as released) and the
  text tower's projected pooled output as the condition.

Shapes: ``pixel_values (B, 3, S, S)``, ``input_ids/attention_mask (B, L)``, logits ``(B, 1, S, S)``.
"""

from __future__ import annotations

import torch
from torch import nn


def _as_b1hw(logits: torch.Tensor, batch: int) -> torch.Tensor:
    """Decoder logits (``(B, S, S)``, squeezed by transformers) as ``(B, 1, S, S)`` (never squeezed to 2D)."""
    return logits.reshape(batch, 1, logits.shape[-2], logits.shape[-1])


def _forward(net, input_ids, attention_mask, pixel_values, hidden, conditional):
    if hidden is None:
        with torch.no_grad():
            hidden, _ = net.encode_image(pixel_values)
    if conditional is None:
        conditional = net.text_conditional(input_ids, attention_mask)
    return net.decode(hidden, conditional)


class ClipSegNet(nn.Module):
    """CLIPSeg; ``self.clipseg`` is the transformers model (state-dict keys ``clipseg.clip.*``,
    ``clipseg.decoder.*``)."""

    def __init__(self, clipseg):
        super().__init__()
        self.clipseg = clipseg

    @property
    def extract_layers(self):
        return list(self.clipseg.extract_layers)

    def encode_image(self, pixel_values):
        """``(hidden list of (B, T, Dv), pooled (B, P))``, as ``CLIPSegForImageSegmentation.forward`` step 1
        (``get_image_features`` with position embeddings interpolated to the input size)."""
        out = self.clipseg.clip.get_image_features(pixel_values=pixel_values, interpolate_pos_encoding=True,
                                                   output_hidden_states=True)
        hidden = [out.hidden_states[i + 1] for i in self.clipseg.extract_layers]
        return hidden, out.pooler_output

    def text_conditional(self, input_ids, attention_mask):
        """``(B, D)``: ``clip.get_text_features`` (projected pooled text output), as step 2."""
        feats = self.clipseg.clip.get_text_features(input_ids=input_ids, attention_mask=attention_mask)
        return feats if isinstance(feats, torch.Tensor) else feats.pooler_output

    def decode(self, hidden, conditional):
        """``(B, 1, S, S)`` logits from the decoder, as step 3."""
        out = self.clipseg.decoder(list(hidden), conditional)
        return _as_b1hw(out.logits if hasattr(out, "logits") else out[0], conditional.shape[0])

    def forward(self, input_ids=None, attention_mask=None, pixel_values=None, hidden=None, conditional=None):
        """Logits ``(B, 1, S, S)``.  The vision encoder runs without gradients (as transformers' forward) when
        ``hidden`` (stored activations) is not given; ``conditional`` ``(B, D)`` replaces the text tower (a frozen
        tower's output computed once per text)."""
        return _forward(self, input_ids, attention_mask, pixel_values, hidden, conditional)

    def trainable_groups(self) -> dict[str, list]:
        """Parameters by part: ``vision`` (never trained here, as in transformers' forward), ``text``
        (text tower and its projection), ``decoder``."""
        clip = self.clipseg.clip
        return {"vision": list(clip.vision_model.parameters()) + list(clip.visual_projection.parameters()),
                "text": list(clip.text_model.parameters()) + list(clip.text_projection.parameters()),
                "decoder": list(self.clipseg.decoder.parameters())}


class BiomedClipSegNet(nn.Module):
    """BiomedCLIP towers (``self.biomedclip``, an open_clip model) + CLIPSeg decoder (``self.decoder``).

    Parameters
    ----------
    biomedclip : open_clip model
        With ``visual.trunk`` (timm ViT) and ``text`` (open_clip ``HFTextEncoder``).
    decoder : transformers ``CLIPSegDecoder``
    extract_layers : list of int
        The decoder config's ``extract_layers`` (e.g. ``[3, 6, 9]``).
    """

    def __init__(self, biomedclip, decoder, extract_layers):
        super().__init__()
        self.biomedclip = biomedclip
        self.decoder = decoder
        self.extract_layers = [int(i) for i in extract_layers]

    def encode_image(self, pixel_values):
        """As medvlsm's ``_forward_vit``: block outputs, then norm, pooling, head and the 768 -> 512 projection."""
        vit = self.biomedclip.visual.trunk
        x = vit.patch_embed(pixel_values)
        x = vit._pos_embed(x)
        x = vit.norm_pre(x)
        states = []
        for block in vit.blocks:
            x = block(x)
            states.append(x)
        x = vit.norm(x)
        if vit.global_pool:
            x = x[:, vit.num_prefix_tokens:].mean(dim=1) if vit.global_pool == "avg" else x[:, 0]
        x = vit.fc_norm(x)
        x = vit.head(x)
        pooled = self.biomedclip.visual.head(x)
        # released: hidden_states[i + 1] for i in extract_layers, over the list of block outputs
        return [states[i + 1] for i in self.extract_layers], pooled

    def text_conditional(self, input_ids, attention_mask):
        """``(B, 512)``: the BERT tower's pooled output through open_clip's projection (``_forward_bert``)."""
        bert = self.biomedclip.text
        if attention_mask is None:
            attention_mask = (input_ids != bert.config.pad_token_id).long()
        out = bert.transformer(input_ids=input_ids, attention_mask=attention_mask)
        return bert.proj(bert.pooler(out, attention_mask))

    def decode(self, hidden, conditional):
        out = self.decoder(list(hidden), conditional)
        return _as_b1hw(out.logits if hasattr(out, "logits") else out[0], conditional.shape[0])

    def forward(self, input_ids=None, attention_mask=None, pixel_values=None, hidden=None, conditional=None):
        """As :meth:`ClipSegNet.forward`."""
        return _forward(self, input_ids, attention_mask, pixel_values, hidden, conditional)

    def trainable_groups(self) -> dict[str, list]:
        """``vision`` (ViT and its projection), ``text`` (BERT and projection), ``decoder``."""
        return {"vision": list(self.biomedclip.visual.parameters()),
                "text": list(self.biomedclip.text.parameters()),
                "decoder": list(self.decoder.parameters())}
