"""Region attributes asked of a multimodal model (CoTexNet's LLaVA step) through an OpenAI-compatible endpoint.

The released pipeline (Rango-bit/CoTexNet ``llava_inference/``) shows LLaVA-1.5-13B each ROI image (image
where the mask is set, black elsewhere) with the question :func:`napari_vip.core.region_attributes.question`,
at temperature 0.2 and at most 512 new tokens, and asks again until the answer passes the released check
(:func:`~napari_vip.core.region_attributes.check_answer`: a dict with exactly the five keys; a ``number``
above the mask's external contour count is set to that count).  Here the model is whatever the user's
endpoint serves (the one the prompts dock configures, :class:`~napari_vip.models.llm_descriptors.LlmConfig`),
the ROI goes as a PNG ``data:`` URL in an OpenAI ``image_url`` content part, and — unlike the released
``while True`` — the question is asked at most ``max_attempts`` times per image.

Answers are cached per ROI image and model (:class:`AttributeCache`, a JSON file written after every
answer), so a run that stops (endpoint down, cancel) keeps every sentence made and the next run asks only
for the rest.  Blocking standard-library code (urllib) without Qt or torch.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.errors import VipInputError
from ..core.region_attributes import (
    AnswerRejected,
    RegionAttributes,
    SentenceRow,
    check_answer,
    external_contour_count,
    question,
    roi_image,
)
from .llm_descriptors import LlmConfig, post_chat

#: As released (``llava_vqa_13b.py``): sampling temperature and answer length.
RELEASED_TEMPERATURE = 0.2
RELEASED_MAX_TOKENS = 512
#: The released code asks until an answer passes; here at most this many times per image.
DEFAULT_MAX_ATTEMPTS = 5
CACHE_FILE = "region_attributes.json"


def png_data_url(rgb: np.ndarray) -> str:
    """``data:image/png;base64,...`` of an ``(H, W, 3)`` uint8 image."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def build_messages(roi_rgb: np.ndarray, keyword: str) -> list[dict]:
    """One user message: the released question and the ROI image (OpenAI ``image_url`` part)."""
    return [{"role": "user", "content": [
        {"type": "text", "text": question(keyword)},
        {"type": "image_url", "image_url": {"url": png_data_url(roi_rgb)}},
    ]}]


def reply_content(raw: bytes, url: str) -> str:
    """The answer text of a chat-completions response body; VipInputError when the body is not one."""
    try:
        data = json.loads(raw.decode("utf-8"))
        content = data["choices"][0]["message"]["content"]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, IndexError, TypeError):
        snippet = raw[:120].decode("utf-8", "replace").replace("\n", " ")
        raise VipInputError(f"The multimodal model at {url} did not send a chat-completions reply (got "
                            f"{snippet!r}); check that the URL is an OpenAI-compatible /v1/chat/completions "
                            "endpoint.") from None
    if isinstance(content, list):  # content parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content or "")


@dataclass
class Attempt:
    """One question and what became of it: ``answer`` text and ``rejected`` (why, or ``""`` when accepted)."""

    answer: str
    rejected: str = ""


def ask_attributes(roi_rgb: np.ndarray, keyword: str, region_count: int, config: LlmConfig,
                   max_attempts: int = DEFAULT_MAX_ATTEMPTS,
                   attempts_log: list[Attempt] | None = None) -> RegionAttributes:
    """Ask the model for one ROI's five attributes, asking again until the answer passes the released check.

    Parameters
    ----------
    roi_rgb : (H, W, 3) uint8
        The ROI image (:func:`~napari_vip.core.region_attributes.roi_image`).
    keyword : str
        What the region is (``"polyp area"``).
    region_count : int
        External contours of the mask; a larger ``number`` is set to it.
    attempts_log : list, optional
        Receives one :class:`Attempt` per question.

    Raises
    ------
    VipInputError
        The endpoint is not configured, down, refuses or times out; or no answer passed in ``max_attempts``
        (the message gives the last answer and why it was refused).
    """
    messages = build_messages(roi_rgb, keyword)
    url = config.endpoint()
    last = ""
    for _ in range(max(1, int(max_attempts))):
        raw = post_chat(config, messages, temperature=RELEASED_TEMPERATURE, max_tokens=RELEASED_MAX_TOKENS)
        content = reply_content(raw, url)
        try:
            attrs = check_answer(content, region_count)
        except AnswerRejected as exc:
            last = f"{content[:120]!r} ({exc})"
            if attempts_log is not None:
                attempts_log.append(Attempt(content, str(exc)))
            continue
        if attempts_log is not None:
            attempts_log.append(Attempt(content))
        attrs.source = f"llm:{config.model}"
        return attrs
    raise VipInputError(f"The multimodal model {config.model!r} at {url} gave no answer with exactly the five keys "
                        f"{{number, location, shape, size, color}} in {max_attempts} tries; last: {last}. Try "
                        "another model, or measure the attributes from the mask (--attributes mask).")


def attribute_key(roi_rgb: np.ndarray, keyword: str, region_count: int, model: str) -> str:
    """Cache key: the ROI image's bytes and shape, the question (keyword), the region count, the model name."""
    arr = np.ascontiguousarray(roi_rgb)
    h = hashlib.sha256()
    h.update(f"{arr.dtype.str}{arr.shape}".encode())
    h.update(memoryview(arr).cast("B"))
    h.update(json.dumps({"q": question(keyword), "n": int(region_count), "model": model}).encode())
    return h.hexdigest()[:40]


class AttributeCache:
    """Answers per ROI image and model in one JSON file ``{key: attributes dict}``, rewritten after each answer.

    ``path`` defaults to ``<napari-vip cache>/region_attributes.json`` (see
    :func:`napari_vip.models.embedding_cache.cache_root`).  A file that does not read is set aside
    (renamed ``.bad``), not trusted.
    """

    def __init__(self, path=None):
        if path is None:
            from .embedding_cache import cache_root

            path = cache_root() / CACHE_FILE
        self.path = Path(path)
        self._data: dict[str, dict] = {}
        if self.path.is_file():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                self._data = data if isinstance(data, dict) else {}
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                self.path.replace(self.path.with_name(self.path.name + ".bad"))

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: str) -> RegionAttributes | None:
        d = self._data.get(key)
        if not isinstance(d, dict):
            return None
        try:
            return RegionAttributes.from_dict(d)
        except (KeyError, TypeError):
            return None

    def put(self, key: str, attrs: RegionAttributes) -> None:
        self._data[key] = attrs.to_dict()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self._data, indent=1, default=str), encoding="utf-8")
        tmp.replace(self.path)


class DescribeStopped(VipInputError):
    """Asking stopped part way (endpoint down, no usable answer); ``rows`` holds the sentences made so far
    (also in the cache), ``failed`` the sample that stopped it."""

    def __init__(self, message: str, rows: list[SentenceRow], failed: str):
        super().__init__(message)
        self.rows = rows
        self.failed = failed


@dataclass
class RegionSample:
    """What :func:`describe_regions` needs of one sample: its id and a loader of ``(image_rgb, mask)``."""

    sample_id: str
    load: Callable[[], tuple[np.ndarray, np.ndarray]]


@dataclass
class DescribeReport:
    rows: list[SentenceRow]
    asked: int = 0
    cached: int = 0
    attempts: dict[str, list[Attempt]] = field(default_factory=dict)


def describe_regions(samples: Iterable[RegionSample], keyword: str, config: LlmConfig,
                     cache: AttributeCache | None = None, max_attempts: int = DEFAULT_MAX_ATTEMPTS,
                     progress=None) -> DescribeReport:
    """Attributes and sentences for every sample, from the cache or the model, in order.

    ``progress(done, total, text)`` is called after each sample (a cancel raised there stops the run with
    everything made so far cached).  When the endpoint fails part way, :class:`DescribeStopped` carries the
    rows made so far and says how many are kept.
    """
    samples = list(samples)
    cache = cache if cache is not None else AttributeCache()
    report = DescribeReport(rows=[])
    why = config.problem()
    if why:
        raise VipInputError(why)
    for i, s in enumerate(samples):
        image, mask = s.load()
        roi = roi_image(image, mask)
        count = external_contour_count(mask)
        if count == 0:
            raise VipInputError(f"Sample {s.sample_id}: the mask is empty; there is no region to describe.")
        key = attribute_key(roi, keyword, count, config.model)
        attrs = cache.get(key)
        if attrs is None:
            log: list[Attempt] = []
            try:
                attrs = ask_attributes(roi, keyword, count, config, max_attempts, log)
            except VipInputError as exc:
                raise DescribeStopped(
                    f"{exc} Stopped at sample {s.sample_id} ({i + 1} of {len(samples)}): the {len(report.rows)} "
                    f"sentence(s) made so far are kept (cache {cache.path}); run again to go on from there.",
                    report.rows, s.sample_id) from None
            report.attempts[s.sample_id] = log
            cache.put(key, attrs)
            report.asked += 1
        else:
            report.cached += 1
        report.rows.append(SentenceRow(s.sample_id, attrs.sentence(keyword), attrs))
        if progress is not None:
            progress(i + 1, len(samples), f"described {s.sample_id}")
    return report
