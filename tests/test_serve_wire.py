"""The wire codec: every registered request and result type round-trips; nothing else is ever built."""

import dataclasses

import numpy as np
import pytest

from napari_vip.core.focus import Focus
from napari_vip.core.markers import Marker
from napari_vip.core.region_concepts import RegionConcepts
from napari_vip.core.text_region import RegionPrompt
from napari_vip.models.llm_descriptors import LlmConfig
from napari_vip.models.sam import SamSpec
from napari_vip.models.sam2_family import Sam2Spec
from napari_vip.models.spec import ModelSpec
from napari_vip.models.vlsm.spec import VlsmSpec
from napari_vip.serve import wire
from napari_vip.serve.wire import WIRE_TYPES, WireError, decode, encode, pack, unpack
from napari_vip.worker import attention as A
from napari_vip.worker import classify as C
from napari_vip.worker import concepts as K
from napari_vip.worker import learn as L
from napari_vip.worker import segment as S
from napari_vip.worker import selftest as T
from napari_vip.worker import vlsm as V
from napari_vip.worker.engine import request_types
from napari_vip.worker.protocol import Provenance

RGB = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)
PROV = Provenance("0.1", {"arch": "x"}, "ab" * 32, True, "cpu", {"template": "t", "nested": {"k": (1, 2)}})
MODEL = ModelSpec("ViT-B-16", untrained=True)
SAM = SamSpec("vit_b", untrained=True)
SAM2 = Sam2Spec("sam2.1_hiera_t", untrained=True)
MARKER = Marker((1.0, 2.0, 4.0, 5.0), "arrow", "green", 2, ((1.0, 2.0), (3.0, 4.0)))
CONCEPTS = RegionConcepts(1, "round", "small", "bright", "top left", "nodule", "box", 0.1, 0.2, 0.9, (1.5, 2.5),
                          (10.0, 20.0, 30.0), None, True, ["a note"])
REGION = RegionPrompt(np.eye(5, 7, dtype=bool), (0.0, 0.0, 4.0, 4.0), np.array([[1.0, 2.0]]), 3.5, 2, 0.5)
SEG = S.SegmentResult(np.zeros((1, 3, 5, 7), bool), np.array([[0.9, 0.5, 0.1]], np.float32),
                      np.ones((1, 3, 4, 4), np.float32), [(0.0, 0.0, 4.0, 4.0)], np.zeros((0, 2)),
                      np.zeros((0,), np.int64), "computed", {"embedding": 1.0}, PROV, ["n"])
ATT_COND = A.AttentionCondition("1: circle", MARKER, "p", np.zeros((5, 7), np.float32), np.ones((2, 2), np.float32),
                                (0, 0), Focus(0.5, 0.25, 2.0), np.float32(0.3), 0.7, ["x"])
CONCEPT_COND = K.ConceptCondition("none", None, np.array([0.4, 0.6]), {"a": ["pa"], "b": ["pb"]},
                                  {"a": ["ca"], "b": ["cb"]}, {"a": np.array([0.1]), "b": np.array([0.2])},
                                  {"a": "ca", "b": "cb"})

SAMPLES = [
    PROV, MODEL, SAM, SAM2, MARKER, Focus(None, 0.5, None), REGION, CONCEPTS, LlmConfig("http://x", "m"),
    T.SelfTestRequest(3, 0.0, None, "t"), T.SelfTestResult("t", 3, 42),
    C.ClassifyRequest(RGB, [MARKER], ["a", "b"], MODEL, marker_text=("circle",), prompts_path=None),
    C.ConditionResult("none", None, ["p1", "p2"], np.array([0.25, 0.75])),
    C.ClassifyResult(["a", "b"], [C.ConditionResult("1: arrow", MARKER, ["p"], np.array([1.0, 0.0]))], PROV, ["n"]),
    A.AttentionRequest(RGB, [MARKER], "a", ["a", "b"], "rollout", MODEL),
    ATT_COND, A.AttentionResult("a", ["a", "b"], "rollout", (5, 7), [ATT_COND], PROV, []),
    K.ConceptClassifyRequest(RGB, [], {"a": ["x", "y"]}, MODEL),
    CONCEPT_COND, K.ConceptClassifyResult(["a", "b"], [CONCEPT_COND], PROV),
    K.RegionConceptsRequest(RGB, np.ones((5, 7), np.uint8), (0.0, 0.0, 2.0, 2.0), "nodule"),
    K.RegionConceptsResult(CONCEPTS, "sentence", {"p1": "x"}, PROV),
    K.DescriptorsRequest("a", "chest x-ray", LlmConfig("http://x", "m")),
    K.DescriptorsResult("a", ["d1"], PROV),
    S.SegmentEmbedRequest(RGB, SAM, window=(0.0, 255.0), invert=True, image_sig="sig"),
    S.SegmentEmbedRequest(RGB, SAM2, window=(0.0, 255.0)),
    S.EmbedResult("key", "memory", 0.5, (5, 7), PROV),
    S.SegmentRequest(RGB, SAM, boxes_xyxy=[(0.0, 0.0, 3.0, 3.0)], points_xy=[[1.0, 1.0]], point_labels=[1],
                     mask_logits=np.zeros((1, 4, 4), np.float32)),
    SEG,
    S.TextSegmentRequest(RGB, SAM, text="nodule", clip=MODEL),
    S.TextSegmentResult("nodule", SEG, np.zeros((5, 7), np.float32), np.zeros((2, 2), np.float32), REGION,
                        [{"step": "sam", "untrained": True}]),
    L.LearnRequest("/data", MODEL, None, "vip", True, {"a": ["x"]}, None, {"epochs": 2}),
    L.LearnResult("vip", None, ["a"], {"vip": {"accuracy": 1.0}}, {"vip": []}, {"train": [1]}, {"n": 2}, {}, PROV),
    VlsmSpec("clipseg", source="CIDAS/clipseg-rd64-refined"),
    V.VlsmSegmentRequest(RGB, "one small polyp", VlsmSpec("clipseg", untrained=True), refine_sam=True, sam=SAM),
    V.VlsmSegmentResult("one small polyp", SEG, np.zeros((5, 7), np.float32), np.zeros((5, 7), bool),
                        [{"step": "vlsm", "untrained": True}], ["a note"]),
]


def same(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (type(a) is type(b) and a.dtype == b.dtype and a.shape == b.shape
                and np.array_equal(a, b, equal_nan=True))
    if dataclasses.is_dataclass(a):
        return type(a) is type(b) and all(same(getattr(a, f.name), getattr(b, f.name))
                                          for f in dataclasses.fields(a))
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return type(b) is dict and list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def test_the_samples_cover_every_registered_type():
    assert {wire.wire_name(type(s)) for s in SAMPLES} == set(WIRE_TYPES)


def test_every_engine_request_type_is_registered():
    """A new request type must be added to the wire registry (or to LOCAL_ONLY, with why) before a server can
    carry it."""
    from napari_vip.serve.wire import LOCAL_ONLY

    missing = [t.__name__ for t in request_types() if t.__name__ not in WIRE_TYPES and t.__name__ not in LOCAL_ONLY]
    assert not missing, f"add to napari_vip/serve/wire.py WIRE_TYPES: {missing}"


@pytest.mark.parametrize("obj", SAMPLES, ids=lambda o: type(o).__name__)
def test_round_trip_keeps_types_dtypes_and_values(obj):
    back = decode(unpack(pack(encode(obj)), 1 << 24))
    assert same(obj, back)


def test_large_arrays_go_by_reference_and_come_back_by_digest():
    big = np.random.default_rng(0).integers(0, 255, (200, 300, 3), dtype=np.uint8)
    refs = {}
    data = unpack(pack(encode(C.ClassifyRequest(big, [], ["a"], MODEL), refs)), 1 << 20)
    (digest,) = refs
    assert digest == wire.array_digest(big) and len(pack(data)) < 4096
    back = decode(data, lambda d, dtype, shape: refs[d])
    assert np.array_equal(back.image_rgb, big)
    with pytest.raises(WireError, match="references"):
        decode(data)


@pytest.mark.parametrize("bad,match", [
    ({"$type": "Popen", "fields": {}}, "not allowed"),
    ({"$type": "napari_vip.worker.protocol:Provenance", "fields": {}}, "not allowed"),
    ({"$type": "Marker", "fields": {"box_xyxy": [0, 0, 1, 1], "evil": 1}}, "no field"),
    ({"$type": "Marker", "fields": {"box_xyxy": {"$tuple": [0, 0, 1, 1]}, "style": "laser"}}, "Unknown marker"),
    ({"$type": "SelfTestRequest", "fields": {"steps": "many"}}, "steps"),
    ({"$nd": ["|O", [1], b"12345678"]}, "dtype"),
    ({"$nd": ["<f8", [1000000, 1000000], b"1234"]}, "needs"),
    ({"$nd": ["<f8", [-1], b""]}, "shape"),
    ({"$pickle": b"cos\nsystem\n"}, "unknown entry"),
])
def test_unknown_types_and_malformed_arrays_are_refused(bad, match):
    with pytest.raises(WireError, match=match):
        decode(bad)


def test_deep_nesting_and_broken_bytes_are_refused():
    deep = []
    for _ in range(100):
        deep = [deep]
    with pytest.raises(WireError, match="deeper"):
        decode(deep)
    with pytest.raises(WireError, match="not a valid message"):
        unpack(b"\xc1\xff\x00", 1000)
    with pytest.raises(WireError, match="larger"):
        unpack(b"\x00" * 2000, 1000)
    with pytest.raises(WireError, match="not in the wire registry"):
        encode(dataclasses.make_dataclass("Foreign", ["x"])(1))
