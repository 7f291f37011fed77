"""SAM 2 in 2D through the worker: masks equal SAM2ImagePredictor's, embeddings cached on disk like SAM's,
background volume embedding that yields to prompts, and the CLI twin."""

from __future__ import annotations

import json
import queue

import numpy as np
import pytest
import torch

from napari_vip.cli.main import main
from napari_vip.models.sam2_family import Sam2Spec, arch_config
from napari_vip.worker.engine import Engine
from napari_vip.worker.segment import SegmentEmbedRequest, SegmentRequest


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_VIP_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _iou(a, b):
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    union = (a | b).sum()
    return 1.0 if union == 0 else (a & b).sum() / union


def _image():
    rng = np.random.default_rng(3)
    img = (rng.random((96, 120, 3)) * 50).astype(np.uint8)
    img[25:70, 30:90] = 210
    return img


def _reference(arch, path, img):
    """sam2's own SAM2ImagePredictor on the same file, the image set."""
    from sam2.build_sam import build_sam2
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    cfg, overrides, size, _ = arch_config(arch)
    p = SAM2ImagePredictor(build_sam2(cfg, path, device="cpu", hydra_overrides_extra=overrides))
    p._bb_feat_sizes = [(size // 4,) * 2, (size // 8,) * 2, (size // 16,) * 2]
    with torch.inference_mode():
        p.set_image(img)
    return p


def test_segment_request_equals_image_predictor_and_reads_the_disk_cache(tiny_sam2_checkpoint, cache_dir):
    arch, path = tiny_sam2_checkpoint
    img = _image()
    spec = Sam2Spec(arch, checkpoint=path)
    box, pts, labels = (28.0, 22.0, 92.0, 72.0), [[60.0, 45.0], [5.0, 5.0]], [1, 0]
    first = Engine().run(SegmentRequest(img, spec, [box], pts, labels, device="cpu"))
    assert first.embedding_source == "computed" and first.masks.shape == (1, 3, 96, 120)
    assert np.all(np.diff(first.scores, axis=1) <= 0)
    ref = _reference(arch, path, img)
    with torch.inference_mode():
        r_masks, r_scores, _ = ref.predict(point_coords=np.array(pts, np.float32), point_labels=np.array(labels),
                                           box=np.array(box, np.float32), multimask_output=True)
    order = np.argsort(-r_scores, kind="stable")
    np.testing.assert_allclose(first.scores[0], r_scores[order], atol=1e-5)
    assert min(_iou(m, r) for m, r in zip(first.masks[0], r_masks[order])) >= 0.99
    assert first.provenance.to_dict()["model"]["arch"] == arch
    assert len(list(cache_dir.glob("embeddings/*.npy"))) == 1
    # a new worker (another session) reads the embedding from disk and gives the same masks
    again = Engine().run(SegmentRequest(img, spec, [box], pts, labels, device="cpu"))
    assert again.embedding_source == "disk"
    assert np.array_equal(again.masks, first.masks)
    np.testing.assert_allclose(again.scores, first.scores, atol=1e-6)
    # refining from the shown candidate's logits, as the dock does after a click
    refined = Engine().run(SegmentRequest(img, spec, [box], pts[:1], labels[:1],
                                          mask_logits=first.low_res_logits[0, 0][None], multimask=False,
                                          device="cpu"))
    with torch.inference_mode():
        _, _, r_low = ref.predict(point_coords=np.array(pts, np.float32), point_labels=np.array(labels),
                                  box=np.array(box, np.float32), multimask_output=True)
        r_ref, _, _ = ref.predict(point_coords=np.array(pts[:1], np.float32), point_labels=np.array(labels[:1]),
                                  box=np.array(box, np.float32), mask_input=r_low[order[0]][None],
                                  multimask_output=False)
    assert _iou(refined.masks[0, 0], r_ref[0]) >= 0.99


def test_sam1_and_sam2_embeddings_of_one_image_do_not_mix(tiny_sam2_checkpoint, tiny_sam_checkpoint):
    from napari_vip.models.sam import SamSpec

    img = _image()
    eng = Engine()
    a = eng.run(SegmentEmbedRequest(img, Sam2Spec(*tiny_sam2_checkpoint[:1], checkpoint=tiny_sam2_checkpoint[1]),
                                    device="cpu"))
    b = eng.run(SegmentEmbedRequest(img, SamSpec(tiny_sam_checkpoint[0], checkpoint=tiny_sam_checkpoint[1]),
                                    device="cpu"))
    assert a.key != b.key and a.source == b.source == "computed"


def test_background_volume_embedding_yields_to_any_waiting_job(tiny_sam2_checkpoint):
    """In the worker loop a VolumeEmbedRequest stops as soon as another job waits (its result says cancelled and
    lists the slices done), and the waiting job runs."""
    from napari_vip.worker.process import serve
    from napari_vip.worker.protocol import Done, Failed, Job, Progress
    from napari_vip.worker.volume import VolumeEmbedRequest

    arch, path = tiny_sam2_checkpoint
    spec = Sam2Spec(arch, checkpoint=path)
    vol = np.zeros((6, 64, 64), np.float32)
    vol[:, 20:40, 20:44] = 100.0
    vol += np.arange(6, dtype=np.float32)[:, None, None]  # no two slices alike
    inbox, outbox = queue.Queue(), queue.Queue()

    class Feeder:  # the prompt arrives while the first slice is being embedded
        def __init__(self):
            self.sent = False

        def put(self, msg):
            outbox.put(msg)
            if isinstance(msg, Progress) and msg.job_id == 1 and msg.done == 1 and not self.sent:
                self.sent = True
                inbox.put(Job(2, SegmentRequest(np.repeat((vol[3] / 100 * 255).astype(np.uint8)[..., None], 3, -1),
                                                spec, [(18, 18, 46, 42)], device="cpu"), "segment-decode"))
                inbox.put(None)

    inbox.put(Job(1, VolumeEmbedRequest(vol, 3, spec, device="cpu"), "segment-volume-embed"))
    serve(inbox, Feeder())
    finals = {}
    while not outbox.empty():
        msg = outbox.get()
        if isinstance(msg, (Done, Failed)):
            finals[msg.job_id] = msg
    assert isinstance(finals[1], Done) and finals[1].result.cancelled
    assert 1 <= len(finals[1].result.order) < 6 and finals[1].result.order[0] == 3
    assert isinstance(finals[2], Done) and finals[2].result.masks.shape == (1, 3, 64, 64)


def test_cli_segment_with_a_sam2_arch(tiny_sam2_checkpoint, tmp_path, capsys):
    from PIL import Image

    arch, path = tiny_sam2_checkpoint
    src = tmp_path / "img.png"
    Image.fromarray(_image()).save(src)
    out = tmp_path / "mask.png"
    rc = main(["segment", str(src), "--box", "28", "22", "92", "72", "--sam-arch", arch, "--sam-checkpoint", path,
               "--out", str(out), "--json"])
    assert rc == 0
    d = json.loads(capsys.readouterr().out)
    assert d["provenance"]["model"]["arch"] == arch and d["untrained"] is False
    labels = np.asarray(Image.open(out))
    assert labels.shape == (96, 120) and set(np.unique(labels)) <= {0, 1}
