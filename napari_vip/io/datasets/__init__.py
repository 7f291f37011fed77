"""Segmentation data sets: medvlsm's folder layout and annotation files, CSVs of image/mask/prompt, mask checks,
and export of a user's images and masks in medvlsm's layout."""

from ...core.image import resize_nearest_exact
from .export import export_medvlsm, pair_folders
from .masks import mask_from_array, read_binary_mask, read_rgb, resize_mask_released, write_mask_png
from .medvlsm import (
    AnnotationStyle,
    dumps_annotations,
    medvlsm_entry,
    read_medvlsm_annotations,
    write_medvlsm_annotations,
)
from .samples import SegDataset, SegSample, load_sample, open_seg_dataset, read_seg_dataset

__all__ = [
    "AnnotationStyle", "SegDataset", "SegSample", "dumps_annotations", "export_medvlsm", "load_sample",
    "mask_from_array", "medvlsm_entry", "open_seg_dataset", "pair_folders", "read_binary_mask",
    "read_medvlsm_annotations", "read_rgb", "read_seg_dataset", "resize_mask_released", "resize_nearest_exact", "write_mask_png",
    "write_medvlsm_annotations",
]
