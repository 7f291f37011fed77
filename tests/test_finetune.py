"""Fine-tuning VLSMs: medvlsm's loss as released, the text decides the target, resume, stored activations, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_vip.models.vlsm import VlsmSpec, load_vlsm
from napari_vip.worker.engine import Engine
from napari_vip.worker.finetune import FinetuneRequest

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_released_loss_is_dice_of_probabilities_with_a_zero_ce_term():
    """medvlsm: ``loss_fn(F.sigmoid(logits), masks)`` with MONAI 1.1.0's DiceCELoss(1, 0.2): the one-channel
    cross-entropy is CrossEntropyLoss over a single class (0), so the loss is the soft Dice of the probabilities."""
    import torch

    from napari_vip.models.vlsm.finetune import Recipe, make_loss, released_dice_ce

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 1, 8, 8, generator=g)
    target = (torch.rand(3, 1, 8, 8, generator=g) > 0.6).float()
    p = torch.sigmoid(logits)
    inter = (p * target).sum(dim=(1, 2, 3))
    dice = 1 - (2 * inter + 1e-5) / (p.sum(dim=(1, 2, 3)) + target.sum(dim=(1, 2, 3)) + 1e-5)
    want = dice.mean()  # + 0.2 * 0
    got = released_dice_ce(logits, target)
    assert torch.allclose(got, want, atol=1e-6)
    assert torch.allclose(make_loss(Recipe())(logits, target), want, atol=1e-6)
    # the alternative: Dice of sigmoid(logits) + 0.2 * binary cross-entropy with logits
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    assert torch.allclose(make_loss(Recipe(loss="dice_bce"))(logits, target), want + 0.2 * bce, atol=1e-6)


def test_recipe_defaults_are_the_released_ones():
    from napari_vip.models.vlsm.finetune import Recipe

    r = Recipe.released("clipseg")
    assert (r.lr, r.batch_size, r.weight_decay, r.grad_clip, r.seed) == (0.002, 128, 1e-3, 0.5, 42)
    assert (r.plateau_factor, r.plateau_patience, r.early_stop_patience, r.early_stop_min_delta) == (0.1, 5, 20, 1e-4)
    assert (r.epochs, r.min_epochs, r.loss, r.train) == (1000, 10, "released", "decoder")
    assert Recipe.released("clipseg", lr=1e-3, batch_size=None).lr == 1e-3


def _test_dice(model, root, split="test"):
    """Per prompt: Dice with the named shape and the share of the other shape's pixels predicted."""
    from napari_vip.io.datasets import load_sample, read_seg_dataset

    dices, other = [], []
    samples = read_seg_dataset(root, split)
    by_image = {}
    for s in samples:
        by_image.setdefault(s.image_path, {})[s.prompts["p1"]] = s
    for group in by_image.values():
        for target, s in group.items():
            rgb, mask = load_sample(s)
            _, other_mask = load_sample(group["square" if target == "disc" else "disc"])
            pred = model.predict(rgb, s.prompts["p1"]).mask
            dices.append(2 * (pred & mask).sum() / (pred.sum() + mask.sum()))
            other.append((pred & other_mask).sum() / other_mask.sum())
    return float(np.mean(dices)), float(np.mean(other))


def test_the_text_decides_the_target(shapes, small_clipseg, tmp_path):
    """Each image holds a disc and a square; the prompt names one.  Fine-tuning the decoder with the released
    loss (small set: batch 8, lr 3e-3) lifts held-out Dice from the starting model's to >= 0.8, and the shape
    not named is left out."""
    start = load_vlsm(VlsmSpec("clipseg", source=str(small_clipseg)))
    dice0, _ = _test_dice(start, shapes)
    out = tmp_path / "ft"
    res = Engine().run(FinetuneRequest(str(shapes), VlsmSpec("clipseg", source=str(small_clipseg)), str(out),
                                       recipe={"prompt": "p1", "epochs": 30, "batch_size": 8, "lr": 3e-3},
                                       activations=str(tmp_path / "acts"), device="cpu"))
    assert res.n_train == 48 and res.n_val == 12 and len(res.history) == 30
    tuned = load_vlsm(VlsmSpec("clipseg", source=str(out)))
    assert tuned.method == "vlsm" and tuned.provenance()["weights_sha256"]
    dice1, other = _test_dice(tuned, shapes)
    assert dice0 < 0.5 and dice1 >= 0.8, (dice0, dice1)
    assert other < 0.1, other
    # output folder: weights, config, provenance, history
    cfg = json.loads((out / "config.json").read_text())
    prov = json.loads((out / "provenance.json").read_text())
    assert cfg["family"] == "clipseg" and cfg["method"] == "vlsm" and cfg["recipe"]["lr"] == 3e-3
    assert prov["prompt_type"] == "p1" and len(prov["data_sha256"]) == 64 and prov["epochs_run"] == 30
    assert prov["best_epoch"] == res.best_epoch
    assert json.loads((out / "history.json").read_text())[-1]["epoch"] == 30
    assert res.activations["stored"] and res.activations["encoded"] == 24 + 6  # each image once


def _run(shapes, folder, out, epochs, progress=None, **recipe):
    req = FinetuneRequest(str(shapes), VlsmSpec("clipseg", source=str(folder)), str(out),
                          recipe={"prompt": "p1", "epochs": epochs, "batch_size": 8, "lr": 3e-3, **recipe},
                          activations="", device="cpu")
    from napari_vip.worker.engine import ProgressReporter

    return Engine().run(req, ProgressReporter(progress))


def _weights(out):
    """The last epoch's weights (``last.pt``, as ``torch.load(weights_only=True)`` reads it)."""
    import torch

    return torch.load(str(out / "last.pt"), weights_only=True)["module"]


def test_interrupted_run_resumes_with_nothing_lost(shapes, small_clipseg, tmp_path):
    import torch

    from napari_vip.worker.protocol import Cancelled

    full = _run(shapes, small_clipseg, tmp_path / "full", 3)
    epochs_seen = []

    def stop_after_two(done, total, text="", data=None):
        if data and "epoch" in data:
            epochs_seen.append(data["epoch"]["epoch"])
            if data["epoch"]["epoch"] == 2:
                raise Cancelled()

    with pytest.raises(Cancelled):
        _run(shapes, small_clipseg, tmp_path / "cut", 3, progress=stop_after_two)
    assert epochs_seen == [1, 2]
    resumed = _run(shapes, small_clipseg, tmp_path / "cut", 3)
    assert resumed.resumed_from == 2 and len(resumed.history) == 3
    for a, b in zip(full.history, resumed.history):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-6)
        assert a["val_dice"] == pytest.approx(b["val_dice"], abs=1e-6)
    wa, wb = _weights(tmp_path / "full"), _weights(tmp_path / "cut")
    assert all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)
    # another run's folder is not resumed silently
    from napari_vip.core.errors import VipInputError

    with pytest.raises(VipInputError, match="another run"):
        _run(shapes, small_clipseg, tmp_path / "cut", 3, lr=1e-3)


def test_stored_activations_train_as_recomputed_ones(shapes, small_clipseg, tmp_path):

    _run(shapes, small_clipseg, tmp_path / "stored", 1)
    _run(shapes, small_clipseg, tmp_path / "recomputed", 1, store_activations=False)
    wa, wb = _weights(tmp_path / "stored"), _weights(tmp_path / "recomputed")
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) <= 1e-5


def test_ddp_two_processes_equal_one(shapes, small_clipseg, tmp_path):
    """torchrun --nproc_per_node 2 (gloo on the CPU) gives the weights of one process with the same global batch
    (7, split 4 + 3).  The one process splits each batch as the two do (``--micro-batches 2``, accumulated): a
    plain 7-sample step is the same gradient up to float rounding, which AdamW turns into weight differences of
    ~1e-2 where gradients are tiny (its update is ~lr * sign(g))."""
    import os
    import socket
    import subprocess
    import sys


    def run(n, out):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={n}", "--master_addr=127.0.0.1",
               f"--master_port={port}", "-m", "napari_vip.cli.main", "finetune", str(shapes), "--vlsm-checkpoint",
               str(small_clipseg), "--prompt", "p1", "--epochs", "2", "--batch-size", "7", "--lr", "3e-3",
               "--activations", "", "--out", str(out), "--device", "cpu", "--json"] + (
                   ["--micro-batches", "2"] if n == 1 else [])
        env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout)

    one = run(1, tmp_path / "one")
    two = run(2, tmp_path / "two")
    assert two["provenance"]["world_size"] == 2 and one["provenance"]["world_size"] == 1
    wa, wb = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) <= 1e-5
    assert [h["val_dice"] for h in one["history"]] == pytest.approx([h["val_dice"] for h in two["history"]], abs=1e-5)


def test_cli_finetune_then_segment_with_the_folder(shapes, small_clipseg, tmp_path, capsys):
    from napari_vip.cli.main import main

    out = tmp_path / "cli"
    rc = main(["finetune", str(shapes), "--vlsm-checkpoint", str(small_clipseg), "--prompt", "random", "--epochs", "2",
               "--batch-size", "16", "--activations", "", "--out", str(out), "--device", "cpu", "--json"])
    assert rc == 0
    d = json.loads(capsys.readouterr().out)
    assert d["method"] == "vlsm" and d["recipe"]["prompt"] == "random" and len(d["history"]) == 2
    img = next((shapes / "images").glob("test_*.png"))
    rc = main(["segment", str(img), "--text", "disc", "--vlsm", "clipseg", "--vlsm-checkpoint", str(out), "--device",
               "cpu", "--json"])
    assert rc == 0
    seg = json.loads(capsys.readouterr().out)
    assert seg["steps"][0]["method"] == "vlsm" and seg["steps"][0]["model"]["source"] == str(out)


def test_missing_image_is_named(shapes, small_clipseg, tmp_path):
    import shutil

    from napari_vip.core.errors import VipInputError

    broken = tmp_path / "broken"
    shutil.copytree(shapes, broken)
    victim = next((broken / "images").glob("train_000.png"))
    victim.unlink()
    with pytest.raises(VipInputError, match="train_000.png"):
        _run(broken, small_clipseg, tmp_path / "o", 1)
