"""The viewer's shared settings: written by one dock, read by another, no dock reaching into another."""

import gc

import pytest

from napari_vip.core.prompts import DEFAULT_FINDINGS
from napari_vip.worker.viewer_settings import ViewerSettings


def test_update_sets_fields_names_the_writer_and_calls_listeners():
    s = ViewerSettings()
    assert s.findings == DEFAULT_FINDINGS["chest x-ray"] and s.source is None
    seen = []

    class Dock:
        def on_settings(self, settings):
            seen.append(list(settings.findings))

    dock = Dock()
    s.connect(dock.on_settings)
    s.update("classify", findings=["nodule", "normal"], color="green")
    assert s.source == "classify" and s.color == "green" and seen == [["nodule", "normal"]]
    del dock
    gc.collect()
    s.update("classify", findings=["a"])  # a closed dock is neither kept alive nor called
    assert seen == [["nodule", "normal"]] and s._listeners == []


def test_unknown_fields_and_colours_are_refused_or_reset():
    s = ViewerSettings()
    with pytest.raises(AttributeError, match="no field 'colour'"):
        s.update("classify", colour="red")
    s.update("classify", color="chartreuse")
    assert s.color == "red"
