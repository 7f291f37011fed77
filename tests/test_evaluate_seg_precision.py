"""evaluate-seg in bfloat16: the table within 0.02 Dice of float32, the precision part of the records' identity
(a bf16 run never reuses fp32 records) and recorded in the provenance."""

from __future__ import annotations

import json

import pytest
from vlsm_fixtures import save_clipseg_folder, small_clipseg_arch, write_shapes_dataset

from napari_vip.core.errors import VipInputError
from napari_vip.models.vlsm import VlsmSpec
from napari_vip.worker.engine import Engine
from napari_vip.worker.finetune import FinetuneRequest
from napari_vip.worker.segmentation_eval import run as es


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny CLIPSeg fine-tuned (fp32) on discs and squares, so the evaluated masks mean something."""
    import torch

    root = tmp_path_factory.mktemp("es_prec")
    shapes = write_shapes_dataset(root / "shapes", {"train": 24, "val": 6, "test": 8})
    base = save_clipseg_folder(root / "base", small_clipseg_arch(), input_size=64)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        Engine().run(FinetuneRequest(str(shapes), VlsmSpec("clipseg", source=str(base), precision="fp32"),
                                     str(root / "ft"), recipe={"prompt": "p1", "epochs": 20, "batch_size": 8,
                                                                 "lr": 3e-3}, activations="", device="cpu"))
    finally:
        torch.set_num_threads(n)
    return shapes, root / "ft", root


def _cli(shapes, folder, out, precision, capsys):
    from napari_vip.cli.main import main

    rc = main(["evaluate-seg", str(shapes), "--models", f"ft={folder}", "--prompts", "p1", "p2", "--split", "test",
               "--bootstrap", "20", "--device", "cpu", "--precision", precision, "--out", str(out), "--json"])
    assert rc == 0
    return json.loads(capsys.readouterr().out)


def test_bf16_table_within_002_of_fp32_and_records_not_shared(trained, capsys):
    shapes, folder, root = trained
    r32 = _cli(shapes, folder, root / "e32", "fp32", capsys)
    r16 = _cli(shapes, folder, root / "e16", "bf16", capsys)
    for pt in ("p1", "p2"):
        d32, d16 = r32["table"]["ft"][pt]["dice"], r16["table"]["ft"][pt]["dice"]
        with capsys.disabled():
            print(f"{pt}: Dice fp32 {d32:.4f} bf16 {d16:.4f}")
        assert abs(d32 - d16) <= 0.02, (pt, d32, d16)
    assert r32["table"]["ft"]["p1"]["dice"] >= 0.7  # a trained model: the comparison means something
    # provenance: each row's model ran in its precision; the run records it per label
    assert r32["models"][0]["provenance"]["precision"] == "fp32"
    assert r16["models"][0]["provenance"]["precision"] == "bf16"
    assert r16["provenance"]["model_precision"] == {"ft": "bf16"}
    assert json.loads((root / "e16" / "records" / "ft.json").read_text())["model"]["precision"] == "bf16"
    assert json.loads((root / "e16" / "records" / "ft.provenance.json").read_text())["precision"] == "bf16"
    # the fp32 folder again in fp32: everything resumed; in bf16: refused, never reused
    again = _cli(shapes, folder, root / "e32", "fp32", capsys)
    assert again["resumed"] == 16 * 2 and again["table"] == r32["table"]
    spec = VlsmSpec("clipseg", str(folder), precision="bf16")
    req = es.EvaluateSegRequest(str(shapes), (es.SegModelEntry("ft", spec, "fine-tuned"),), ("p1", "p2"), "test",
                                str(root / "e32"), bootstrap=0, device="cpu")
    with pytest.raises(VipInputError, match="other settings"):
        Engine().run(req)


def test_auto_means_fp32_here_in_the_records_identity(trained, capsys):
    """``auto`` is resolved before it enters the records' identity: an ``auto`` run on a CPU without bf16
    instructions resumes an explicit fp32 run's records (and would not on a CPU where auto is bf16)."""
    from napari_vip.models.precision import cpu_runs_bf16

    if cpu_runs_bf16():
        pytest.skip("this CPU runs bfloat16: auto means bf16 here")
    shapes, folder, root = trained
    _cli(shapes, folder, root / "auto", "fp32", capsys)
    again = _cli(shapes, folder, root / "auto", "auto", capsys)
    assert again["resumed"] == 16 * 2 and again["models"][0]["provenance"]["precision"] == "fp32"


def test_records_of_another_precision_are_refused(tmp_path):
    """The provenance check keys the records on (weights sha256, precision); old records without a precision
    were made in fp32."""
    store = es.RecordStore(tmp_path, "m", {"model": {"family": "clipseg"}})
    store.check_provenance({"weights_sha256": "a" * 64}, "m")  # an older run: no precision recorded
    store.add({"sample_id": "s", "prompt_type": "p1", "dice": 1.0, "iou": 1.0}, None)
    again = es.RecordStore(tmp_path, "m", {"model": {"family": "clipseg"}})
    again.check_provenance({"weights_sha256": "a" * 64, "precision": "fp32"}, "m")
    with pytest.raises(VipInputError, match="made in fp32, this run is in bf16"):
        es.RecordStore(tmp_path, "m", {"model": {"family": "clipseg"}}).check_provenance(
            {"weights_sha256": "a" * 64, "precision": "bf16"}, "m")
