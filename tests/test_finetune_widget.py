"""The "VIP finetune" dock: trains a tiny CLIPSeg in the worker with a point per epoch on its plot, writes a folder
that loads, cancels, refuses bad input, and (CoTexNet) trains on the sentences as edited in its table."""

from __future__ import annotations

import csv

import pytest

pytest.importorskip("transformers")
pytest.importorskip("monai")

from vlsm_fixtures import write_shapes_dataset  # noqa: E402


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return write_shapes_dataset(tmp_path_factory.mktemp("shapes"), {"train": 4, "val": 2})


def _dock(make_viewer, shapes, small_clipseg, out, epochs=3):
    from napari_vip.widgets.finetune import SOURCES, FinetuneWidget

    w = FinetuneWidget(make_viewer())
    w.activations = ""  # memory only: nothing written to the user cache
    w.data.setText(str(shapes))
    w.out.setText(str(out))
    w.source.setCurrentText(SOURCES[1])
    w.checkpoint.setText(str(small_clipseg))
    w.device.setCurrentText("cpu")
    w.prompt.setCurrentText("p1")
    w.epochs.setText(str(epochs))
    w.batch.setText("4")
    w.lr.setText("3e-3")
    return w


def test_dock_trains_plots_each_epoch_and_saves_a_loadable_folder(make_viewer, qtbot, shapes, small_clipseg,
                                                                  tmp_path):
    from napari_vip.models.vlsm import VlsmSpec, load_vlsm

    out = tmp_path / "ft"
    w = _dock(make_viewer, shapes, small_clipseg, out)
    seen = []
    orig = w.on_progress
    w.on_progress = lambda msg: (seen.append(msg.data) if msg.data else None, orig(msg))
    try:
        assert w.train() is not None and w.cancel_btn.isEnabled()
        qtbot.waitUntil(lambda: w.last_result is not None or "Failed" in w.status.text(), timeout=300_000)
        assert w.last_result is not None, w.status.text()
        assert len(w.last_result.history) == 3 and w.last_result.recipe["prompt"] == "p1"
        assert [e for e, _ in w.plot.points["train_loss"]] == [1, 2, 3]
        assert [e for e, _ in w.plot.points["val_dice"]] == [1, 2, 3]
        assert all(0.0 <= v <= 1.0 for _, v in w.plot.points["val_dice"])
        assert "Saved to" in w.status.text() and not w.cancel_btn.isEnabled()
        tuned = load_vlsm(VlsmSpec("clipseg", source=str(out)))
        assert tuned.method == "vlsm" and tuned.provenance()["weights_sha256"]
    finally:
        w.bridge.shutdown()


def test_cancel_stops_the_run(make_viewer, qtbot, shapes, small_clipseg, tmp_path):
    w = _dock(make_viewer, shapes, small_clipseg, tmp_path / "ft", epochs=500)
    try:
        w.train()
        qtbot.waitUntil(lambda: len(w.plot.points.get("train_loss", [])) >= 1, timeout=300_000)
        w.cancel()
        qtbot.waitUntil(lambda: not w.cancel_btn.isEnabled(), timeout=120_000)
        assert w.last_result is None and len(w.plot.points["train_loss"]) < 500
        assert (tmp_path / "ft" / "last.pt").is_file()  # what resume starts from
    finally:
        w.bridge.shutdown()


def test_bad_input_says_what_to_do_and_changes_nothing(make_viewer, tmp_path, small_clipseg):
    from napari_vip.widgets.finetune import FinetuneWidget

    w = FinetuneWidget(make_viewer())
    try:
        assert w.train() is None and "Choose the data set" in w.status.text()
        w.data.setText(str(tmp_path / "missing"))
        w.out.setText(str(tmp_path / "out"))
        assert w.train() is None and "does not exist" in w.status.text() and "missing" in w.status.text()
        assert w.make_sentences() is None
        w.data.setText(str(tmp_path))
        w.epochs.setText("ten")
        assert w.train() is None and "not a number" in w.status.text()
        assert not (tmp_path / "out").exists() and not w.plot.points and w._job is None
    finally:
        w.bridge.shutdown()


def test_edited_sentences_reach_the_csv_and_the_request(make_viewer, qtbot, shapes, small_clipseg, tmp_path):
    from napari_vip.core.region_attributes import read_sentence_csv

    out = tmp_path / "cx"
    w = _dock(make_viewer, shapes, small_clipseg, out)
    try:
        w.method.setCurrentText("cotexnet")
        assert w.keyword.isEnabled() and not w.prompt.isEnabled()
        assert "(16)" in w.batch.placeholderText()  # CoTexNet's released batch
        w.keyword.setText("shape")
        assert w.make_sentences() is not None
        qtbot.waitUntil(lambda: w.table.rowCount() > 0 or "Failed" in w.status.text(), timeout=120_000)
        assert w.table.rowCount() == 8, w.status.text()  # 4 images x (disc, square)
        sid = w.table.item(2, 0).text()
        assert "shape" in w.table.item(2, 1).text()
        w.table.item(2, 1).setText("a round shape I wrote myself")
        req = w.build_request()
        assert req.method == "cotexnet" and req.method_options["sentences"] == str(out / "sentences.csv")
        table = read_sentence_csv(out / "sentences.csv")
        assert table[sid] == "a round shape I wrote myself" and len(table) == 8
        with open(out / "sentences.csv", newline="") as f:
            rows = {r["sample_id"]: r for r in csv.DictReader(f)}
        other = w.table.item(0, 0).text()
        assert rows[other]["number"] and not rows[sid]["number"]  # measured attributes kept where not edited
        w.epochs.setText("1")
        assert w.train() is not None  # CoTexNet trains on the edited table
        qtbot.waitUntil(lambda: w.last_result is not None or "Failed" in w.status.text(), timeout=300_000)
        assert w.last_result is not None, w.status.text()
        assert w.last_result.method == "cotexnet" and len(w.plot.points["val_dice"]) == 1
    finally:
        w.bridge.shutdown()
