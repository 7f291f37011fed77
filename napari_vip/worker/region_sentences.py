"""CoTexNet's attribute sentences for a segmentation data set: measured from the masks or asked of a multimodal model.

For every sample of a split (a medvlsm folder or a CSV, :mod:`napari_vip.io.datasets`) the five region attributes
``{number, location, shape, size, color}`` are measured from the mask (``attributes="mask"``,
:func:`napari_vip.core.region_attributes.mask_attributes`) or asked of the OpenAI-compatible endpoint the prompts
dock configures (``attributes="llm"``, :mod:`napari_vip.models.region_describer`: the ROI image and the released
question, asked again until the answer passes the released check, cached per ROI image and model), and written
into the released sentence.  The result is the sentence table (and, with ``out``, the CSV the user edits before
training; ``napari-vip finetune --method cotexnet --sentences CSV`` reads it back).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import __version__
from ..core.errors import VipInputError
from ..core.region_attributes import SentenceRow, mask_attributes, write_sentence_csv
from .engine import handles
from .protocol import Provenance

ATTRIBUTE_SOURCES = ("mask", "llm")


@dataclass
class RegionSentencesRequest:
    """Sentences for the samples of ``split`` of ``data``.

    Attributes
    ----------
    data : str
        A medvlsm folder (``images/``, ``masks/``, ``anns/<split>.json``) or a CSV (image, mask, prompt, split).
    split : str
        ``train`` by default (the samples CoTexNet trains on); ``None`` for every row of a CSV.
    keyword : str
        What the region is, e.g. ``"polyp area"`` (the released keyword per data set:
        :data:`napari_vip.core.region_attributes.KEYWORDS`).
    attributes : str
        ``"mask"`` (measured, no model) or ``"llm"`` (asked of ``llm``).
    llm : LlmConfig or None
        The endpoint (:class:`napari_vip.models.llm_descriptors.LlmConfig`) for ``attributes="llm"``.
    cache : str or None
        The answer cache file (default ``<napari-vip cache>/region_attributes.json``).
    out : str or None
        Where to write the sentence CSV (also written with the sentences made so far when asking stops).
    """

    data: str
    keyword: str
    split: str | None = "train"
    attributes: str = "mask"
    llm: object = None
    cache: str | None = None
    out: str | None = None
    max_attempts: int = 5


@dataclass
class RegionSentencesResult:
    rows: list[SentenceRow]
    keyword: str
    attributes: str
    out: str | None
    provenance: Provenance
    asked: int = 0
    cached: int = 0
    notes: list[str] = field(default_factory=list)

    def sentences(self) -> dict[str, str]:
        return {r.sample_id: r.sentence for r in self.rows}

    def to_dict(self) -> dict:
        return {"keyword": self.keyword, "attributes": self.attributes, "out": self.out,
                "rows": [r.to_row() for r in self.rows], "asked": self.asked, "cached": self.cached,
                "notes": list(self.notes), "provenance": self.provenance.to_dict()}


def make_sentences(samples, keyword: str, attributes: str = "mask", llm=None, cache=None, max_attempts: int = 5,
                   progress=None):
    """``(rows, asked, cached)`` for :class:`~napari_vip.io.datasets.SegSample` s (see the module docstring).

    Raises :class:`~napari_vip.models.region_describer.DescribeStopped` (with the rows made so far) when the
    endpoint stops answering part way.
    """
    from ..io.datasets import load_sample

    keyword = " ".join(str(keyword or "").split())
    if not keyword:
        raise VipInputError("Give the keyword naming the region (e.g. --keyword \"polyp area\").")
    if attributes not in ATTRIBUTE_SOURCES:
        raise VipInputError(f"Attributes come from {' or '.join(ATTRIBUTE_SOURCES)}, not {attributes!r}.")
    samples = list(samples)
    if attributes == "mask":
        rows = []
        for i, s in enumerate(samples):
            image, mask = load_sample(s, allow_empty=False)
            a = mask_attributes(image, mask)
            rows.append(SentenceRow(s.sample_id, a.sentence(keyword), a))
            if progress is not None:
                progress(i + 1, len(samples), f"measured {s.sample_id}")
        return rows, 0, 0
    from ..models.region_describer import AttributeCache, RegionSample, describe_regions

    if llm is None:
        raise VipInputError("Asking a multimodal model needs its endpoint: give --llm-url and --llm-model (or set "
                            "NAPARI_VIP_LLM_URL and NAPARI_VIP_LLM_MODEL).")
    regions = [RegionSample(s.sample_id, (lambda s=s: load_sample(s, allow_empty=False))) for s in samples]
    rep = describe_regions(regions, keyword, llm, AttributeCache(cache), max_attempts, progress)
    return rep.rows, rep.asked, rep.cached


@handles(RegionSentencesRequest)
def region_sentences(engine, req: RegionSentencesRequest, progress) -> RegionSentencesResult:
    from ..io.datasets import read_seg_dataset
    from ..models.region_describer import DescribeStopped

    samples = read_seg_dataset(req.data, req.split)
    progress(0, len(samples), f"{len(samples)} samples")
    llm = req.llm if req.attributes == "llm" else None
    try:
        rows, asked, cached = make_sentences(samples, req.keyword, req.attributes, llm, req.cache, req.max_attempts,
                                             progress)
    except DescribeStopped as exc:
        if req.out and exc.rows:
            write_sentence_csv(req.out, exc.rows)
            raise VipInputError(f"{exc} The {len(exc.rows)} sentence(s) made are also in {req.out}.") from None
        raise
    if req.out:
        write_sentence_csv(req.out, rows)
    extra = {"method": "CoTexNet region attributes", "attributes": req.attributes, "keyword": req.keyword,
             "data": str(req.data), "split": req.split}
    if llm is not None:
        extra["llm"] = llm.to_dict()
    return RegionSentencesResult(rows, req.keyword, req.attributes, req.out, Provenance(__version__, extra=extra),
                                 asked, cached)
