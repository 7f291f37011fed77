"""Files of a dataset evaluation: ``predictions.csv``, ``metrics.json``, ``metrics.csv`` and ``auroc.png``."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from .evaluation_metrics import RELEASED

BOX_COLUMNS = ("x0", "y0", "x1", "y1")


def prediction_rows(result):
    """One dict per sample x condition: id, path, label, condition, the box, one probability per class
    (named by the class), predicted."""
    for c in result.conditions:
        probs = result.probabilities[c.name]
        for s, p in zip(result.samples, probs):
            box = s.box_xyxy if s.box_xyxy is not None else ("",) * 4
            row = {"id": s.id, "path": s.path, "label": s.label, "condition": c.name,
                   **dict(zip(BOX_COLUMNS, box))}
            row.update({k: float(v) for k, v in zip(result.classes, p)})
            row["predicted"] = result.classes[int(p.argmax())]
            yield row


def metrics_rows(result) -> list[dict]:
    """One row per condition: ``condition``, the released code's columns, then ECE, CIs, differences to
    ``none`` with CIs and DeLong's p-value, and each class's AUROC."""
    rows = []
    for c in result.conditions:
        m = result.metrics[c.name]
        row = {"condition": c.name, **{k: m[k] for k in RELEASED}, "ece": m["ece"]}
        for k in RELEASED:
            lo_hi = m["ci"].get(k) or (None, None)
            row[f"{k}_ci_low"], row[f"{k}_ci_high"] = lo_hi
        for k in RELEASED:
            row[f"{k}_minus_none"] = (m.get("difference") or {}).get(k)
            lo_hi = (m.get("difference_ci") or {}).get(k) or (None, None)
            row[f"{k}_minus_none_ci_low"], row[f"{k}_minus_none_ci_high"] = lo_hi
        row["delong_p"] = (m.get("delong") or {}).get("p_value")
        for cls in result.classes:
            row[f"auroc[{cls}]"] = m["per_class"][cls]["auroc"]
        rows.append(row)
    return rows


def _write_csv(path: Path, rows) -> None:
    rows = list(rows)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else [])
        writer.writeheader()
        writer.writerows(rows)


def plot_auroc(result, path: Path) -> None:
    """Conditions as bars with their 95% intervals, the ``none`` level as a dashed line."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    names = [c.name for c in result.conditions]
    values = [result.metrics[n]["auroc"] or 0.0 for n in names]
    cis = [result.metrics[n]["ci"].get("auroc") or [v, v] for n, v in zip(names, values)]
    err = [[max(0.0, v - lo) for v, (lo, _) in zip(values, cis)], [max(0.0, hi - v) for v, (_, hi) in zip(values, cis)]]
    fig = Figure(figsize=(max(4.0, 0.8 * len(names) + 1.5), 3.5), dpi=100)
    ax = fig.add_subplot()
    ax.bar(range(len(names)), values, yerr=err, capsize=3, color="#4c72b0")
    ax.axhline(result.metrics["none"]["auroc"] or 0.0, color="k", ls="--", lw=1, label="none")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_ylabel("macro AUROC (95% CI)")
    ax.set_ylim(0, 1)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)


def write_outputs(result, out_dir) -> dict:
    """Write the four files; returns ``{kind: path}``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"predictions": out / "predictions.csv", "metrics_json": out / "metrics.json",
             "metrics_csv": out / "metrics.csv", "plot": out / "auroc.png"}
    _write_csv(files["predictions"], prediction_rows(result))
    _write_csv(files["metrics_csv"], metrics_rows(result))
    files_str = {k: str(v) for k, v in files.items()}
    with open(files["metrics_json"], "w", encoding="utf-8") as f:
        json.dump({**result.to_dict(), "files": {**result.files, **files_str}}, f, indent=2)
    plot_auroc(result, files["plot"])
    return files_str


def render_stems(samples) -> list[str]:
    """A file-name stem per sample: its id with every character outside ``[A-Za-z0-9._-]`` as ``_``; a stem
    met before gets ``~N`` (N = the sample's position), so every sample has its own files."""
    import re

    stems, seen = [], set()
    for n, s in enumerate(samples):
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", str(s.id)).strip("_") or "sample"
        if stem in seen:
            stem = f"{stem}~{n}"
        seen.add(stem)
        stems.append(stem)
    return stems


class RenderWriter:
    """Writes every (sample, condition) image the model receives to ``folder/<sample>__<condition>.png``, and
    an index ``folder/renders.csv`` (``id, condition, file``) in sample and condition order.

    Call it as ``on_render(sample_index, render_key, image)`` (from any thread); conditions that share a
    render (``bbox`` and ``bbox+text``) each get their file.
    """

    def __init__(self, folder, samples, conditions):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.samples = list(samples)
        self.stems = render_stems(self.samples)
        self.by_key: dict = {}
        for c in conditions:
            self.by_key.setdefault(c.render_key(), []).append(c.name)
        self.written: dict = {}

    def file(self, index: int, condition: str) -> Path:
        return self.folder / f"{self.stems[index]}__{condition}.png"

    def __call__(self, index: int, render_key: str, image) -> None:
        from PIL import Image

        for name in self.by_key.get(render_key, []):
            path = self.file(index, name)
            Image.fromarray(image).save(path)
            self.written[(index, name)] = path

    def write_index(self, conditions) -> str:
        """``renders.csv`` of the files written; returns its path."""
        rows = [{"id": s.id, "condition": c.name, "file": self.written[(i, c.name)].name}
                for i, s in enumerate(self.samples) for c in conditions if (i, c.name) in self.written]
        path = self.folder / "renders.csv"
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=["id", "condition", "file"])
            writer.writeheader()
            writer.writerows(rows)
        return str(path)
