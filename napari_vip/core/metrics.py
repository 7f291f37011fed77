"""Classification metrics from class scores: accuracy, balanced accuracy, one-vs-rest AUROC, per-class report.

Plain numpy (and scipy's ``rankdata`` for AUROC ties); no model code.
"""

from __future__ import annotations

import math

import numpy as np


def _auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties counted half); NaN without both classes."""
    from scipy.stats import rankdata

    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def classification_metrics(probabilities, labels, classes: list[str]) -> dict:
    """Accuracy, balanced accuracy, macro one-vs-rest AUROC and a per-class report.

    Parameters
    ----------
    probabilities : array-like
        ``(N, C)`` class probabilities (or any scores; argmax is the prediction).
    labels : array-like
        ``(N,)`` int class indices.

    Returns
    -------
    dict
        ``accuracy``, ``balanced_accuracy``, ``auroc_macro`` (mean over classes with both positives and
        negatives; NaN if none), ``n``, and ``per_class[c] = {precision, recall, f1, auroc, support}``.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    pred = p.argmax(axis=1) if len(p) else np.zeros(0, dtype=np.int64)
    per, recalls, aucs = {}, [], []
    for k, c in enumerate(classes):
        pos = y == k
        tp = int(((pred == k) & pos).sum())
        n_pred = int((pred == k).sum())
        support = int(pos.sum())
        precision = tp / n_pred if n_pred else 0.0
        recall = tp / support if support else float("nan")
        f1 = 2 * precision * recall / (precision + recall) if support and (precision + recall) > 0 else 0.0
        auc = _auroc(p[:, k], pos) if len(p) else float("nan")
        per[c] = {"precision": precision, "recall": recall, "f1": f1, "auroc": auc, "support": support}
        if support:
            recalls.append(recall)
        if not math.isnan(auc):
            aucs.append(auc)
    return {"n": int(len(y)), "accuracy": float((pred == y).mean()) if len(y) else float("nan"),
            "balanced_accuracy": float(np.mean(recalls)) if recalls else float("nan"),
            "auroc_macro": float(np.mean(aucs)) if aucs else float("nan"), "per_class": per}
