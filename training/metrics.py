"""Classification metrics in plain numpy: per-class P/R/F1, confusion, calibration, curves.

Every function takes probabilities (N x C) and integer targets (N,), so the same code
scores the torch model during training, the ONNX bundle, and a researcher's own data.
"""

from __future__ import annotations

import itertools

import numpy as np


def confusion(targets: np.ndarray, predicted: np.ndarray, n: int) -> np.ndarray:
    """Counts ``[true, predicted]``."""
    out = np.zeros((n, n), dtype=np.int64)
    np.add.at(out, (targets, predicted), 1)
    return out


def per_class(targets: np.ndarray, predicted: np.ndarray, labels: list[str]) -> dict[str, dict]:
    """precision, recall, F1 and support for every label (0 where undefined)."""
    cm = confusion(targets, predicted, len(labels))
    tp = np.diag(cm).astype(np.float64)
    pred_n, true_n = cm.sum(0), cm.sum(1)
    precision = np.divide(tp, pred_n, out=np.zeros_like(tp), where=pred_n > 0)
    recall = np.divide(tp, true_n, out=np.zeros_like(tp), where=true_n > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {
        lab: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(true_n[i]),
        }
        for i, lab in enumerate(labels)
    }


def macro_f1(table: dict[str, dict], only: list[str] | None = None) -> float:
    """Mean F1 over labels with support (optionally only those in ``only``)."""
    values = [v["f1"] for k, v in table.items() if v["support"] > 0 and (only is None or k in only)]
    return float(np.mean(values)) if values else 0.0


def expected_calibration_error(probs: np.ndarray, targets: np.ndarray, bins: int = 15) -> float:
    """ECE of the top-1 confidence, equal-width bins."""
    conf = probs.max(1)
    correct = probs.argmax(1) == targets
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in itertools.pairwise(edges):
        mask = (conf > lo) & (conf <= hi)
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - conf[mask].mean())
    return float(ece)


def reliability(probs: np.ndarray, targets: np.ndarray, bins: int = 15) -> dict[str, list]:
    """Per-bin mean confidence, accuracy and count (for a reliability diagram)."""
    conf = probs.max(1)
    correct = probs.argmax(1) == targets
    edges = np.linspace(0, 1, bins + 1)
    out = {"confidence": [], "accuracy": [], "count": []}
    for lo, hi in itertools.pairwise(edges):
        mask = (conf > lo) & (conf <= hi)
        out["confidence"].append(float(conf[mask].mean()) if mask.any() else None)
        out["accuracy"].append(float(correct[mask].mean()) if mask.any() else None)
        out["count"].append(int(mask.sum()))
    return out


def pr_curve(scores: np.ndarray, positives: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and threshold at every distinct score (descending threshold)."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], positives[order].astype(np.float64)
    tp = np.cumsum(y)
    fp = np.cumsum(1 - y)
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # last index of each distinct score
    precision = tp[last] / (tp[last] + fp[last])
    recall = tp[last] / max(1.0, y.sum())
    return precision, recall, s[last]


def recall_at_precision(scores: np.ndarray, positives: np.ndarray, target: float) -> float:
    """Best recall among thresholds whose precision is at least ``target`` (0 if none)."""
    precision, recall, _ = pr_curve(scores, positives)
    ok = precision >= target
    return float(recall[ok].max()) if ok.any() else 0.0


def precision_at_recall(scores: np.ndarray, positives: np.ndarray, target: float) -> float:
    """Best precision among thresholds whose recall is at least ``target``."""
    precision, recall, _ = pr_curve(scores, positives)
    ok = recall >= target
    return float(precision[ok].max()) if ok.any() else 0.0


def average_precision(scores: np.ndarray, positives: np.ndarray) -> float:
    """Area under the precision-recall curve (step-wise, as scikit-learn computes it)."""
    precision, recall, _ = pr_curve(scores, positives)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z -= z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def roc_auc(scores: np.ndarray, positives: np.ndarray) -> float:
    """Area under the ROC curve: the chance that a random positive outranks a random
    negative (ties count half), from average ranks (Mann-Whitney U)."""
    scores, positives = np.asarray(scores, dtype=np.float64), np.asarray(positives, dtype=bool)
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    if not n_pos or not n_neg:
        return float("nan")
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(scores))
    s = scores[order]
    starts = np.r_[0, np.flatnonzero(np.diff(s)) + 1]
    ends = np.r_[starts[1:], len(s)]
    for a, b in zip(starts, ends):
        ranks[order[a:b]] = (a + b + 1) / 2.0  # average 1-based rank of a tie block
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def threshold_at_precision(scores: np.ndarray, positives: np.ndarray, target: float) -> float:
    """The lowest score threshold at which precision (photos ranked by score, counted from the
    top) still reaches ``target``; the threshold of the best precision when none does."""
    order = np.argsort(-scores, kind="stable")
    ranked, hits = scores[order], positives[order]
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    ok = np.flatnonzero(precision >= target)
    return float(ranked[ok.max()]) if len(ok) else float(ranked[int(np.argmax(precision))])
