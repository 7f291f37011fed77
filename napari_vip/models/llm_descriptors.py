"""Visual descriptors from a language model (optional): an OpenAI-compatible chat-completions client.

ViP (Fang et al., MICCAI 2024) asks a language model for the visual symptoms of each class.  Here
the endpoint is the user's: any server speaking the OpenAI ``/v1/chat/completions`` protocol (a
hosted service, or a local one such as llama.cpp, vLLM or Ollama).  Nothing is sent anywhere unless
the user configures a URL.

Configuration (:class:`LlmConfig`), from the dock's fields, the CLI options or the environment:

- ``NAPARI_VIP_LLM_URL``: the endpoint, either the full ``.../chat/completions`` URL or the API base
  (``http://localhost:8080/v1``), to which ``/chat/completions`` is appended;
- ``NAPARI_VIP_LLM_MODEL``: the model name the server expects;
- the API key is read from the environment variable named by ``NAPARI_VIP_LLM_KEY_ENV``
  (default ``NAPARI_VIP_LLM_API_KEY``) and sent as ``Authorization: Bearer <key>``; never stored.

The answer is parsed (a JSON list of strings, or one descriptor per line with bullets or numbers),
cleaned, deduplicated and, by default, merged into the user's symptom library
(:func:`napari_vip.core.symptoms.add_to_user_library`), which is the cache the "fill from symptom
library" button reads.  Everything here is blocking standard-library code (urllib) without Qt: the
dock sends a :class:`~napari_vip.worker.concepts.DescriptorsRequest` to the worker like every other job,
the CLI calls it directly.
"""

from __future__ import annotations

import json
import os
import re
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass

from ..core.errors import VipInputError
from ..core.symptoms import clean_descriptor

URL_ENV = "NAPARI_VIP_LLM_URL"
MODEL_ENV = "NAPARI_VIP_LLM_MODEL"
KEY_ENV_ENV = "NAPARI_VIP_LLM_KEY_ENV"
DEFAULT_KEY_ENV = "NAPARI_VIP_LLM_API_KEY"
DEFAULT_TIMEOUT_S = 30.0
#: Descriptors longer than this many words are dropped (answers that are sentences, not descriptors).
MAX_WORDS = 12

SYSTEM_PROMPT = ("You describe what diseases and findings look like in medical images. Answer only with a JSON "
                 "array of short strings.")
USER_PROMPT = ("List {n} short visual descriptors of {c} as it appears on a {modality}. Each descriptor names "
               "something visible in the image (shape, density or colour, texture, location, borders) in 2 to 8 "
               "words, without the word '{c}' and without explanations. Answer with a JSON array of strings only.")


@dataclass(frozen=True)
class LlmConfig:
    """Where to ask: endpoint ``url``, ``model`` name, the name of the environment variable with the key."""

    url: str = ""
    model: str = ""
    key_env: str = DEFAULT_KEY_ENV
    timeout_s: float = DEFAULT_TIMEOUT_S

    @classmethod
    def from_env(cls, **overrides) -> LlmConfig:
        """From ``NAPARI_VIP_LLM_URL``, ``NAPARI_VIP_LLM_MODEL``, ``NAPARI_VIP_LLM_KEY_ENV``; non-empty
        ``overrides`` win."""
        vals = {"url": os.environ.get(URL_ENV, ""), "model": os.environ.get(MODEL_ENV, ""),
                "key_env": os.environ.get(KEY_ENV_ENV, "") or DEFAULT_KEY_ENV}
        vals.update({k: v for k, v in overrides.items() if v not in (None, "")})
        return cls(**vals)

    def endpoint(self) -> str:
        """The chat-completions URL."""
        url = self.url.strip().rstrip("/")
        return url if url.endswith("/chat/completions") else url + "/chat/completions"

    def problem(self) -> str | None:
        """Why this configuration cannot be used, or ``None`` when it can (no network access is tried)."""
        url = self.url.strip()
        if not url:
            return (f"No language model endpoint is configured: give the URL of an OpenAI-compatible "
                    f"chat-completions server (or set {URL_ENV}).")
        if not re.match(r"^https?://[^/\s]+", url):
            return f"Language model URL {url!r} must start with http:// or https://."
        if not self.model.strip():
            return f"No language model name is configured: give the model the server should use (or set {MODEL_ENV})."
        return None

    def to_dict(self) -> dict:
        """For provenance: URL, model and the key's variable name (never the key)."""
        return {"url": self.endpoint(), "model": self.model, "key_env": self.key_env}


def build_messages(class_name: str, modality: str, n: int = 5) -> list[dict]:
    """The chat messages asking for ``n`` descriptors of ``class_name`` on a ``modality``."""
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": USER_PROMPT.format(n=n, c=class_name, modality=modality)}]


def parse_descriptors(content: str, class_name: str = "") -> list[str]:
    """Descriptors from a model's answer text.

    Accepts a JSON array of strings (possibly inside a ```` ``` ```` fence or surrounded by text), or
    one descriptor per line with ``-``, ``*``, ``•`` or ``1.`` bullets.  Descriptors are cleaned
    (:func:`~napari_vip.core.symptoms.clean_descriptor`, surrounding quotes removed), deduplicated
    case-insensitively; empty ones, ones longer than :data:`MAX_WORDS` words and the bare class name
    are dropped.
    """
    text = str(content or "").strip()
    items: list[str] | None = None
    m = re.search(r"\[.*\]", text, re.S)
    if m:
        try:
            arr = json.loads(m.group(0))
            if isinstance(arr, list):
                items = [a for a in arr if isinstance(a, str)]
        except json.JSONDecodeError:
            items = None
    if items is None:
        items = []
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("```"):
                continue
            line = re.sub(r"^(?:[-*•]+|\d+[.)])\s*", "", line)
            items.append(line)
    out, seen = [], set()
    for it in items:
        d = clean_descriptor(it.strip().strip("\"'`").strip().rstrip(","))
        d = d.strip("\"'`").strip()
        if not d or len(d.split()) > MAX_WORDS or d.casefold() == class_name.strip().casefold():
            continue
        if d.casefold() not in seen:
            seen.add(d.casefold())
            out.append(d)
    return out


def post_chat(config: LlmConfig, messages: list[dict], **params) -> bytes:
    """POST ``messages`` (and ``params`` such as ``temperature``) to the chat-completions endpoint; the raw body.

    Blocking, at most ``config.timeout_s``.  The API key, when its variable is set, goes in the
    ``Authorization`` header.

    Raises
    ------
    VipInputError
        Not configured, unreachable, an HTTP error or a timeout; the message says which and what to check.
    """
    why = config.problem()
    if why:
        raise VipInputError(why)
    url = config.endpoint()
    body = json.dumps({"model": config.model, "messages": messages, **params}).encode("utf-8")
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    key = os.environ.get(config.key_env, "") if config.key_env else ""
    if key:
        headers["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=config.timeout_s) as resp:
            return resp.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:300].decode("utf-8", "replace").strip() if exc.fp else ""
        hint = " Check the API key variable." if exc.code in (401, 403) else ""
        raise VipInputError(f"The language model at {url} refused the request: HTTP {exc.code} {exc.reason}"
                            f"{': ' + detail if detail else ''}.{hint}") from None
    except TimeoutError:
        raise VipInputError(f"The language model at {url} did not answer within {config.timeout_s:g} s; "
                            "try again, or use a faster model or a longer timeout.") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, (socket.timeout, TimeoutError)):
            raise VipInputError(f"The language model at {url} did not answer within {config.timeout_s:g} s; "
                                "try again, or use a faster model or a longer timeout.") from None
        raise VipInputError(f"Could not reach the language model at {url} ({reason}); check the URL and the "
                            "network.") from None
    except (ConnectionError, OSError) as exc:
        raise VipInputError(f"Could not reach the language model at {url} ({exc}); check the URL and the "
                            "network.") from None


def request_descriptors(class_name: str, modality: str, config: LlmConfig, n: int = 5) -> list[str]:
    """Ask the endpoint for descriptors of ``class_name``; blocking (at most ``config.timeout_s``).

    Raises
    ------
    VipInputError
        Not configured, unreachable, an HTTP error, a timeout, or an answer without usable descriptors;
        the message says which and what to check.
    """
    why = config.problem()
    if why:
        raise VipInputError(why)
    if not class_name.strip():
        raise VipInputError("Give the class to describe.")
    raw = post_chat(config, build_messages(class_name, modality, n), temperature=0)
    return parse_reply(raw, class_name, config.endpoint())


def parse_reply(raw: bytes, class_name: str, url: str = "the endpoint") -> list[str]:
    """Descriptors from a chat-completions response body; VipInputError when it is not one or has none."""
    snippet = raw[:120].decode("utf-8", "replace").replace("\n", " ")
    try:
        data = json.loads(raw.decode("utf-8"))
        content = data["choices"][0]["message"]["content"]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, IndexError, TypeError):
        raise VipInputError(f"The language model at {url} did not send a chat-completions reply "
                            f"(got {snippet!r}); check that the URL is an OpenAI-compatible "
                            "/v1/chat/completions endpoint.") from None
    descriptors = parse_descriptors(content, class_name)
    if not descriptors:
        raise VipInputError(f"The language model at {url} answered without usable descriptors for {class_name!r} "
                            f"(got {str(content)[:120]!r}); try again or another model.")
    return descriptors


def generate_descriptors(class_name: str, modality: str, config: LlmConfig, n: int = 5,
                         cache: bool = True, library_path=None) -> list[str]:
    """:func:`request_descriptors`, then (``cache``) merge them into the user's library
    (``library_path`` overrides the file).  Returns the new descriptors."""
    descriptors = request_descriptors(class_name, modality, config, n)
    if cache:
        from ..core.symptoms import add_to_user_library

        add_to_user_library(class_name.strip(), descriptors, library_path)
    return descriptors
