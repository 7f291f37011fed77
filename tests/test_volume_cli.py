"""``napari-vip segment VOLUME --slice K --box ... --propagate --out mask.nii.gz|seg.dcm --json``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_volume_export import ct_series  # noqa: F401 - the synthetic CT series fixture
from test_volume_propagation import phantom

from napari_vip.cli.main import main


def test_nifti_volume_with_sam2_keeps_affine(tiny_sam2_checkpoint, tmp_path, capsys, monkeypatch):
    import nibabel as nib

    monkeypatch.setenv("NAPARI_VIP_CACHE", str(tmp_path / "cache"))
    arch, path = tiny_sam2_checkpoint
    vol = phantom(z=4, size=48)
    affine = np.array([[0.8, 0, 0, -20], [0, 0.8, 0, -30], [0, 0, 2.5, 40], [0, 0, 0, 1]], float)
    nib.save(nib.Nifti1Image(np.moveaxis(vol, 0, -1), affine), tmp_path / "ct.nii.gz")
    # presented slices first, anterior up, the patient's right on the left: the (rows a, cols b) box
    # (14, 6, 40, 34) of slice 1 is (47 - 34, 47 - 40, 47 - 6, 47 - 14) in the presented slice
    rc = main(["segment", str(tmp_path / "ct.nii.gz"), "--slice", "1", "--box", "13", "7", "41", "33",
               "--propagate",
               "--sam-arch", arch, "--sam-checkpoint", path, "--out", str(tmp_path / "mask.nii.gz"), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["provenance"]["method"] == "sam2-video" and out["untrained"] is False
    assert out["slices"][0] == 1 and out["prompts"][0]["box_xyxy"] == [13.0, 7.0, 41.0, 33.0]
    img = nib.load(out["out"]["labels"])
    src = nib.load(tmp_path / "ct.nii.gz")
    assert img.shape == src.shape
    np.testing.assert_allclose(img.affine, src.affine, atol=1e-5)


def test_dicom_series_with_sam1_writes_seg(ct_series, tiny_sam_checkpoint, tmp_path, capsys, monkeypatch):  # noqa: F811
    import pydicom

    monkeypatch.setenv("NAPARI_VIP_CACHE", str(tmp_path / "cache"))
    folder, series = ct_series
    arch, path = tiny_sam_checkpoint
    rc = main(["segment", str(folder), "--slice", "2", "--box", "30", "30", "90", "90", "--propagate",
               "--iou-threshold", "-1000", "--sam-arch", arch, "--sam-checkpoint", path, "--name", "lesion",
               "--out", str(tmp_path / "seg.dcm"), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["provenance"]["method"] == "sam-slice-by-slice"
    assert out["voxels"] > 0
    seg = pydicom.dcmread(out["out"]["labels"])
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == series
    assert seg.SegmentSequence[0].SegmentLabel == "lesion"
    assert "box_xyxy" in seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0].AlgorithmParameters


def test_bad_volume_input_exit_code(tiny_sam_arch, tmp_path, capsys):
    np.save(tmp_path / "flat.npy", np.random.default_rng(0).random((40, 40)).astype(np.float32))
    rc = main(["segment", str(tmp_path / "flat.npy"), "--slice", "0", "--box", "5", "5", "20", "20", "--propagate",
               "--sam-arch", tiny_sam_arch, "--untrained"])
    assert rc == 2 and "2D" in capsys.readouterr().err
    np.save(tmp_path / "four.npy", np.zeros((2, 3, 16, 16), np.float32))
    rc = main(["segment", str(tmp_path / "four.npy"), "--slice", "0", "--box", "5", "5", "10", "10", "--propagate",
               "--sam-arch", tiny_sam_arch, "--untrained"])
    assert rc == 2 and "4D" in capsys.readouterr().err


def test_a_correcting_box_and_embedding_every_slice_from_the_command_line(tiny_sam_checkpoint, tmp_path, capsys,
                                                                          monkeypatch):
    """``--correct K X0 Y0 X1 Y1`` adds a prompt on slice K (SAM 1: the run starts there and stops before the key
    slice); ``--embed-slices`` fills the disk cache from ``--slice`` outward, a second run reads it back."""
    monkeypatch.setenv("NAPARI_VIP_CACHE", str(tmp_path / "cache"))
    arch, path = tiny_sam_checkpoint
    np.save(tmp_path / "ct.npy", phantom(z=6, size=64))
    common = ["--sam-arch", arch, "--sam-checkpoint", path, "--json"]
    rc = main(["segment", str(tmp_path / "ct.npy"), "--slice", "3", "--box", "20", "10", "55", "45", "--propagate",
               "--correct", "1", "22", "12", "52", "44", "--iou-threshold", "-1000", "--no-disk-cache", *common])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and [p["slice"] for p in out["prompts"]] == [3, 1]
    assert out["prompts"][1]["box_xyxy"] == [22.0, 12.0, 52.0, 44.0]
    assert out["slices"][0] == 1 and 3 not in out["slices"]
    rc = main(["segment", str(tmp_path / "ct.npy"), "--correct", "1", "22", "12", "52", "44", *common])
    assert rc == 2 and "use it with --propagate" in capsys.readouterr().err

    rc = main(["segment", str(tmp_path / "ct.npy"), "--slice", "2", "--embed-slices", *common])
    first = json.loads(capsys.readouterr().out)
    assert rc == 0 and first["order"] == [2, 3, 1, 4, 0, 5] and set(first["sources"].values()) == {"computed"}
    rc = main(["segment", str(tmp_path / "ct.npy"), "--slice", "5", "--embed-slices", *common])
    again = json.loads(capsys.readouterr().out)
    assert rc == 0 and again["order"][0] == 5 and set(again["sources"].values()) == {"disk"}


def test_a_colour_picture_is_refused_for_propagation_everywhere(tiny_sam2_arch, tiny_sam_arch, tmp_path, capsys):
    """An RGB PNG (H, W, 3) is not a volume of H slices: the command line, the worker and the embedding of slices
    refuse it with one message, before any model is built."""
    from PIL import Image

    from napari_vip.core.errors import VipInputError
    from napari_vip.models.propagation import SlicePrompt
    from napari_vip.models.sam import SamSpec
    from napari_vip.worker.engine import Engine
    from napari_vip.worker.volume import PropagateRequest, VolumeEmbedRequest

    rgb = np.random.default_rng(0).integers(0, 255, (64, 80, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "photo.png")
    messages = []
    for arch in (tiny_sam2_arch, tiny_sam_arch):
        for extra in (["--box", "5", "5", "30", "30", "--propagate"], ["--embed-slices"]):
            rc = main(["segment", str(tmp_path / "photo.png"), "--slice", "0", *extra, "--sam-arch", arch,
                       "--untrained"])
            err = capsys.readouterr().err
            assert rc == 2, err
            messages.append(err.strip().splitlines()[-1])
    assert len(set(messages)) == 1 and "colour picture of shape (64, 80, 3)" in messages[0], messages
    spec = SamSpec(tiny_sam_arch, untrained=True)
    engine = Engine()
    for req in (PropagateRequest(rgb, [SlicePrompt(0, box_xyxy=(5, 5, 30, 30))], spec),
                VolumeEmbedRequest(rgb, 0, spec)):
        with pytest.raises(VipInputError, match="colour picture") as info:
            engine.run(req)
        assert str(info.value) in messages[0]
    assert not engine.loaded_models()
