"""The language-model client against a small chat-completions server on 127.0.0.1: success, garbage, timeout."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from napari_vip.core.errors import VipInputError
from napari_vip.core.symptoms import load_library, user_library_path
from napari_vip.models.llm_descriptors import LlmConfig, generate_descriptors, parse_descriptors, request_descriptors


class FakeLlm:
    """A chat-completions server: ``mode`` picks the answer; ``requests`` records what arrived."""

    def __init__(self):
        self.mode = "ok"
        self.content = '["Patchy consolidation", "air bronchogram.", "patchy consolidation", "pneumonia"]'
        self.requests: list[dict] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                fake.requests.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(body)})
                if fake.mode == "slow":
                    time.sleep(1.5)
                if fake.mode == "garbage":
                    payload, ctype, code = b"<html>not an api</html>", "text/html", 200
                elif fake.mode == "empty":
                    payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": "  "}}]}).encode()
                    ctype, code = "application/json", 200
                elif fake.mode == "401":
                    payload, ctype, code = b'{"error": "bad key"}', "application/json", 401
                else:
                    payload = json.dumps({"id": "x", "object": "chat.completion", "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": fake.content}}]}).encode()
                    ctype, code = "application/json", 200
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def llm():
    fake = FakeLlm()
    yield fake
    fake.close()


@pytest.fixture(autouse=True)
def user_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_VIP_CONFIG_DIR", str(tmp_path / "config"))
    for var in ("NAPARI_VIP_LLM_URL", "NAPARI_VIP_LLM_MODEL", "NAPARI_VIP_LLM_KEY_ENV"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path / "config"


def test_success_parses_dedupes_and_caches_into_the_users_library(llm, monkeypatch):
    monkeypatch.setenv("MY_LLM_KEY", "sekret")
    config = LlmConfig(llm.url, "tiny-model", key_env="MY_LLM_KEY", timeout_s=5)
    got = generate_descriptors("pneumonia", "chest x-ray", config, n=4)
    assert got == ["Patchy consolidation", "air bronchogram"]  # dedupe, full stop, bare class name dropped
    sent = llm.requests[0]
    assert sent["path"] == "/v1/chat/completions"
    assert sent["headers"]["Authorization"] == "Bearer sekret"
    assert sent["body"]["model"] == "tiny-model"
    user_msg = sent["body"]["messages"][-1]["content"]
    assert "pneumonia" in user_msg and "chest x-ray" in user_msg and "4" in user_msg
    assert load_library(user_library_path())["pneumonia"] == got
    assert load_library()["pneumonia"][-2:] == got  # merged after the bundled ones


def test_no_key_variable_sends_no_authorization(llm):
    request_descriptors("nodule", "chest x-ray", LlmConfig(llm.url + "/chat/completions", "m", key_env="UNSET_X"))
    assert "Authorization" not in llm.requests[0]["headers"]
    assert llm.requests[0]["path"] == "/v1/chat/completions"


def test_garbage_is_a_clear_error_and_nothing_is_cached(llm):
    llm.mode = "garbage"
    with pytest.raises(VipInputError, match="did not send a chat-completions reply.*<html>"):
        generate_descriptors("nodule", "chest x-ray", LlmConfig(llm.url, "m", timeout_s=5))
    assert not user_library_path().exists()
    llm.mode = "empty"
    with pytest.raises(VipInputError, match="without usable descriptors"):
        request_descriptors("nodule", "chest x-ray", LlmConfig(llm.url, "m", timeout_s=5))


def test_timeout_is_a_clear_error_within_the_limit(llm):
    llm.mode = "slow"
    t0 = time.perf_counter()
    with pytest.raises(VipInputError, match=r"did not answer within 0.3 s"):
        request_descriptors("nodule", "chest x-ray", LlmConfig(llm.url, "m", timeout_s=0.3))
    assert time.perf_counter() - t0 < 1.4


def test_http_error_and_unreachable_server(llm):
    llm.mode = "401"
    with pytest.raises(VipInputError, match="HTTP 401.*bad key.*API key"):
        request_descriptors("nodule", "chest x-ray", LlmConfig(llm.url, "m", timeout_s=5))
    port = llm.server.server_address[1]
    llm.close()
    with pytest.raises(VipInputError, match="Could not reach"):
        request_descriptors("nodule", "chest x-ray", LlmConfig(f"http://127.0.0.1:{port}/v1", "m", timeout_s=2))
    llm.close = lambda: None


def test_unconfigured_endpoint_says_why_without_network(monkeypatch):
    assert "No language model endpoint" in LlmConfig().problem()
    assert "http://" in LlmConfig("ftp://x", "m").problem()
    assert "model name" in LlmConfig("http://127.0.0.1:1/v1", "").problem()
    with pytest.raises(VipInputError, match="No language model endpoint"):
        request_descriptors("nodule", "chest x-ray", LlmConfig())
    monkeypatch.setenv("NAPARI_VIP_LLM_URL", "http://h:1/v1")
    monkeypatch.setenv("NAPARI_VIP_LLM_MODEL", "env-model")
    cfg = LlmConfig.from_env(model="given")
    assert (cfg.url, cfg.model, cfg.key_env) == ("http://h:1/v1", "given", "NAPARI_VIP_LLM_API_KEY")
    assert cfg.problem() is None and "key" not in json.dumps(cfg.to_dict()).replace("key_env", "")


@pytest.mark.parametrize("content, expected", [
    ('```json\n["round opacity", "sharp border"]\n```', ["round opacity", "sharp border"]),
    ("Here you go: [\"a\", \"b\", 3]", ["a", "b"]),
    ("1. Round opacity.\n2) sharp border\n- calcified centre\n* \n• halo", ["Round opacity", "sharp border",
                                                                             "calcified centre", "halo"]),
    ("\"quoted thing\",\n'other'", ["quoted thing", "other"]),
    (" ".join(["word"] * 20), []),
])
def test_parse_descriptors(content, expected):
    assert parse_descriptors(content, "nodule") == expected
