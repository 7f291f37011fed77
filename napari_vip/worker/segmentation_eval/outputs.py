"""Files of a segmentation evaluation: ``metrics.json``, ``metrics.csv``, ``table.csv``, ``per_image.csv``,
``dice.png`` (the predicted masks and ``records/`` are written while it runs)."""

from __future__ import annotations

import csv
import json
from pathlib import Path


def _write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else [])
        writer.writeheader()
        writer.writerows(rows)


def metrics_rows(result) -> list[dict]:
    """One row per model x prompt type: mean Dice and IoU with their 95% intervals."""
    rows = []
    for m in result.models:
        for pt in result.prompts:
            c = result.table[m["label"]][pt]
            dlo, dhi = c["dice_ci"] or (None, None)
            ilo, ihi = c["iou_ci"] or (None, None)
            rows.append({"model": m["label"], "kind": m["kind"], "prompt": pt, "n": c["n"], "dice": c["dice"],
                         "dice_ci_low": dlo, "dice_ci_high": dhi, "iou": c["iou"], "iou_ci_low": ilo,
                         "iou_ci_high": ihi})
    return rows


def table_rows(result, metric: str = "dice") -> list[dict]:
    """The study's table: a row per model, a column per prompt type, mean ``metric`` in each cell."""
    return [{"model": m["label"], "kind": m["kind"],
             **{pt: result.table[m["label"]][pt][metric] for pt in result.prompts}} for m in result.models]


def format_table(result, metric: str = "dice") -> str:
    """The table as text: ``mean [low, high]`` per cell."""
    width = max([len(m["label"]) + len(m["kind"]) + 3 for m in result.models] + [12])
    lines = [f"{metric} (95% CI)".ljust(width) + "".join(f"{pt:>22s}" for pt in result.prompts)]
    for m in result.models:
        cells = []
        for pt in result.prompts:
            c = result.table[m["label"]][pt]
            lo, hi = c[f"{metric}_ci"] or (float("nan"), float("nan"))
            cells.append(f"{c[metric]:.3f} [{lo:.3f},{hi:.3f}]".rjust(22))
        lines.append(f"{m['label']} ({m['kind']})".ljust(width) + "".join(cells))
    return "\n".join(lines)


def plot_dice(result, path: Path) -> None:
    """Grouped bars: prompt types along x, one bar per model, 95% intervals as error bars."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import numpy as np
    from matplotlib.figure import Figure

    prompts, models = result.prompts, result.models
    fig = Figure(figsize=(max(4.5, 0.7 * len(prompts) * max(1, len(models)) / 2 + 2.5), 3.6), dpi=100)
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(models))
    x = np.arange(len(prompts))
    for k, m in enumerate(models):
        cells = [result.table[m["label"]][pt] for pt in prompts]
        vals = np.asarray([c["dice"] for c in cells], dtype=float)
        lo = np.asarray([(c["dice_ci"] or [c["dice"]] * 2)[0] for c in cells], dtype=float)
        hi = np.asarray([(c["dice_ci"] or [c["dice"]] * 2)[1] for c in cells], dtype=float)
        ax.bar(x + (k - (len(models) - 1) / 2) * width, vals, width, yerr=[np.maximum(vals - lo, 0),
               np.maximum(hi - vals, 0)], capsize=2, label=f"{m['label']} ({m['kind']})")
    ax.set_xticks(x, prompts)
    ax.set_ylabel("mean Dice (95% CI)")
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    fig.savefig(path)


def write_seg_outputs(result, out_dir) -> dict:
    """Write the files; returns ``{kind: path}``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"metrics_json": out / "metrics.json", "metrics_csv": out / "metrics.csv", "table_csv": out / "table.csv",
             "per_image_csv": out / "per_image.csv", "plot": out / "dice.png", "records": out / "records",
             "masks": out / "masks"}
    _write_csv(files["metrics_csv"], metrics_rows(result))
    _write_csv(files["table_csv"], table_rows(result))
    keys = ("model", "prompt_type", "sample_id", "patient_id", "text", "dice", "iou", "mask")
    _write_csv(files["per_image_csv"], [{k: r.get(k) for k in keys} for r in result.per_image])
    plot_dice(result, files["plot"])
    files_str = {k: str(v) for k, v in files.items()}
    with open(files["metrics_json"], "w", encoding="utf-8") as f:
        json.dump({**result.to_dict(), "files": files_str}, f, indent=2)
    return files_str
