"""The model server on loopback: authentication, same results as the local Engine, many clients, fairness,
cancel and newest-wins, a server that goes away, and malformed or oversized requests."""

import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import msgpack
import numpy as np
import pytest
from job_recorder import Recorder

from napari_vip.core.markers import Marker
from napari_vip.models.sam import SamSpec
from napari_vip.models.spec import ModelSpec
from napari_vip.serve.app import ServerConfig, create_app
from napari_vip.serve.policy import ServerPolicy
from napari_vip.serve.remote_client import RemoteClient, npy_bytes
from napari_vip.serve.wire import array_digest
from napari_vip.worker.attention import AttentionRequest
from napari_vip.worker.classify import ClassifyRequest
from napari_vip.worker.engine import Engine
from napari_vip.worker.learn import LearnRequest
from napari_vip.worker.segment import SegmentRequest
from napari_vip.worker.selftest import SelfTestRequest

TOKEN = "s3cret-token-of-24-chars"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_server(config: ServerConfig, log_level: str = "warning"):
    """A uvicorn server in a thread on a free loopback port; yields ``(url, app)`` and stops it."""
    import uvicorn

    app = create_app(config)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level=log_level,
                                           ws_max_size=config.max_message_bytes))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    end = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < end, "server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def server(tiny_clip_checkpoint, tiny_sam_checkpoint):
    dirs = [str(Path(__file__).parent / "configs"), str(Path(tiny_clip_checkpoint[1]).parent),
            str(Path(tiny_sam_checkpoint[1]).parent)]
    config = ServerConfig(token=TOKEN, policy=ServerPolicy("cpu", dirs), max_array_bytes=2 ** 22, quantum_s=0.02)
    with running_server(config) as (url, app):
        yield url, app


@pytest.fixture
def client(server):
    c = RemoteClient(server[0], TOKEN)
    yield c
    c.shutdown()


def run_remote(client, request, timeout=60):
    rec = Recorder()
    job = rec.submit(client, request)
    client.wait(job, timeout)
    assert not rec.errors, rec.errors
    return rec.done[0]


def image(h=96, w=128, seed=0):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 80, (h, w, 3), dtype=np.uint8)
    img[30:60, 40:90] = 220
    return img


# -- authentication ------------------------------------------------------------------------------------------
def test_missing_and_wrong_tokens_are_refused_and_run_nothing(server):
    url, app = server
    before = app.state.scheduler.status()["jobs_started"]
    assert httpx.get(f"{url}/status").status_code == 401
    assert httpx.get(f"{url}/status", headers={"Authorization": "Bearer wrong"}).status_code == 403
    arr = np.zeros((300, 300, 3), np.uint8)
    put = httpx.put(f"{url}/arrays/{array_digest(arr)}", content=npy_bytes(arr),
                    headers={"Authorization": "Bearer wrong"})
    assert put.status_code == 403 and array_digest(arr) not in app.state.store
    for token in (None, "wrong"):
        c = RemoteClient(url, token)
        rec = Recorder()
        job = rec.submit(c, SelfTestRequest(steps=1, tag="intruder"))
        c.wait(job, 30)
        c.shutdown()
        assert not rec.done and [f.kind for f in rec.errors] == ["input"]
        assert "token" in rec.errors[0].message and TOKEN not in rec.errors[0].message
    assert app.state.scheduler.status()["jobs_started"] == before
    assert httpx.get(f"{url}/health").json() == {"ok": True}
    assert "/status" in httpx.get(f"{url}/openapi.json").json()["paths"]


def test_status_reports_queue_models_and_device(server, client):
    run_remote(client, SelfTestRequest(steps=1))
    status = httpx.get(f"{server[0]}/status", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert status["device"] == "cpu" and status["queue_length"] == 0 and status["clients"] >= 1
    assert isinstance(status["loaded_models"], list) and status["gpu_memory"] is None


# -- same results as the local Engine --------------------------------------------------------------------------
def test_classify_segment_and_attention_equal_the_local_engine(client, tiny_clip_checkpoint, tiny_sam_checkpoint):
    arch, ckpt = tiny_clip_checkpoint
    sam_arch, sam_ckpt = tiny_sam_checkpoint
    clip, sam = ModelSpec(arch, checkpoint=ckpt), SamSpec(sam_arch, checkpoint=sam_ckpt)
    img = image()
    marker = Marker((40.0, 30.0, 90.0, 60.0), "circle")
    requests = [
        ClassifyRequest(img, [marker], ["nodule", "normal"], clip, device="cpu"),
        SegmentRequest(img, sam, boxes_xyxy=[(40.0, 30.0, 90.0, 60.0)], points_xy=[[60.0, 45.0]], point_labels=[1],
                       device="cpu", disk_cache=False),
        AttentionRequest(img, [marker], "nodule", ["nodule", "normal"], "similarity", clip, device="cpu"),
    ]
    engine = Engine()
    for req in requests:
        local, remote = engine.run(req), run_remote(client, req)
        assert type(remote) is type(local)
        server_prov = remote.provenance.extra.pop("server")
        assert server_prov["url"] == client.url and server_prov["device"] == "cpu"
        assert remote.provenance.to_dict() == local.provenance.to_dict()
    np.testing.assert_allclose([c.probabilities for c in run_remote(client, requests[0]).conditions],
                               [c.probabilities for c in engine.run(requests[0]).conditions], rtol=1e-6, atol=1e-7)
    seg_l, seg_r = engine.run(requests[1]), run_remote(client, requests[1])
    assert np.array_equal(seg_l.masks, seg_r.masks) and seg_r.masks.dtype == bool
    np.testing.assert_allclose(seg_r.scores, seg_l.scores, rtol=1e-6)
    att_l, att_r = engine.run(requests[2]), run_remote(client, requests[2])
    for a, b in zip(att_l.conditions, att_r.conditions):
        np.testing.assert_allclose(b.heatmap, a.heatmap, rtol=1e-6, atol=1e-7)
        assert b.focus == a.focus and b.name == a.name


# -- many clients, fairness ------------------------------------------------------------------------------------
def test_eight_concurrent_clients_each_get_their_own_results(server):
    url = server[0]
    results, errors = {}, []

    def viewer(k):
        c = RemoteClient(url, TOKEN)
        try:
            rec = Recorder()
            jobs = [rec.submit(c, SelfTestRequest(steps=2, step_seconds=0.005, tag=f"{k}-{i}"), channel=f"ch{i}")
                    for i in range(4)]
            img = image(64, 64, seed=k)
            from napari_vip.worker.concepts import RegionConceptsRequest
            jobs.append(rec.submit(c, RegionConceptsRequest(img, box_xyxy=(10.0, 10.0, 20.0 + k, 30.0))))
            for j in jobs:
                c.wait(j, 60)
            results[k] = rec.done
            errors.extend(rec.errors)
        finally:
            c.shutdown()

    t0 = time.monotonic()
    threads = [threading.Thread(target=viewer, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert time.monotonic() - t0 < 60
    assert not errors
    for k in range(8):
        tags = sorted(r.tag for r in results[k][:4] if hasattr(r, "tag"))
        assert tags == [f"{k}-{i}" for i in range(4)]
        region = [r for r in results[k] if hasattr(r, "sentence")]
        assert len(region) == 1 and region[0].concepts.source == "box"


def test_a_long_job_does_not_starve_another_clients_short_one(server):
    url = server[0]
    a, b = RemoteClient(url, TOKEN), RemoteClient(url, TOKEN)
    try:
        ra, rb = Recorder(), Recorder()
        long_job = ra.submit(a, SelfTestRequest(steps=300, step_seconds=0.01, tag="long"))
        while not ra.progress:
            a.poll()
            time.sleep(0.005)
        short = rb.submit(b, SelfTestRequest(steps=2, step_seconds=0.0, tag="short"))
        b.wait(short, 30)
        a.poll()
        assert [r.tag for r in rb.done] == ["short"]
        assert not ra.done and ra.progress[-1].done < 250  # the long one is still running
        a.cancel(long_job)
        a.wait(long_job, 30)
        assert [f.kind for f in ra.errors] == ["cancelled"]
    finally:
        a.shutdown()
        b.shutdown()


# -- cancel and newest-wins --------------------------------------------------------------------------------------
def test_cancel_and_newest_wins_over_the_network(client):
    rec = Recorder()
    job = rec.submit(client, SelfTestRequest(steps=500, step_seconds=0.01))
    while not rec.progress:
        client.poll()
        time.sleep(0.005)
    client.cancel(job)
    client.wait(job, 30)
    assert not rec.done and [f.kind for f in rec.errors] == ["cancelled"] and len(rec.progress) < 500

    rec = Recorder()
    first = rec.submit(client, SelfTestRequest(steps=200, step_seconds=0.01, tag="old"), channel="classify")
    while not rec.progress:
        client.poll()
        time.sleep(0.005)
    middle = rec.submit(client, SelfTestRequest(steps=1, tag="middle"), channel="classify")
    other = rec.submit(client, SelfTestRequest(steps=1, tag="other"), channel="segment")
    last = rec.submit(client, SelfTestRequest(steps=1, tag="new"), channel="classify")
    for j in (last, other):
        client.wait(j, 30)
    assert sorted(r.tag for r in rec.done) == ["new", "other"]
    assert not rec.errors and client.latest("classify") == last
    assert first not in client._pending and middle not in client._pending


# -- malformed and oversized requests ----------------------------------------------------------------------------
def test_malformed_and_oversized_requests_get_4xx_and_the_server_keeps_serving(server, client):
    url, app = server
    auth = {"Authorization": f"Bearer {TOKEN}"}
    big = np.zeros((1300, 1300, 3), np.uint8)  # over the 4 MiB limit of this server
    assert httpx.put(f"{url}/arrays/{array_digest(big)}", content=npy_bytes(big), headers=auth).status_code == 413
    ok = image()
    assert httpx.put(f"{url}/arrays/{'0' * 64}", content=npy_bytes(ok), headers=auth).status_code == 400
    assert httpx.put(f"{url}/arrays/{'1' * 64}", content=b"not an array", headers=auth).status_code == 400
    obj = io.BytesIO()
    np.save(obj, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    resp = httpx.put(f"{url}/arrays/{'2' * 64}", content=obj.getvalue(), headers=auth)
    assert resp.status_code == 400 and "dtype" in resp.json()["detail"]
    lying = npy_bytes(np.zeros((10, 10), np.uint8)).replace(b"(10, 10)", b"(99999, 99999)")
    assert httpx.put(f"{url}/arrays/{'3' * 64}", content=lying, headers=auth).status_code == 413

    spec = ModelSpec("ViT-B-16", untrained=True)
    bad = [
        ClassifyRequest(ok.astype(np.float32), [], ["a"], spec),  # wrong dtype
        ClassifyRequest(ok[..., :2].copy(), [], ["a"], spec),  # wrong shape
        LearnRequest("/etc", spec),  # not served
        SelfTestRequest(fail="exit"),  # would end the server
        ClassifyRequest(ok, [], ["a"], ModelSpec("ViT-B-16", checkpoint="/etc/passwd.pt")),  # outside models dirs
    ]
    for req in bad:
        rec = Recorder()
        job = rec.submit(client, req)
        client.wait(job, 30)
        assert not rec.done and [f.kind for f in rec.errors] == ["input"], req
        assert "Refused by the server" in rec.errors[0].message
    started = app.state.scheduler.status()["jobs_started"]
    import websockets.sync.client as wsc

    with wsc.connect(f"ws://{url[len('http://'):]}/ws", additional_headers=auth, proxy=None) as ws:
        ws.recv()
        ws.send(__import__("msgpack").packb({"op": "submit", "job": 7, "request": {"$type": "Popen", "fields": {}}}))
        reply = __import__("msgpack").unpackb(ws.recv())
        assert reply["op"] == "failed" and reply["job"] == 7 and "not allowed" in reply["message"]
    assert app.state.scheduler.status()["jobs_started"] == started
    assert run_remote(client, SelfTestRequest(steps=1, tag="still here")).tag == "still here"


@contextmanager
def ws_session(url):
    """A raw WebSocket to the server, past its ``hello``."""
    import websockets.sync.client as wsc

    with wsc.connect(f"ws://{url[len('http://'):]}/ws", additional_headers={"Authorization": f"Bearer {TOKEN}"},
                     proxy=None) as ws:
        assert msgpack.unpackb(ws.recv())["op"] == "hello"
        yield ws


def closed_with(ws, frame) -> tuple[int, str]:
    """Send ``frame`` and return the code and reason the server closed the connection with."""
    from websockets.exceptions import ConnectionClosed

    ws.send(frame)
    with pytest.raises(ConnectionClosed) as info:
        ws.recv(timeout=30)
    return info.value.rcvd.code, info.value.rcvd.reason


def test_every_malformed_frame_gets_a_failed_reply_or_a_close_with_a_reason(server, client):
    url, app = server
    started = app.state.scheduler.status()["jobs_started"]
    image_ref = {"$ref": [{"a": 1}, "|u1", [96, 128, 3]]}
    requests = {
        1: {"$nd": ["|u1", [2 ** 32, 2 ** 32], b""]},  # element count overflows int64
        2: {"$nd": 1, "$tuple": []},  # two keys, no $type
        3: {"$ref": [["a"], "|u1", [1]]},  # digest is a list
        4: {"$type": "SelfTestRequest", "fields": {"tag": image_ref}},  # digest is a dict
        5: {"$dict": [[[1, 2], 3]]},  # dict key holding a list
        6: {"$type": "SelfTestRequest", "fields": {"steps": {"$dict": [[{"$tuple": [[1]]}, 1]]}}},
    }
    with ws_session(url) as ws:
        for job, request in requests.items():
            ws.send(msgpack.packb({"op": "submit", "job": job, "request": request}, use_bin_type=True))
        replies = {m["job"]: m for m in (msgpack.unpackb(ws.recv(timeout=30)) for _ in requests)}
    assert sorted(replies) == sorted(requests)
    for job, reply in replies.items():
        assert reply["op"] == "failed" and reply["kind"] == "input", (job, reply)
        assert reply["message"].startswith("Refused by the server"), (job, reply)
    for frame, code, words in [("a text frame", 1003, "binary"), (b"\xc1 garbage", 1007, "malformed"),
                               (msgpack.packb({"op": "submit", "job": "x"}), 1007, "integer 'job'"),
                               (msgpack.packb([1, 2]), 1007, "malformed")]:
        with ws_session(url) as ws:
            got_code, reason = closed_with(ws, frame)
        assert got_code == code and words in reason, (frame, got_code, reason)
    assert app.state.scheduler.status()["jobs_started"] == started
    assert run_remote(client, SelfTestRequest(steps=1, tag="still here")).tag == "still here"


def test_malformed_uploads_get_4xx_never_500(server):
    url, _ = server
    auth = {"Authorization": f"Bearer {TOKEN}"}
    from test_serve_fuzz import npy_with_header

    for shape in ([2 ** 32, 2 ** 32], [-1, -8], [0, 4], [1] * 70):
        resp = httpx.put(f"{url}/arrays/{'4' * 64}", content=npy_with_header("|u1", shape, b"\x00" * 8),
                         headers=auth)
        assert 400 <= resp.status_code < 500, (shape, resp.status_code, resp.text)
    assert httpx.put(f"{url}/arrays/not-a-digest", content=npy_bytes(image()), headers=auth).status_code == 400


def test_errors_name_model_files_relative_to_the_models_folder(server, client, tiny_clip_checkpoint):
    arch, ckpt = tiny_clip_checkpoint
    folder = Path(ckpt).parent
    (folder / "broken.pt").write_bytes(b"this is not a checkpoint")
    rec = Recorder()
    job = rec.submit(client, ClassifyRequest(image(), [], ["a", "b"], ModelSpec(arch, checkpoint="broken.pt")))
    client.wait(job, 60)
    (failure,) = rec.errors
    assert "broken.pt" in failure.message and str(folder) not in failure.message + failure.details, failure


def test_a_token_in_the_query_string_is_not_logged(tiny_clip_checkpoint):
    import logging

    lines = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    config = ServerConfig(token=TOKEN, policy=ServerPolicy("cpu", []))
    with running_server(config, log_level="info") as (url, _):
        for name in ("uvicorn.access", "uvicorn.error"):
            logging.getLogger(name).addHandler(handler)
        try:
            assert httpx.get(f"{url}/health?token={TOKEN}").status_code == 200
            assert httpx.get(f"{url}/status?access_token={TOKEN}&x=1").status_code == 401
        finally:
            for name in ("uvicorn.access", "uvicorn.error"):
                logging.getLogger(name).removeHandler(handler)
    assert any("/health" in line for line in lines) and any("/status" in line for line in lines), lines
    assert not any(TOKEN in line for line in lines), lines


@pytest.mark.parametrize("token", ["", "   ", "short-token", " padded-token-of-enough-length "])
def test_a_weak_token_is_refused_at_start(token):
    from napari_vip.core.errors import VipInputError

    with pytest.raises(VipInputError, match="token"):
        ServerConfig(token=token)


def test_serve_refuses_an_empty_token_from_the_environment(monkeypatch, capsys):
    import uvicorn

    from napari_vip.cli.main import main

    started = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: started.append(a))
    monkeypatch.setenv("NAPARI_VIP_TOKEN", " ")
    assert main(["serve", "--port", "1"]) != 0 and not started
    assert "token" in capsys.readouterr().err


def test_an_image_is_uploaded_once_and_referenced_afterwards(server, client):
    url, app = server
    img = image(200, 200, seed=5)
    from napari_vip.worker.concepts import RegionConceptsRequest

    req = RegionConceptsRequest(img, box_xyxy=(10.0, 10.0, 50.0, 50.0))
    run_remote(client, req)
    assert array_digest(img) in app.state.store
    puts = []
    orig = httpx.AsyncClient.put

    async def counting_put(self, *a, **k):
        puts.append(a)
        return await orig(self, *a, **k)

    httpx.AsyncClient.put = counting_put
    try:
        run_remote(client, req)
        fresh = RemoteClient(url, TOKEN)  # another viewer with the same image: the server has it already
        run_remote(fresh, req)
        fresh.shutdown()
    finally:
        httpx.AsyncClient.put = orig
    assert puts == []


# -- a server that goes away -------------------------------------------------------------------------------------
def start_server_process(port, env):
    proc = subprocess.Popen([sys.executable, "-m", "napari_vip.cli.main", "serve", "--port", str(port),
                             "--device", "cpu", "--log-level", "warning"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    end = time.monotonic() + 60
    while time.monotonic() < end:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
        assert proc.poll() is None, proc.stderr.read().decode()
    proc.kill()
    raise AssertionError("server did not start")


def test_server_killed_mid_job_is_reported_and_the_client_recovers():
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "NAPARI_VIP_TOKEN": TOKEN}
    proc = start_server_process(port, env)
    died = []
    client = RemoteClient(f"http://127.0.0.1:{port}", TOKEN, on_worker_died=died.append)
    try:
        rec = Recorder()
        job = rec.submit(client, SelfTestRequest(steps=1000, step_seconds=0.01))
        while not rec.progress:
            client.poll()
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        client.wait(job, 30)
        assert not rec.done and [f.kind for f in rec.errors] == ["crash"] and died
        assert "next request" in rec.errors[0].message
        proc = start_server_process(port, env)
        assert run_remote(client, SelfTestRequest(steps=1, tag="back")).tag == "back"
        assert client.restarts == 1
    finally:
        client.shutdown()
        proc.kill()
        proc.wait(10)


# -- the command line ----------------------------------------------------------------------------------------------
def test_cli_classify_with_server_equals_local(server, tiny_clip_checkpoint, tmp_path, capsys, monkeypatch):
    import json

    from PIL import Image

    from napari_vip.cli.main import main

    arch, ckpt = tiny_clip_checkpoint
    path = tmp_path / "img.png"
    Image.fromarray(image()).save(path)
    args = [ "classify", str(path), "--box", "40", "30", "90", "60", "--classes", "nodule", "normal",
            "--model", arch, "--checkpoint", ckpt, "--device", "cpu", "--json"]
    assert main(args) == 0
    local = json.loads(capsys.readouterr().out)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    assert main(args + ["--server", server[0], "--token-file", str(token_file)]) == 0
    remote = json.loads(capsys.readouterr().out)
    assert remote["provenance"].pop("server")["url"] == server[0]
    assert remote == local
    monkeypatch.setenv("NAPARI_VIP_TOKEN", "wrong")
    assert main(args + ["--server", server[0]]) == 2
    assert "token" in capsys.readouterr().err


def test_serve_refuses_a_network_address_without_a_token(monkeypatch, capsys):
    from napari_vip.cli.main import main
    from napari_vip.cli.serve import check_bind

    monkeypatch.delenv("NAPARI_VIP_TOKEN", raising=False)
    assert main(["serve", "--host", "0.0.0.0", "--port", "1"]) == 2
    assert "without a token" in capsys.readouterr().err
    check_bind("127.0.0.1", None)
    check_bind("::1", None)
    check_bind("0.0.0.0", "t")
