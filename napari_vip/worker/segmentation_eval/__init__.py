"""Dataset evaluation of text-prompted segmentation (medvlsm's table): :mod:`.run` (request, handler, resumable
records, the table), :mod:`.sample` (one sample: logits, Dice and IoU with MONAI), :mod:`.cluster` (on Dask),
:mod:`.outputs` (metrics.json/csv, table.csv, per_image.csv, dice.png)."""

from .run import EvaluateSegRequest, EvaluateSegResult, SegModelEntry, evaluate_seg

__all__ = ["EvaluateSegRequest", "EvaluateSegResult", "SegModelEntry", "evaluate_seg"]
