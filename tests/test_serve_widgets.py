"""The docks' "remote server…" device: URL remembered without the token, requests routed to the server."""

import time
from pathlib import Path

import numpy as np
from test_serve import TOKEN, running_server

from napari_vip.models.spec import ModelSpec
from napari_vip.serve.app import ServerConfig
from napari_vip.serve.policy import ServerPolicy
from napari_vip.worker.classify import ClassifyRequest


def test_remote_settings_remember_the_url_but_never_the_token(tmp_path, monkeypatch):
    from napari_vip.widgets.remote_server import RemoteSettings

    monkeypatch.setenv("NAPARI_VIP_CONFIG_DIR", str(tmp_path))
    RemoteSettings().set("http://gpu:8765/", TOKEN)
    again = RemoteSettings()
    assert again.url == "http://gpu:8765" and again.token is None
    assert TOKEN not in "".join(p.read_text() for p in tmp_path.rglob("*") if p.is_file())
    assert TOKEN not in repr(again)


def test_device_box_offers_the_remote_server(qtbot):
    from napari_vip.widgets.remote_server import REMOTE_DEVICE, device_combo

    combo = device_combo()
    assert combo.itemText(combo.count() - 1) == REMOTE_DEVICE


def test_bridge_sends_remote_device_requests_to_the_server(qtbot, tiny_clip_checkpoint, monkeypatch, tmp_path):
    from napari_vip.widgets import remote_server
    from napari_vip.widgets.worker_bridge import WorkerBridge

    monkeypatch.setenv("NAPARI_VIP_CONFIG_DIR", str(tmp_path))
    arch, ckpt = tiny_clip_checkpoint
    config = ServerConfig(token=TOKEN, policy=ServerPolicy("cpu", [str(Path(arch).parent), str(Path(ckpt).parent)]))
    with running_server(config) as (url, app):
        monkeypatch.setattr(remote_server, "SETTINGS", remote_server.RemoteSettings())
        remote_server.SETTINGS.set(url, TOKEN)
        bridge = WorkerBridge()
        done, errors = [], []
        img = np.zeros((64, 64, 3), np.uint8)
        req = ClassifyRequest(img, [], ["a", "b"], ModelSpec(arch, checkpoint=ckpt), device=remote_server.REMOTE_DEVICE)
        bridge.submit(req, "VIP classify", done.append, errors.append, channel="classify")
        end = time.monotonic() + 60
        while not (done or errors) and time.monotonic() < end:
            bridge._poll()
            time.sleep(0.01)
        bridge.shutdown()
        assert not errors, errors
        assert done[0].provenance.extra["server"]["url"] == url
        assert not bridge.client.alive  # the local worker was never needed
        assert app.state.scheduler.status()["jobs_finished"] == 1
