"""The "VIP evaluate" dock: runs in the worker process, shows metrics, plot and clickable per-sample rows."""

from __future__ import annotations

import numpy as np


def test_evaluate_dock_runs_and_opens_a_sample_with_its_marker(make_viewer, qtbot, tmp_path,
                                                               tiny_clip_checkpoint):
    from test_evaluate import make_set

    from napari_vip.widgets.evaluate import EvaluateWidget

    arch, ckpt = tiny_clip_checkpoint
    viewer = make_viewer()
    w = EvaluateWidget(viewer)
    assert w.run() is None and "labelled data" in w.status.text()
    w.data.setText(str(make_set(tmp_path / "d", n=6)))
    w.out.setText(str(tmp_path / "out"))
    for name, box in w.checks.items():
        box.setChecked(name in ("none", "circle+text"))
    w.bootstrap.setValue(5)
    w.model.source.setCurrentText("checkpoint file")
    w.model.arch.setText(arch)
    w.model.path.setText(ckpt)
    w.model.device.setCurrentText("cpu")
    assert w.run() is not None
    qtbot.waitUntil(lambda: w.last_result is not None, timeout=120_000)
    assert [w.metrics.item(r, 0).text() for r in range(2)] == ["none", "circle+text"]
    assert not w.plot.pixmap().isNull()
    assert w.samples.rowCount() == 12
    row = next(r for r in range(12) if w.samples.item(r, 2).text() == "circle+text")
    image = w.open_row(row)
    sample = w.last_result.samples[w._rows[row][1]]
    assert image.data.shape[:2] == (64, 64)
    markers = viewer.layers["VIP markers"]
    assert markers.shape_type[-1] == "ellipse" and markers.features["style"].iloc[-1] == "circle"
    x0, y0 = sample.box_xyxy[:2]
    np.testing.assert_allclose(markers.data[-1].min(0), [y0, x0])
    w.bridge.shutdown()
