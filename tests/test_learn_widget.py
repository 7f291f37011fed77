"""The "VIP learn" dock: trains in the worker process, plots epochs live, shows the comparison table."""

from __future__ import annotations

import json

import numpy as np


def _folder(root, n=6):
    from PIL import Image

    rng = np.random.default_rng(0)
    for name, low in (("dark", 0), ("bright", 180)):
        (root / name).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(low, low + 76, (32, 32)).astype(np.uint8)).save(root / name / f"{i}.png")
    return root


def test_learn_dock_trains_and_saves(make_viewer, qtbot, tmp_path, tiny_clip_checkpoint):
    from napari_vip.models.training import LearnedPrompts
    from napari_vip.widgets.learn import LearnWidget

    arch, ckpt = tiny_clip_checkpoint
    viewer = make_viewer()
    w = LearnWidget(viewer)
    assert w.train() is None and "labelled images" in w.status.text()  # nothing chosen yet
    lib = tmp_path / "lib.json"
    lib.write_text(json.dumps({"version": 1, "classes": {"dark": ["dark"], "bright": ["bright", "white"]}}))
    w.data.setText(str(_folder(tmp_path / "data")))
    w.descriptors.setText(str(lib))
    w.out.setText(str(tmp_path / "p.pt"))
    w.epochs.setValue(3)
    w.batch.setValue(4)
    w.compare.setChecked(True)
    w.model.source.setCurrentText("checkpoint file")
    w.model.arch.setText(arch)
    w.model.path.setText(ckpt)
    w.model.device.setCurrentText("cpu")
    assert w.train() is not None
    qtbot.waitUntil(lambda: w.last_result is not None, timeout=300_000)  # a shared CPU
    assert w.table.rowCount() == 4  # two zero-shot rows, ViP, CoOp
    assert {w.table.item(r, 0).text() for r in range(4)} >= {"ViP (context + merge prompts)"}
    assert len(w.plot.points[("vip", "loss")]) == 3 and ("coop", "val_acc") in w.plot.points
    assert LearnedPrompts.load(tmp_path / "p.pt").method == "vip"
    assert "Saved to" in w.status.text()
    w.bridge.shutdown()


def test_recipe_choice_fills_the_fields_and_the_request(make_viewer, tmp_path):
    from napari_vip.widgets.learn import LearnWidget

    w = LearnWidget(make_viewer())
    w.data.setText(str(tmp_path))
    w.model.source.setCurrentText("untrained (random weights)")
    assert w.build_request().preset == "project" and w.epochs.value() == 10
    w.preset.setCurrentText("released")
    assert (w.epochs.value(), w.lr.value(), w.batch.value()) == (50, 0.002, 32)
    req = w.build_request()
    assert req.preset == "released" and req.config["epochs"] == 50
    from napari_vip.models.training import TrainConfig

    assert TrainConfig.from_preset(req.preset, **req.config).overrides() == {}  # the dock changes nothing
    w.preset.setCurrentText("project")
    assert w.epochs.value() == 10
    w.bridge.shutdown()


def test_plot_reads_epoch_records(make_viewer):
    from napari_vip.models.training import EpochRecord, epoch_data
    from napari_vip.widgets.learn import LearnWidget
    from napari_vip.worker.protocol import Progress

    w = LearnWidget(make_viewer())
    record = epoch_data("vip", EpochRecord(2, 0.001, 0.5, 0.75, val_loss=0.6, val_accuracy=0.7), 5)
    w.on_progress(Progress(1, 2, 5, "vip epoch 2/5 loss 0.5000 acc 0.7500 val_loss 0.6000 val_acc 0.7000",
                           {"epoch": record}))
    w.on_progress(Progress(1, 2, 5, "vip epoch 3/5 loss 0.1 acc 0.9"))  # text alone is not parsed
    assert w.plot.points[("vip", "val_acc")] == [(2, 0.7)]
    assert w.plot.epochs == 5
    w.plot.repaint()
    w.bridge.shutdown()
