"""Precision choice: ``auto`` resolution on faked CPUs and GPUs, specs refusing unknown precisions, provenance
recording the precision, float32 and bfloat16 never sharing a cache entry, the CLI option and the server's
choice winning."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from napari_vip.core.errors import VipInputError
from napari_vip.models import precision as P
from napari_vip.models.embedding_cache import ENV_VAR
from napari_vip.models.sam import SamSpec
from napari_vip.models.sam2_family import Sam2Spec
from napari_vip.models.spec import ModelSpec

SPR = {"amx_bf16", "amx_tile", "avx512f", "avx512_bf16", "avx2"}  # a Sapphire Rapids Xeon
ZEN4 = {"avx512f", "avx512_bf16", "avx2"}  # AMD Zen 4: AVX-512-BF16, no AMX
ZEN3 = {"avx2", "fma", "f16c"}  # AMD Zen 3 (this project's build machine): neither


@pytest.mark.parametrize("flags, expected", [(SPR, "bf16"), (ZEN4, "bf16"), ({"amx_bf16"}, "bf16"),
                                             (ZEN3, "fp32"), (set(), "fp32")])
def test_auto_on_cpus(flags, expected):
    for family in P.FAMILIES:
        assert P.resolve_precision("auto", "cpu", family, cpu_flags_set=flags) == expected


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "fp16")])
def test_auto_on_cuda_picks_what_the_gpu_runs(native, expected):
    assert P.resolve_precision("auto", "cuda", "sam", cuda_bf16=native) == expected
    assert P.resolve_precision("auto", "cuda:1", "clip", cuda_bf16=native) == expected


def test_auto_elsewhere_is_float32_and_explicit_choices_are_kept():
    assert P.resolve_precision("auto", "mps", "clip") == "fp32"
    for choice in P.CONCRETE:
        assert P.resolve_precision(choice, "cpu", "clip", cpu_flags_set=ZEN3) == choice
    assert P.resolve_precision("fp16", "cuda", "sam2", cuda_bf16=False) == "fp16"


def test_bf16_on_a_gpu_without_it_is_refused_naming_the_choices():
    with pytest.raises(VipInputError, match="does not run bfloat16.*fp16"):
        P.resolve_precision("bf16", "cuda", "clip", cuda_bf16=False)


def test_a_family_that_failed_a_gate_is_left_out_of_auto(monkeypatch):
    monkeypatch.setitem(P.AUTO_EXCLUDED, ("sam", "bf16"), "mask IoU 0.95 < 0.98")
    assert P.resolve_precision("auto", "cpu", "sam", cpu_flags_set=SPR) == "fp32"
    assert P.resolve_precision("auto", "cpu", "clip", cpu_flags_set=SPR) == "bf16"
    assert P.resolve_precision("bf16", "cpu", "sam", cpu_flags_set=SPR) == "bf16"  # explicit still works


def test_unknown_precision_or_family_is_refused():
    with pytest.raises(VipInputError, match="Unknown precision 'fp8'.*auto, fp32, bf16, fp16"):
        P.resolve_precision("fp8", "cpu", "clip")
    with pytest.raises(VipInputError, match="family"):
        P.resolve_precision("auto", "cpu", "yolo")
    for make in (lambda: ModelSpec("ViT-B-16", untrained=True, precision="half"),
                 lambda: SamSpec("vit_b", untrained=True, precision="half"),
                 lambda: Sam2Spec(untrained=True, precision="half")):
        with pytest.raises(VipInputError, match="Unknown precision 'half'"):
            make()


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    f = tmp_path / "cpuinfo"
    f.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu sse2 avx2 amx_bf16 amx_tile\n\n"
                 "processor\t: 1\nflags\t\t: fpu\n")
    flags = P.cpu_flags(f)
    assert {"amx_bf16", "avx2"} <= flags and P.cpu_runs_bf16(flags)
    assert P.cpu_flags(tmp_path / "missing") is None
    assert not P.cpu_runs_bf16(frozenset({"avx2"}))


def test_this_machines_detection_agrees_with_its_flags():
    flags = P.cpu_flags()
    if flags is None:
        pytest.skip("no /proc/cpuinfo on this system: detection falls back to oneDNN's check")
    native = bool({"amx_bf16", "avx512_bf16"} & flags)
    assert P.cpu_runs_bf16() == native
    assert P.resolve_precision("auto", "cpu", "clip") == ("bf16" if native else "fp32")


def test_cast_module_casts_weights_and_inputs_and_gives_float32_back():
    import torch

    lin = torch.nn.Linear(4, 3)
    P.cast_module(lin, "bf16")
    assert lin.weight.dtype == torch.bfloat16
    out = lin(torch.ones(2, 4))  # a float32 input is cast on the way in
    assert out.dtype == torch.float32
    P.cast_module(lin, "fp32")  # a second call replaces the hooks
    assert lin.weight.dtype == torch.float32 and lin(torch.ones(2, 4)).dtype == torch.float32
    assert not lin._forward_pre_hooks


# -- provenance, caches, command line, server -------------------------------------------------------------------
@pytest.fixture
def image():
    img = np.zeros((40, 60, 3), np.uint8)
    img[10:30, 20:45] = 200
    return img


def test_provenance_records_the_precision(tiny_clip_arch, image):
    from napari_vip.worker.classify import ClassifyRequest
    from napari_vip.worker.engine import Engine

    engine = Engine()
    for choice, expected in (("bf16", "bf16"), ("fp32", "fp32"), ("auto", P.resolve_precision("auto", "cpu", "clip"))):
        res = engine.run(ClassifyRequest(image, [], ["a", "b"], ModelSpec(tiny_clip_arch, untrained=True,
                                                                        precision=choice), device="cpu"))
        prov = res.to_dict()["provenance"]
        assert prov["precision"] == expected and prov["model"]["precision"] == expected
        assert prov["dtype"] == P.DTYPE_NAMES[expected]


def test_float32_and_bfloat16_embeddings_never_share_a_cache_entry(tmp_path, monkeypatch, tiny_sam_checkpoint, image):
    from napari_vip.worker.engine import Engine
    from napari_vip.worker.segment import SegmentEmbedRequest

    monkeypatch.setenv(ENV_VAR, str(tmp_path / "cache"))
    arch, path = tiny_sam_checkpoint
    engine = Engine()
    runs = {p: engine.run(SegmentEmbedRequest(image, SamSpec(arch, checkpoint=path, precision=p), window=(0.0, 255.0)))
            for p in ("fp32", "bf16", "fp16")}
    assert len({r.key for r in runs.values()}) == 3
    assert all(r.source == "computed" for r in runs.values())
    assert len(list((tmp_path / "cache" / "embeddings").glob("*.npy"))) == 3
    fresh = Engine()  # from disk: each precision finds its own entry
    again = fresh.run(SegmentEmbedRequest(image, SamSpec(arch, checkpoint=path, precision="bf16"), window=(0.0, 255.0)))
    assert again.source == "disk" and again.key == runs["bf16"].key
    assert again.provenance.precision == "bf16"


def test_cli_precision_option_on_classify_and_segment(capsys, tmp_path, tiny_clip_arch, tiny_sam_arch):
    from napari_vip.cli.main import main

    png = tmp_path / "x.png"
    Image.fromarray(np.tile(np.arange(60, dtype=np.uint8), (40, 1))).save(png)
    assert main(["classify", str(png), "--classes", "a", "b", "--model", tiny_clip_arch, "--untrained",
                 "--device", "cpu", "--precision", "bf16", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["provenance"]["precision"] == "bf16"
    assert main(["segment", str(png), "--box", "5", "5", "30", "30", "--sam-arch", tiny_sam_arch, "--untrained",
                 "--device", "cpu", "--precision", "fp16", "--no-disk-cache", "--json"]) == 0
    prov = json.loads(capsys.readouterr().out)["provenance"]
    assert prov["precision"] == "fp16" and prov["dtype"] == "float16"
    with pytest.raises(SystemExit):
        main(["classify", str(png), "--classes", "a", "--untrained", "--precision", "fp8"])
    assert "invalid choice: 'fp8'" in capsys.readouterr().err


def test_server_precision_replaces_the_requests(tiny_clip_arch, image):
    from napari_vip.serve.policy import ServerPolicy
    from napari_vip.worker.classify import ClassifyRequest
    from napari_vip.worker.segment import TextSegmentRequest

    req = ClassifyRequest(image, [], ["a", "b"], ModelSpec("ViT-B-16", untrained=True, precision="fp32"))
    admitted = ServerPolicy(precision="bf16").admit(req)
    assert admitted.model.precision == "bf16" and admitted.device == "auto"
    seg = TextSegmentRequest(image, SamSpec("vit_b", untrained=True, precision="fp16"), text="x",
                             clip=ModelSpec("ViT-B-16", untrained=True))
    admitted = ServerPolicy(precision="fp32").admit(seg)
    assert admitted.model.precision == "fp32" and admitted.clip.precision == "fp32"
    assert ServerPolicy().admit(req).model.precision == "auto"


def test_docks_device_rows_choose_the_precision(qtbot):
    from napari_vip.widgets.model_picker import ModelPicker
    from napari_vip.widgets.sam_picker import SamPicker

    clip, sam = ModelPicker(), SamPicker()
    qtbot.addWidget(clip)
    qtbot.addWidget(sam)
    assert clip.spec().precision == sam.spec().precision == "auto"
    assert [clip.precision.itemText(i) for i in range(clip.precision.count())] == list(P.PRECISIONS)
    with qtbot.waitSignal(clip.changed):
        clip.precision.setCurrentText("bf16")
    clip.set_untrained()
    assert clip.spec().precision == "bf16" and clip.spec().untrained
    sam.precision.setCurrentText("fp16")
    assert sam.spec().precision == "fp16"
    sam.arch.setCurrentText("vit_b")
    assert isinstance(sam.spec(), SamSpec) and sam.spec().precision == "fp16"


def test_selftest_says_what_a_precision_means_here(capsys):
    from napari_vip.cli.main import main

    assert main(["selftest", "--device", "cpu", "--precision", "auto", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)["precision"]
    assert got == {fam: P.resolve_precision("auto", "cpu", fam) for fam in ("clip", "sam", "sam2")}


def test_server_status_names_its_precision():
    from fastapi.testclient import TestClient

    from napari_vip.serve.app import ServerConfig, create_app
    from napari_vip.serve.policy import ServerPolicy

    app = create_app(ServerConfig(token="t" * 32, policy=ServerPolicy("cpu", precision="bf16")))
    with TestClient(app) as http:
        status = http.get("/status", headers={"Authorization": "Bearer " + "t" * 32}).json()
    assert status["device"] == "cpu" and status["precision"] == "bf16"
