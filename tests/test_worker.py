"""The background worker process: round trip, progress, cancel, newest-wins, failures and recovery."""

import os
import signal

import numpy as np
import pytest
from job_recorder import Recorder

from napari_vip.models.spec import ModelSpec
from napari_vip.worker.classify import ClassifyRequest, ClassifyResult
from napari_vip.worker.client import WorkerClient
from napari_vip.worker.selftest import SelfTestRequest, SelfTestResult


@pytest.fixture
def client():
    c = WorkerClient()
    c.start()
    yield c
    c.shutdown()


def test_round_trip_runs_in_another_process_with_progress(client):
    rec = Recorder()
    job = rec.submit(client, SelfTestRequest(steps=3, tag="hello"))
    client.wait(job, timeout=60)
    assert not rec.errors
    (result,) = rec.done
    assert isinstance(result, SelfTestResult) and result.tag == "hello"
    assert result.pid != os.getpid() and result.pid == client.pid
    assert [p.done for p in rec.progress] == [0, 1, 2, 3]
    assert all(p.total == 3 for p in rec.progress)


def test_cancel_stops_a_running_job(client):
    rec = Recorder()
    job = rec.submit(client, SelfTestRequest(steps=500, step_seconds=0.02))
    while not rec.progress:
        client.poll()
    client.cancel(job)
    client.wait(job, timeout=30)
    assert not rec.done
    assert [f.kind for f in rec.errors] == ["cancelled"]
    assert len(rec.progress) < 500


def test_newest_request_on_a_channel_wins(client):
    rec = Recorder()
    first = rec.submit(client, SelfTestRequest(steps=200, step_seconds=0.02, tag="old"), channel="classify")
    while not rec.progress:
        client.poll()
    middle = rec.submit(client, SelfTestRequest(steps=1, tag="middle"), channel="classify")
    last = rec.submit(client, SelfTestRequest(steps=1, tag="new"), channel="classify")
    client.wait(last, timeout=60)
    assert [r.tag for r in rec.done] == ["new"]
    assert not rec.errors  # replaced jobs are dropped silently
    assert first not in client._pending and middle not in client._pending


def test_other_channels_are_not_replaced(client):
    rec = Recorder()
    a = rec.submit(client, SelfTestRequest(steps=2, tag="a"), channel="segment")
    b = rec.submit(client, SelfTestRequest(steps=2, tag="b"), channel="classify")
    client.wait(a, timeout=60)
    client.wait(b, timeout=60)
    assert sorted(r.tag for r in rec.done) == ["a", "b"]


@pytest.mark.parametrize("fail,kind", [("input", "input"), ("error", "error"), ("memory", "memory")])
def test_failures_are_reported_and_the_worker_keeps_serving(client, fail, kind):
    rec = Recorder()
    job = rec.submit(client, SelfTestRequest(steps=1, fail=fail))
    client.wait(job, timeout=60)
    assert [f.kind for f in rec.errors] == [kind]
    assert "as asked" in rec.errors[0].message
    pid = client.pid
    again = rec.submit(client, SelfTestRequest(steps=1, tag="after"))
    client.wait(again, timeout=60)
    assert rec.done[-1].tag == "after" and client.pid == pid


def test_killed_worker_is_reported_and_the_next_request_starts_a_fresh_one(client):
    rec = Recorder()
    died = []
    client.on_worker_died = died.append
    job = rec.submit(client, SelfTestRequest(steps=1000, step_seconds=0.02))
    while not rec.progress:
        client.poll()
    old_pid = client.pid
    os.kill(old_pid, signal.SIGKILL)
    client.wait(job, timeout=30)
    assert [f.kind for f in rec.errors] == ["crash"]
    assert "stopped unexpectedly" in rec.errors[0].message and "untouched" in rec.errors[0].message
    assert died and not client.alive
    again = rec.submit(client, SelfTestRequest(steps=1, tag="fresh"))
    client.wait(again, timeout=60)
    assert rec.done[-1].tag == "fresh" and client.pid != old_pid and client.restarts == 1


def test_worker_that_exits_mid_job_is_recovered(client):
    rec = Recorder()
    job = rec.submit(client, SelfTestRequest(steps=1, fail="exit"))
    client.wait(job, timeout=30)
    assert [f.kind for f in rec.errors] == ["crash"]
    again = rec.submit(client, SelfTestRequest(steps=1, tag="ok"))
    client.wait(again, timeout=60)
    assert rec.done[-1].tag == "ok"


def test_classify_through_the_worker(client, tiny_clip_checkpoint):
    arch, path = tiny_clip_checkpoint
    rec = Recorder()
    img = (np.random.default_rng(0).random((40, 50, 3)) * 255).astype(np.uint8)
    job = rec.submit(client, ClassifyRequest(img, [], ["a", "b"], ModelSpec(arch, checkpoint=path), device="cpu"))
    client.wait(job, timeout=120)
    assert not rec.errors, rec.errors
    (res,) = rec.done
    assert isinstance(res, ClassifyResult)
    assert res.conditions[0].probabilities.shape == (2,)
    assert abs(res.conditions[0].probabilities.sum() - 1) < 1e-6


def test_bad_input_in_the_worker_comes_back_as_a_message(client, tiny_clip_arch):
    rec = Recorder()
    img = np.zeros((40, 50, 3), np.uint8)
    job = rec.submit(client, ClassifyRequest(img, [], ["a", "A"], ModelSpec(tiny_clip_arch, untrained=True)))
    client.wait(job, timeout=60)
    assert rec.errors[0].kind == "input" and "Duplicate" in rec.errors[0].message


def test_selftest_command_checks_the_worker(capsys):
    import json

    from napari_vip.cli.main import main

    assert main(["selftest", "--device", "cpu", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["ok"] and d["cancel_works"] and d["progress_messages"] == 4 and d["device"] == "cpu"
    assert d["worker_pid"] != os.getpid()
