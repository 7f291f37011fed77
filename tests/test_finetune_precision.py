"""Fine-tuning with the frozen vision encoder in bfloat16: float32 master and saved weights, its own stored
activations, a held-out Dice close to the float32 run's, and precision recorded."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_vip.models.vlsm import VlsmSpec, load_vlsm
from napari_vip.worker.engine import Engine
from napari_vip.worker.finetune import FinetuneRequest

#: Largest |held-out Dice (bf16 encoder) - held-out Dice (fp32)| accepted.  Measured on this test's data (48
#: training pairs, 30 epochs, CPU without bf16 instructions, one thread): seed 42 (this test) fp32 0.9265 / bf16
#: 0.9304 (|diff| 0.0039); seed 43 0.9385 / 0.9376 (0.0009); seed 44 0.9276 / 0.9369 (0.0093).  The float32 runs
#: of the three seeds alone spread over 0.012: bfloat16's rounding of the activations (relative 2**-8) moves the
#: result about as much as another seed does.  0.02 is about twice the largest difference measured and still far
#: below what a broken encoder costs (the starting model scores < 0.5).
DICE_TOLERANCE = 0.02
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _held_out_dice(model, root) -> float:
    """Mean Dice over the test split, each image prompted with the shape its mask shows (float32 inference)."""
    from napari_vip.io.datasets import load_sample, read_seg_dataset

    dices = []
    for s in read_seg_dataset(root, "test"):
        rgb, mask = load_sample(s)
        pred = model.predict(rgb, s.prompts["p1"]).mask
        dices.append(2 * (pred & mask).sum() / max(1, pred.sum() + mask.sum()))
    return float(np.mean(dices))


@pytest.fixture(scope="module")
def runs(shapes, small_clipseg, tmp_path_factory):
    """The same 30-epoch fine-tuning in fp32 and with the encoder in bf16, sharing one activation folder."""
    import torch

    root = tmp_path_factory.mktemp("runs")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    out = {}
    try:
        for precision in ("fp32", "bf16"):
            res = Engine().run(FinetuneRequest(
                str(shapes), VlsmSpec("clipseg", source=str(small_clipseg), precision=precision),
                str(root / precision), recipe={"prompt": "p1", "epochs": 30, "batch_size": 8, "lr": 3e-3},
                activations=str(root / "acts"), device="cpu"))
            out[precision] = res
    finally:
        torch.set_num_threads(n)
    return root, out


def test_bf16_encoder_saves_float32_weights_and_the_base_encoder_unrounded(runs, small_clipseg):
    from safetensors.torch import load_file

    root, _ = runs
    saved = load_file(str(root / "bf16" / "model.safetensors"))
    assert {str(v.dtype) for v in saved.values() if v.is_floating_point()} == {"torch.float32"}
    base = load_vlsm(VlsmSpec("clipseg", source=str(small_clipseg), precision="fp32")).module.state_dict()
    vision = [k for k in saved if ".vision_model.encoder.layers." in k]
    assert vision
    # the frozen blocks ran in bfloat16 but are saved as loaded, bit for bit (not rounded to bfloat16)
    assert all(bool((saved[k] == base[k]).all()) for k in vision)
    import torch

    last = torch.load(str(root / "bf16" / "last.pt"), weights_only=True)["module"]
    assert {str(v.dtype) for v in last.values() if v.is_floating_point()} == {"torch.float32"}
    assert all(bool((last[k] == base[k]).all()) for k in vision)


def test_bf16_held_out_dice_is_within_tolerance_of_fp32(runs, shapes):
    root, _ = runs
    d32 = _held_out_dice(load_vlsm(VlsmSpec("clipseg", source=str(root / "fp32"), precision="fp32")), shapes)
    d16 = _held_out_dice(load_vlsm(VlsmSpec("clipseg", source=str(root / "bf16"), precision="fp32")), shapes)
    print(f"held-out Dice fp32 {d32:.4f} bf16 encoder {d16:.4f} |diff| {abs(d32 - d16):.4f}")
    assert d32 >= 0.8, d32
    assert abs(d16 - d32) <= DICE_TOLERANCE, (d32, d16)


def test_stored_activations_of_fp32_and_bf16_never_mix(runs):
    root, res = runs
    # the bf16 run found none of the fp32 run's activations in the shared folder: it encoded every image again
    assert res["fp32"].activations["encoded"] == 30 and res["bf16"].activations["encoded"] == 30
    assert len(list((root / "acts").rglob("*.npz"))) == 60
    from napari_vip.models.precision import apply_vlsm_precision
    from napari_vip.models.vlsm.activation_store import activation_key

    model = load_vlsm(VlsmSpec("clipseg", source=str(root / "fp32"), precision="fp32"))
    layers = model.module.extract_layers
    k32 = activation_key("ab" * 32, model.preprocessing_key(), model.weights_id, layers)
    apply_vlsm_precision(model, "bf16")
    k16 = activation_key("ab" * 32, model.preprocessing_key(), model.weights_id, layers)
    assert k32 != k16


def test_precision_is_recorded(runs):
    root, res = runs
    for precision, dtype in (("fp32", "float32"), ("bf16", "bfloat16")):
        want = {"encoder": precision, "encoder_dtype": dtype, "trained_dtype": "float32", "saved_dtype": "float32"}
        assert json.loads((root / precision / "config.json").read_text())["precision"] == want
        assert json.loads((root / precision / "provenance.json").read_text())["precision"] == want
        assert res[precision].provenance["precision"] == want
    # a bf16 folder is not resumed as an fp32 run (nor the other way)
    from napari_vip.models.vlsm.finetune import _signature

    model = load_vlsm(VlsmSpec("clipseg", source=str(root / "fp32"), precision="fp32"))
    from napari_vip.models.vlsm.finetune import Recipe

    assert _signature(model, Recipe(), "vlsm", "d", "bf16") != _signature(model, Recipe(), "vlsm", "d", "fp32")


def test_auto_is_fp32_on_a_cpu_without_bf16_and_a_cast_model_is_refused(small_clipseg):
    from napari_vip.core.errors import VipInputError
    from napari_vip.models.precision import apply_vlsm_precision, resolve_precision
    from napari_vip.models.vlsm.finetune import cast_frozen_encoder

    assert resolve_precision("auto", "cpu", "vlsm", cpu_flags_set={"avx2"}) == "fp32"
    model = load_vlsm(VlsmSpec("clipseg", source=str(small_clipseg), precision="fp32"))
    assert cast_frozen_encoder(model, "fp32", []) == {}
    apply_vlsm_precision(model, "bf16")
    with pytest.raises(VipInputError, match="float32"):
        cast_frozen_encoder(model, "bf16", [])
    with pytest.raises(VipInputError, match="auto"):
        cast_frozen_encoder(model, "auto", [])


def test_cli_finetune_takes_precision(shapes, small_clipseg, tmp_path, capsys):
    from napari_vip.cli.main import main

    rc = main(["finetune", str(shapes), "--vlsm-checkpoint", str(small_clipseg), "--prompt", "p1", "--epochs", "1",
               "--batch-size", "16", "--activations", "", "--out", str(tmp_path / "o"), "--device", "cpu",
               "--precision", "bf16", "--json"])
    assert rc == 0
    d = json.loads(capsys.readouterr().out)
    assert d["provenance"]["precision"]["encoder"] == "bf16"
    assert d["provenance"]["model"]["precision"] == "bf16"


def test_bf16_run_resumes_in_bf16_only(shapes, small_clipseg, tmp_path):
    """An interrupted bf16-encoder run resumes to the uninterrupted run's history; fp32 does not resume it."""
    from napari_vip.core.errors import VipInputError
    from napari_vip.worker.engine import ProgressReporter
    from napari_vip.worker.protocol import Cancelled

    def run(out, precision="bf16", progress=None):
        return Engine().run(FinetuneRequest(
            str(shapes), VlsmSpec("clipseg", source=str(small_clipseg), precision=precision), str(out),
            recipe={"prompt": "p1", "epochs": 2, "batch_size": 16, "lr": 3e-3}, activations="", device="cpu"),
            ProgressReporter(progress))

    def stop_after_one(done, total, text="", data=None):
        if data and data.get("epoch", {}).get("epoch") == 1:
            raise Cancelled()

    full = run(tmp_path / "full")
    with pytest.raises(Cancelled):
        run(tmp_path / "cut", progress=stop_after_one)
    resumed = run(tmp_path / "cut")
    assert resumed.resumed_from == 1
    assert [h["val_dice"] for h in resumed.history] == pytest.approx([h["val_dice"] for h in full.history], abs=1e-6)
    with pytest.raises(VipInputError, match="another run"):
        run(tmp_path / "cut", precision="fp32")
