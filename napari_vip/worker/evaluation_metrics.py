"""Metrics of a dataset evaluation: the released code's (scikit-learn), per-class AUROC, calibration,
bootstrap confidence intervals resampled by patient, paired differences to a reference condition and
DeLong's test for the AUROC difference.

Arrays: ``labels`` ``(N,)`` int class indices; ``probs`` ``(N, C)`` float, rows sum to 1.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

#: The released code's columns, in its order.
RELEASED = ("accuracy", "balanced_accuracy", "auroc", "auprc", "mcc")
#: Bins of the expected calibration error.
ECE_BINS = 15


def one_hot(labels, n_classes: int) -> np.ndarray:
    out = np.zeros((len(labels), n_classes))
    out[np.arange(len(labels)), np.asarray(labels, dtype=np.int64)] = 1
    return out


def released_metrics(labels, probs, released_quirks: bool = False) -> dict:
    """Accuracy, balanced accuracy, macro one-vs-rest AUROC and macro AUPRC on one-hot labels, MCC, as the
    released code computes them (AUROC/AUPRC ``None`` where scikit-learn cannot, e.g. a class without samples).

    With ``released_quirks`` MCC is ``None`` too where AUROC/AUPRC are: the released code computes the three in
    one ``try`` block and sets all of them to ``None`` when scikit-learn refuses the AUROC."""
    from sklearn.metrics import average_precision_score, balanced_accuracy_score, matthews_corrcoef, roc_auc_score

    labels = np.asarray(labels)
    probs = np.asarray(probs, dtype=np.float64)
    pred = probs.argmax(1)
    truth = one_hot(labels, probs.shape[1])
    out = {"accuracy": float(np.mean(labels == pred)),
           "balanced_accuracy": float(balanced_accuracy_score(labels, pred)),
           "mcc": float(matthews_corrcoef(labels, pred))}
    try:
        if any(len(np.unique(truth[:, k])) < 2 for k in range(truth.shape[1])):
            # scikit-learn 1.6 (the released code's) raises here; later versions warn and give NaN
            raise ValueError("a class has no samples (or every sample)")
        out["auroc"] = float(roc_auc_score(truth, probs, average="macro", multi_class="ovr"))
        out["auprc"] = float(average_precision_score(truth, probs, average="macro"))
    except ValueError:
        out["auroc"] = out["auprc"] = None
        if released_quirks:
            out["mcc"] = None
    return {k: out[k] for k in RELEASED}


def class_report(labels, probs, classes) -> dict:
    """scikit-learn's classification report (precision, recall, f1, support per class) plus each class's
    one-vs-rest AUROC (``None`` when the class has no positives or no negatives)."""
    from sklearn.metrics import classification_report, roc_auc_score

    labels = np.asarray(labels)
    probs = np.asarray(probs, dtype=np.float64)
    report = classification_report(labels, probs.argmax(1), labels=list(range(len(classes))),
                                   target_names=list(classes), output_dict=True, zero_division=0)
    for k, c in enumerate(classes):
        pos = labels == k
        report[c]["auroc"] = float(roc_auc_score(pos, probs[:, k])) if 0 < pos.sum() < len(pos) else None
    return report


def expected_calibration_error(labels, probs, bins: int = ECE_BINS) -> float:
    """ECE of the top-class confidence: ``sum_b n_b / N * |accuracy_b - confidence_b|`` over ``bins``
    equal-width bins of (0, 1] (a bin holds confidences in ``(lo, hi]``)."""
    probs = np.asarray(probs, dtype=np.float64)
    conf = probs.max(1)
    correct = probs.argmax(1) == np.asarray(labels)
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in itertools.pairwise(edges):
        inside = (conf > lo) & (conf <= hi)
        if inside.any():
            ece += inside.mean() * abs(correct[inside].mean() - conf[inside].mean())
    return float(ece)


def _components(scores, positive) -> tuple[np.ndarray, float]:
    """DeLong's structural components of one AUROC: per sample, ``V10`` (positives) or ``V01`` (negatives)
    centred on the AUROC and scaled so that their squares sum to DeLong's variance; and the AUROC."""
    x, y = scores[positive], scores[~positive]
    m, n = len(x), len(y)
    psi = (x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])
    auc = float(psi.mean())
    out = np.zeros(len(scores))
    out[positive] = (psi.mean(1) - auc) / math.sqrt(m * (m - 1)) if m > 1 else 0.0
    out[~positive] = (psi.mean(0) - auc) / math.sqrt(n * (n - 1)) if n > 1 else 0.0
    return out, auc


def _macro_components(labels, probs) -> tuple[np.ndarray, float]:
    """Components of the macro one-vs-rest AUROC: the class-mean of the per-class components (for two classes
    with probabilities summing to one this is DeLong's exactly, both classes giving the same AUROC)."""
    labels = np.asarray(labels)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.shape[1] == 2:
        return _components(probs[:, 1], labels == 1)
    comps, aucs = zip(*(_components(probs[:, k], labels == k) for k in range(probs.shape[1])))
    return np.mean(comps, axis=0), float(np.mean(aucs))


def delong_test(labels, probs_a, probs_b) -> dict:
    """DeLong's test of the paired difference of two macro AUROCs on the same samples.

    Returns ``{"auroc_a", "auroc_b", "difference" (a - b), "se", "z", "p_value"}`` (two-sided).  For more than
    two classes the variance sums the per-sample class-mean components, so the classes' covariance counts.
    """
    ca, auc_a = _macro_components(labels, probs_a)
    cb, auc_b = _macro_components(labels, probs_b)
    diff = auc_a - auc_b
    se = float(math.sqrt(np.sum((ca - cb) ** 2)))
    z = diff / se if se > 0 else (0.0 if diff == 0 else math.copysign(math.inf, diff))
    return {"auroc_a": auc_a, "auroc_b": auc_b, "difference": diff, "se": se, "z": float(z),
            "p_value": float(math.erfc(abs(z) / math.sqrt(2)))}


def resample_indices(n: int, groups, n_boot: int, seed: int) -> list[np.ndarray]:
    """``n_boot`` bootstrap resamples of ``range(n)``: whole groups (patients) drawn with replacement when
    ``groups`` is given, else samples.  Same seed, same resamples."""
    rng = np.random.default_rng(seed)
    if groups is None:
        return [rng.integers(0, n, n) for _ in range(n_boot)]
    keys = list(dict.fromkeys(groups))
    members = {k: [] for k in keys}
    for i, g in enumerate(groups):
        members[g].append(i)
    members_arr = [np.asarray(members[k]) for k in keys]
    return [np.concatenate([members_arr[j] for j in rng.integers(0, len(keys), len(keys))])
            for _ in range(n_boot)]


def _interval(values) -> list | None:
    values = np.asarray([v for v in values if v is not None and np.isfinite(v)])
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))] if len(values) else None


def bootstrap(labels, probs_by_condition: dict, reference: str | None, groups=None, n_boot: int = 1000,
              seed: int = 0, released_quirks: bool = False) -> dict:
    """95% percentile intervals of the released metrics per condition, and of each condition's difference to
    ``reference``, on the same resamples.

    Returns
    -------
    dict
        ``{condition: {"ci": {metric: [lo, hi]}, "difference_ci": {metric: [lo, hi]}}, "_resamples": {...}}``;
        resamples without every class are left out of AUROC/AUPRC (counted in ``auroc_resamples_used``).
    """
    labels = np.asarray(labels)
    draws = resample_indices(len(labels), groups, n_boot, seed) if n_boot > 0 else []
    values = {c: {m: [] for m in RELEASED} for c in probs_by_condition}
    for idx in draws:
        for c, p in probs_by_condition.items():
            for m, v in released_metrics(labels[idx], np.asarray(p)[idx], released_quirks).items():
                values[c][m].append(v)
    out = {}
    for c in probs_by_condition:
        entry = {"ci": {m: _interval(values[c][m]) for m in RELEASED}}
        if reference is not None and c != reference:
            entry["difference_ci"] = {m: _interval([None if a is None or b is None else a - b
                                                    for a, b in zip(values[c][m], values[reference][m])])
                                      for m in RELEASED}
        out[c] = entry
    used = sum(v is not None for v in next(iter(values.values()))["auroc"]) if values else 0
    out["_resamples"] = {"n": len(draws), "seed": seed, "unit": "patient" if groups is not None else "sample",
                         "auroc_resamples_used": used}
    return out
