"""CoTexNet's multimodal attribute client against a fake OpenAI-compatible server on 127.0.0.1 (started and
stopped here): the ROI image and released question are sent; bad JSON, a missing key and too many regions are
asked again / corrected as released; answers are cached per image and model; an endpoint that goes down stops
the run with a clear message and keeps the sentences already made."""

from __future__ import annotations

import base64
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from napari_vip.core.errors import VipInputError
from napari_vip.core.region_attributes import question
from napari_vip.models.llm_descriptors import LlmConfig
from napari_vip.models.region_describer import (
    AttributeCache,
    DescribeStopped,
    RegionSample,
    ask_attributes,
    describe_regions,
)

GOOD = '{"number": 1, "location": "top left", "shape": "round", "size": "small", "color": "red"}'


class FakeVlm:
    """Chat-completions server answering from ``answers`` in order (the last one repeats)."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.requests: list[dict] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                fake.requests.append(body)
                i = min(len(fake.requests) - 1, len(fake.answers) - 1)
                payload = json.dumps({"choices": [{"index": 0, "message": {
                    "role": "assistant", "content": fake.answers[i]}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.closed = False

    def close(self):
        if not self.closed:
            self.closed = True
            self.server.shutdown()
            self.server.server_close()
            self.thread.join(5)


@pytest.fixture
def servers():
    started = []

    def start(answers):
        s = FakeVlm(answers)
        started.append(s)
        return s

    yield start
    for s in started:
        s.close()


def sample_arrays(seed=0):
    rng = np.random.default_rng(seed)
    img = rng.integers(1, 256, (24, 32, 3), dtype=np.uint8)
    m = np.zeros((24, 32), np.uint8)
    m[2:8, 3:9] = 255
    return img, m


def decode_data_url(url):
    assert url.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))


def test_reasks_until_five_keys_and_caps_the_number(servers):
    srv = servers(["Sure! The polyp is red.", '{"number": 1, "location": "center", "shape": "oval"}',
                   '{"number": 4, "location": "top left", "shape": "round", "size": "small", "color": "red"}'])
    img, m = sample_arrays()
    roi = np.where(m[..., None] > 0, img, 0).astype(np.uint8)
    log = []
    attrs = ask_attributes(roi, "polyp area", 1, LlmConfig(srv.url, "llava-test"), attempts_log=log)
    assert len(srv.requests) == 3
    assert [bool(a.rejected) for a in log] == [True, True, False]
    assert "incomplete" in log[1].rejected
    assert attrs.number == 1 and attrs.corrections and attrs.source == "llm:llava-test"
    assert attrs.sentence("polyp area") == "1 round small red polyp area, located in the top left of the image."
    req = srv.requests[0]
    assert req["model"] == "llava-test" and req["temperature"] == 0.2 and req["max_tokens"] == 512
    text, image = req["messages"][0]["content"]
    assert text == {"type": "text", "text": question("polyp area")}
    assert np.array_equal(decode_data_url(image["image_url"]["url"]), roi)


def test_gives_up_after_max_attempts_with_the_last_answer(servers):
    srv = servers(["not json at all"])
    img, m = sample_arrays()
    with pytest.raises(VipInputError, match="in 3 tries; last: 'not json at all'"):
        ask_attributes(img, "polyp area", 1, LlmConfig(srv.url, "m"), max_attempts=3)
    assert len(srv.requests) == 3


def test_cached_per_image_and_model(servers, tmp_path):
    srv = servers([GOOD])
    cache = AttributeCache(tmp_path / "attrs.json")
    samples = [RegionSample(f"s{i}", (lambda i=i: sample_arrays(i))) for i in range(2)]
    rep = describe_regions(samples, "polyp area", LlmConfig(srv.url, "m1"), cache)
    assert rep.asked == 2 and len(srv.requests) == 2
    again = describe_regions(samples, "polyp area", LlmConfig(srv.url, "m1"), AttributeCache(tmp_path / "attrs.json"))
    assert again.cached == 2 and len(srv.requests) == 2
    assert [r.sentence for r in again.rows] == [r.sentence for r in rep.rows]
    other = describe_regions(samples[:1], "polyp area", LlmConfig(srv.url, "m2"), cache)
    assert other.asked == 1 and len(srv.requests) == 3


def test_endpoint_down_keeps_the_sentences_made(servers, tmp_path):
    srv = servers([GOOD])
    cache_path = tmp_path / "attrs.json"
    samples = [RegionSample(f"s{i}", (lambda i=i: sample_arrays(i))) for i in range(3)]

    def progress(done, total, text):
        if done == 1:
            srv.close()  # the endpoint goes down after the first answer

    with pytest.raises(DescribeStopped) as exc:
        describe_regions(samples, "polyp area", LlmConfig(srv.url, "m", timeout_s=5), AttributeCache(cache_path),
                         progress=progress)
    msg = str(exc.value)
    assert "Could not reach" in msg and "s1 (2 of 3)" in msg and "1 sentence(s) made so far are kept" in msg
    assert [r.sample_id for r in exc.value.rows] == ["s0"]
    srv2 = servers([GOOD])
    rep = describe_regions(samples, "polyp area", LlmConfig(srv2.url, "m"), AttributeCache(cache_path))
    assert rep.cached == 1 and rep.asked == 2 and len(srv2.requests) == 2


def test_unconfigured_endpoint_is_refused_before_any_work():
    with pytest.raises(VipInputError, match="No language model endpoint"):
        describe_regions([], "polyp area", LlmConfig("", "m"), AttributeCache("/nonexistent/x.json"))


def write_csv_dataset(folder, n=3):
    """A CSV data set of ``n`` images with one square region each (train split)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["image,mask,prompt,split"]
    for i in range(n):
        img, m = sample_arrays(i)
        Image.fromarray(img).save(folder / f"img{i}.png")
        Image.fromarray(m).save(folder / f"mask{i}.png")
        lines.append(f"img{i}.png,mask{i}.png,polyp,train")
    (folder / "data.csv").write_text("\n".join(lines) + "\n")
    return folder / "data.csv"


def test_cli_asks_the_endpoint_and_keeps_the_csv_when_it_goes_down(servers, tmp_path, capsys):
    from napari_vip.cli.main import main
    from napari_vip.core.region_attributes import read_sentence_csv

    data = write_csv_dataset(tmp_path / "data")
    srv = servers(["no", GOOD])
    out = tmp_path / "sentences.csv"
    common = [str(data), "--keyword", "polyp area", "--attributes", "llm", "--llm-url", srv.url,
              "--llm-model", "vlm", "--cache", str(tmp_path / "cache.json"), "--out", str(out)]
    assert main(["sentences", *common, "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["asked"] == 3 and len(srv.requests) == 4  # the first answer was asked again
    assert read_sentence_csv(out) == {f"mask{i}.png": "1 round small red polyp area, located in the top left of the "
                                                      "image." for i in range(3)}
    assert got["provenance"]["llm"]["model"] == "vlm"
    srv.close()
    (tmp_path / "cache.json").unlink()
    out.unlink()
    assert main(["sentences", *common]) == 2
    err = capsys.readouterr().err
    assert "Could not reach" in err and "mask0.png (1 of 3)" in err
