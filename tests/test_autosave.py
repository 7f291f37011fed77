"""Autosave survives a killed process: a new process restores the last complete save."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from napari_vip.io.autosave import Autosave, image_key

WRITER = textwrap.dedent("""
    import sys, numpy as np
    from napari_vip.io.autosave import Autosave, image_key
    image = np.arange(6 * 40 * 50, dtype=np.int16).reshape(6, 40, 50)
    key, saver = image_key(image), Autosave(keep=2)
    n = 0
    while True:
        n += 1
        labels = np.zeros(image.shape, np.uint8)
        labels[n % 6, 5:5 + n % 30, 3:20] = 1 + n % 3
        saver.save(key, labels, [{"n": n, "object": 1 + n % 3, "box_xyxy": [3, 5, 19, 4 + n % 30]}],
                   {1 + n % 3: f"object {n}"})
        print(n, flush=True)
""")


def test_restore_after_sigkill(tmp_path):
    env = dict(os.environ, NAPARI_VIP_AUTOSAVE=str(tmp_path), PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.Popen([sys.executable, "-c", WRITER], stdout=subprocess.PIPE, env=env, text=True)
    try:
        seen = [int(proc.stdout.readline()) for _ in range(5)]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    assert seen == [1, 2, 3, 4, 5]
    restore = textwrap.dedent("""
        import json, numpy as np
        from napari_vip.io.autosave import Autosave, image_key
        image = np.arange(6 * 40 * 50, dtype=np.int16).reshape(6, 40, 50)
        e = Autosave().latest(image_key(image))
        np.save({out!r}, e.labels)
        print(json.dumps(e.records))
    """).format(out=str(tmp_path / "restored.npy"))
    out = subprocess.run([sys.executable, "-c", restore], env=env, capture_output=True, text=True, check=True)
    n = __import__("json").loads(out.stdout)[0]["n"]
    assert n >= 5  # the last save reported before the kill, or one completed after it
    expected = np.zeros((6, 40, 50), np.uint8)
    expected[n % 6, 5:5 + n % 30, 3:20] = 1 + n % 3
    assert np.array_equal(np.load(tmp_path / "restored.npy"), expected)
    assert len(list(tmp_path.rglob("[0-9]*.npz"))) <= 2


def test_keys_names_and_clear(tmp_path):
    saver = Autosave(tmp_path, keep=1)
    a, b = np.zeros((3, 4), np.int16), np.ones((3, 4), np.int16)
    assert image_key(a) != image_key(b) and image_key(a) != image_key(a.astype(np.int32))
    assert saver.latest(image_key(a)) is None
    saver.save(image_key(a), np.eye(3, 4, dtype=np.uint8), [{"slice": 0}], {1: "nodule"})
    (tmp_path / image_key(a) / "99999999999999999999.npz").write_bytes(b"truncated")  # a broken newest file
    e = saver.latest(image_key(a))
    assert e.names == {1: "nodule"} and e.records == [{"slice": 0}] and np.array_equal(e.labels, np.eye(3, 4))
    saver.clear(image_key(a))
    assert saver.latest(image_key(a)) is None
    with pytest.raises(ValueError):
        saver.save("../escape", a)


def test_background_saves_write_a_snapshot_in_order_and_keys_are_hashed_once(tmp_path, monkeypatch):
    import napari_vip.io.autosave as autosave

    store = Autosave(tmp_path, keep=5)
    labels = np.zeros((4, 8, 8), np.int32)
    labels[1, 2:4, 2:4] = 1
    calls = []
    real = autosave.image_key
    monkeypatch.setattr(autosave, "image_key", lambda data: calls.append(1) or real(data))
    vol = np.arange(4 * 8 * 8, dtype=np.int16).reshape(4, 8, 8)
    key = autosave.cached_image_key(vol)
    assert autosave.cached_image_key(vol) == key == real(vol) and len(calls) == 1
    assert autosave.cached_image_key(vol.copy()) == key and len(calls) == 2  # another array: hashed again
    first = autosave.save_in_background(store, key, labels, [{"id": 1}])
    labels[2, 5:7, 5:7] = 2  # the next commit, before the first write may have run
    autosave.save_in_background(store, key, labels, [{"id": 1}, {"id": 2}])
    autosave.wait_for_saves()
    assert first.done()
    saves = sorted((tmp_path / key).glob("*.npz"))
    assert len(saves) == 2
    with np.load(saves[0]) as z:
        assert set(np.unique(z["labels"])) == {0, 1}  # the snapshot, not torn by the later change
    latest = store.latest(key)
    assert set(np.unique(latest.labels)) == {0, 1, 2} and [r["id"] for r in latest.records] == [1, 2]
