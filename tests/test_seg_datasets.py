"""Segmentation data sets: medvlsm annotation files, folder layout, CSV, mask checks and export."""

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_vip.core.errors import VipInputError
from napari_vip.core.prompt_ladder import choose_prompt
from napari_vip.io.datasets import (
    AnnotationStyle,
    export_medvlsm,
    load_sample,
    open_seg_dataset,
    pair_folders,
    read_binary_mask,
    read_medvlsm_annotations,
    read_seg_dataset,
    resize_nearest_exact,
    write_medvlsm_annotations,
)

DATA = Path(__file__).parent / "data" / "medvlsm"
RELEASED = ["kvasir_polyp_test_head.json", "bkai_polyp_test_head.json", "camus_test_head.json",
            "busi_test_head.json"]


@pytest.mark.parametrize("name", RELEASED)
def test_released_annotation_file_written_back_unchanged(name, tmp_path):
    entries, style = read_medvlsm_annotations(DATA / name)
    out = write_medvlsm_annotations(tmp_path / "anns" / "test.json", entries, style)
    assert out.read_bytes() == (DATA / name).read_bytes()


def test_styles_of_released_files():
    assert read_medvlsm_annotations(DATA / "kvasir_polyp_test_head.json")[1] == AnnotationStyle(None)
    assert read_medvlsm_annotations(DATA / "bkai_polyp_test_head.json")[1] == AnnotationStyle(4)
    assert read_medvlsm_annotations(DATA / "camus_test_head.json")[1] == AnnotationStyle(2)


def save(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def medvlsm_folder(root, name="kvasir_polyp_test_head.json", hw=(40, 50)):
    """The released entries with synthetic pixels under their file names."""
    entries, _ = read_medvlsm_annotations(DATA / name)
    shutil.copy(DATA / name, (root / "anns").mkdir(parents=True) or root / "anns" / "test.json")
    for i, e in enumerate(entries):
        img = np.full((*hw, 3), 40 + i, np.uint8)
        save(root / "images" / e["img_name"], img)
        m = np.zeros(hw, np.uint8)
        if not e["prompts"]["p1"].startswith("no "):
            m[5:15, 10 + i:20 + i] = 255
        save(root / "masks" / (Path(e["mask_name"]).with_suffix(".png")), m)
        # released Kvasir masks are .jpg: keep the name, write a lossless-equivalent file under it
        if Path(e["mask_name"]).suffix != ".png":
            shutil.move(root / "masks" / Path(e["mask_name"]).with_suffix(".png"), root / "masks" / e["mask_name"])
    return entries


def test_read_medvlsm_folder_and_draw_prompts(tmp_path):
    entries = medvlsm_folder(tmp_path)
    samples = read_seg_dataset(tmp_path, "test")
    assert [s.sample_id for s in samples] == [e["mask_name"] for e in entries]
    assert samples[0].prompts == entries[0]["prompts"]
    assert samples[0].image_path == tmp_path / "images" / entries[0]["img_name"]
    image, mask = load_sample(samples[0])
    assert image.shape == (40, 50, 3) and image.dtype == np.uint8
    assert mask.dtype == bool and mask.sum() == 100
    rng = random.Random(1)
    assert choose_prompt(samples[0].prompts, "p7", rng) in entries[0]["prompts"]["p7"]
    with pytest.raises(VipInputError, match="splits: test"):
        read_seg_dataset(tmp_path, "val")


def test_empty_mask_allowed_only_for_no_object_entries(tmp_path):
    entries = medvlsm_folder(tmp_path, "bkai_polyp_test_head.json")
    samples = read_seg_dataset(tmp_path, "test")
    assert samples[-1].negative and not samples[0].negative
    _, mask = load_sample(samples[-1])
    assert not mask.any()
    save(tmp_path / "masks" / entries[0]["mask_name"], np.zeros((40, 50), np.uint8))
    with pytest.raises(VipInputError, match=f"{entries[0]['mask_name']}.*empty"):
        load_sample(samples[0])


def test_annotation_without_prompts_and_missing_image(tmp_path):
    entries = medvlsm_folder(tmp_path)
    bad = [dict(entries[0])]
    del bad[0]["prompts"]
    (tmp_path / "anns" / "val.json").write_text(json.dumps(bad))
    with pytest.raises(VipInputError, match=r"val\.json, entry 0.*no 'prompts'"):
        read_seg_dataset(tmp_path, "val")
    (tmp_path / "images" / entries[1]["img_name"]).unlink()
    with pytest.raises(VipInputError, match=f"image .*{entries[1]['img_name']}.* does not exist"):
        read_seg_dataset(tmp_path, "test")


def test_mask_forms(tmp_path):
    m = np.zeros((20, 30), bool)
    m[4:9, 5:20] = True
    for name, arr in [("a.png", m * np.uint8(255)), ("b.png", m.astype(np.uint8)),
                      ("c.png", np.where(m, 3, 0).astype(np.uint8)), ("d.npy", m)]:
        p = tmp_path / name
        np.save(p, arr) if name.endswith(".npy") else save(p, arr)
        assert np.array_equal(read_binary_mask(p), m), name
    labels = np.where(m, 2, 0).astype(np.uint8)
    labels[15:18, 0:4] = 5
    save(tmp_path / "l.png", labels)
    assert np.array_equal(read_binary_mask(tmp_path / "l.png", label=2), m)
    assert read_binary_mask(tmp_path / "l.png").sum() == m.sum() + 12
    # RGB picture of a 0/255 mask (equal channels) is read; a colour photo is refused
    save(tmp_path / "rgb.png", np.repeat((m * np.uint8(255))[..., None], 3, axis=2))
    assert np.array_equal(read_binary_mask(tmp_path / "rgb.png"), m)
    photo = np.random.default_rng(0).integers(0, 256, (20, 30), dtype=np.uint8)
    save(tmp_path / "photo.png", photo)
    with pytest.raises(VipInputError, match=r"photo\.png.*not binary"):
        read_binary_mask(tmp_path / "photo.png")
    save(tmp_path / "col.png", np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8))
    with pytest.raises(VipInputError, match=r"col\.png.*colour"):
        read_binary_mask(tmp_path / "col.png")
    with pytest.raises(VipInputError, match=r"a\.png.*20 x 30.*image is 21 x 30"):
        read_binary_mask(tmp_path / "a.png", shape=(21, 30))
    with pytest.raises(VipInputError, match="nothere.png.*does not exist"):
        read_binary_mask(tmp_path / "nothere.png")


def test_jpeg_mask_is_thresholded_with_a_note(tmp_path):
    m = np.zeros((64, 64), bool)
    m[10:40, 20:50] = True
    Image.fromarray(m * np.uint8(255)).save(tmp_path / "m.jpg", quality=90)
    notes = []
    got = read_binary_mask(tmp_path / "m.jpg", notes=notes)
    assert (got != m).mean() < 0.01 and notes and "JPEG" in notes[0]


def test_image_and_mask_of_different_sizes_name_both(tmp_path):
    save(tmp_path / "i.png", np.zeros((30, 30, 3), np.uint8))
    save(tmp_path / "m.png", np.full((20, 30), 255, np.uint8))
    (tmp_path / "d.csv").write_text("image,mask,prompt,split\ni.png,m.png,a polyp,test\n")
    s = read_seg_dataset(tmp_path / "d.csv", "test")[0]
    with pytest.raises(VipInputError, match=r"m\.png.*20 x 30.*30 x 30.*i\.png"):
        load_sample(s)


def test_csv_with_ladder_columns_patients_and_splits(tmp_path):
    m = np.zeros((16, 16), np.uint8)
    m[4:8, 4:8] = 255
    for n in ("a", "b", "c"):
        save(tmp_path / f"{n}.png", np.zeros((16, 16, 3), np.uint8))
        save(tmp_path / f"{n}_m.png", m)
    (tmp_path / "d.csv").write_text(
        "image,mask,prompt,split,patient_id,p0,p7\n"
        'a.png,a_m.png,a polyp,test,P1,,"[""x"", ""y""]"\n'
        "b.png,b_m.png,another,train,P2,,z\n"
        "c.png,c_m.png,third,test,P3,,w\n")
    data = open_seg_dataset(tmp_path / "d.csv", "test")
    assert data.layout == "csv" and [s.sample_id for s in data.samples] == ["a_m.png", "c_m.png"]
    assert data.samples[0].prompts == {"p0": "", "p7": ["x", "y"], "prompt": "a polyp"}
    assert data.samples[0].patient_id == "P1"
    assert len(read_seg_dataset(tmp_path / "d.csv", None)) == 3
    (tmp_path / "bad.csv").write_text("image,mask\na.png,a_m.png\n")
    with pytest.raises(VipInputError, match="needs the columns"):
        read_seg_dataset(tmp_path / "bad.csv", None)
    (tmp_path / "miss.csv").write_text("image,mask,prompt,split\nnope.png,a_m.png,x,test\n")
    with pytest.raises(VipInputError, match=r"line 2.*nope\.png.*does not exist"):
        read_seg_dataset(tmp_path / "miss.csv", "test")


def test_resize_nearest_exact_matches_torch():
    torch = pytest.importorskip("torch")
    a = np.random.default_rng(0).integers(0, 2, (37, 53)).astype(np.float32)
    for hw in [(352, 352), (20, 11), (37, 53)]:
        t = torch.nn.functional.interpolate(torch.from_numpy(a)[None, None], size=hw, mode="nearest-exact")
        assert np.array_equal(resize_nearest_exact(a, hw), t[0, 0].numpy()), hw


def test_ground_truth_resized_as_the_released_mask_transform():
    """torchvision's Resize(NEAREST_EXACT) + ToTensor on a PIL mask, as medvlsm's ImageTextMaskDataset applies it."""
    T = pytest.importorskip("torchvision.transforms")
    from napari_vip.io.datasets import resize_mask_released

    rng = np.random.default_rng(1)
    for hw in [(529, 622), (959, 1280), (37, 53)]:
        m = rng.random(hw) > 0.5
        pil = Image.fromarray(m.astype(np.uint8) * 255)
        for size in [(352, 352), (224, 224)]:
            released = T.Compose([T.Resize(size=size, interpolation=T.InterpolationMode.NEAREST_EXACT),
                                  T.ToTensor()])(pil)[0].numpy() > 0
            assert np.array_equal(resize_mask_released(m, size), released), (hw, size)


def test_export_folders_in_medvlsm_layout(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(10):
        save(tmp_path / "imgs" / f"im{i}.png", rng.integers(0, 50, (30, 40, 3), dtype=np.uint8))
        m = np.zeros((30, 40), np.uint8)
        if i != 3:
            m[3:12, 25:35] = 1  # 0/1 masks are read and written as 0/255
        save(tmp_path / "masks" / f"im{i}_mask.png", m)
    samples = pair_folders(tmp_path / "imgs", tmp_path / "masks", (0.6, 0.2, 0.2), seed=0)
    assert sorted(s.split for s in samples).count("train") == 6
    res = export_medvlsm(samples, tmp_path / "out", "polyp")
    assert res["splits"] == {"train": 6, "val": 2, "test": 2} or sum(res["splits"].values()) == 10
    out = tmp_path / "out"
    back = [s for split in ("train", "val", "test") for s in read_seg_dataset(out, split)]
    assert len(back) == 10
    by_name = {s.image_path.name: s for s in back}
    assert by_name["im3.png"].prompts["p1"] == "no polyp"
    s0 = by_name["im0.png"]
    assert s0.prompts["p6"].endswith(", located in top right of the image")
    assert s0.entry["bbox"] == [25, 3, 34, 11] and list(s0.entry) == [
        "bbox", "cat", "segment_id", "img_name", "mask_name", "sentences", "prompts", "sentences_num"]
    assert set(np.unique(np.asarray(Image.open(out / "masks" / "im0.png")))) == {0, 255}
    assert (out / "images" / "im0.png").read_bytes() == (tmp_path / "imgs" / "im0.png").read_bytes()
    with pytest.raises(VipInputError, match="exists"):
        export_medvlsm(samples, out, "polyp")


def test_any_annotation_file_round_trips_in_its_style(tmp_path):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    text = st.text(min_size=0, max_size=12)
    prompts = st.dictionaries(st.sampled_from([f"p{i}" for i in range(10)]),
                              st.one_of(text, st.lists(text, min_size=1, max_size=3)), min_size=1, max_size=10)
    entry = st.fixed_dictionaries({"img_name": text.filter(bool), "mask_name": text.filter(bool), "prompts": prompts},
                                  optional={"bbox": st.lists(st.integers(0, 2000), min_size=4, max_size=4),
                                            "segment_id": st.one_of(text, st.integers())})

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(entry, max_size=4), st.sampled_from([None, 2, 4]), st.booleans())
    def check(entries, indent, ascii_only):
        path = tmp_path / "anns.json"
        path.write_text(json.dumps(entries, indent=indent, ensure_ascii=ascii_only), encoding="utf-8")
        got, style = read_medvlsm_annotations(path)
        assert got == entries
        out = write_medvlsm_annotations(tmp_path / "back.json", got, style)
        assert out.read_bytes() == path.read_bytes()

    check()
