"""Analysis for researchers: the evaluation and a bulk scan as tables, curves and photo lists.

The notebooks in ``notebooks/`` call these functions and only draw; everything that
decides a number lives here and is tested in ``tests/test_analysis.py``. Nothing here
imports torch or matplotlib.

**Evaluation** (:func:`evaluate`): a bundle's logits on a dataset split in the clean and
ad-style views, computed by :mod:`training.evaluate` exactly as ``wildscan evaluate``
does (so the metrics equal the model card's, checked by :func:`compare_metrics`), cached
under ``runs/notebooks/`` so the error-analysis notebook does not recompute them.
Tables and curve data: :func:`summary_table`, :func:`per_class_table`,
:func:`confusion_matrix`, :func:`threshold_tradeoff`, :func:`pr_curves`,
:func:`flag_curve`, :func:`reliability_data`.

Error cases are in :mod:`training.error_cases`, the demo crawl in
:mod:`training.demo_crawl`, scan analysis with the scanner (:mod:`serving.scan.analysis`).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vision.runtime import Classifier
from vision.tables import Table, is_wildlife
from vision.taxonomy import get_category

from . import data, metrics
from .evaluate import (
    PRECISION_TARGETS,
    SUMMARY_ROWS,
    VIEWS,
    kind_rows,
    metrics_from_logits,
    predict_logits,
    split_examples,
)

CACHE_DIR = data.REPO / "runs" / "notebooks"
# Modules whose code decides the logits (decoding, preprocessing, the ad-style view, the
# ONNX run): a change to any of them invalidates the cached logits.
_LOGIT_CODE = ("vision.preprocess", "vision.bundle", "vision.runtime", "training.augment", "training.evaluate")


# --- evaluation -----------------------------------------------------------------------------


def load_classifier(model: str | Path | None = None) -> Classifier:
    """The bundle loaded as ``wildscan evaluate`` loads it: two threads, trained head only.

    ``model``: a registered name, a path, or ``None`` for the shipped model. Raises
    :class:`vision.errors.BundleError` when it cannot be found or read.
    """
    from vision.registry import create_model

    return create_model(model, intra_threads=2, galleries=None)


@dataclass
class Evaluation:
    """A model's logits on a split in every view, and the metrics computed from them.

    ``metrics`` is what :func:`training.evaluate.evaluate_split` returns (the content of
    ``metrics.json``); ``examples[i]`` is the photo behind row ``i`` of every
    ``logits[view]`` and ``targets[i]`` its class index in ``labels``.
    """

    classifier: Classifier
    split: str
    examples: list[data.Example]
    targets: np.ndarray
    logits: dict[str, np.ndarray]
    metrics: dict
    _decisions: dict = field(default_factory=dict, repr=False)

    @property
    def labels(self) -> list[str]:
        return self.classifier.labels

    @property
    def views(self) -> list[str]:
        return list(self.logits)

    def probabilities(self, view: str) -> np.ndarray:
        """Temperature-scaled probabilities (N x C), as the product reports them."""
        return self.classifier.probabilities(self.logits[view]).astype(np.float64)

    def raw_probabilities(self, view: str) -> np.ndarray:
        """Scores without temperature (N x C)."""
        return self.classifier.probabilities(self.logits[view], temperature=1.0).astype(np.float64)

    def predicted(self, view: str) -> np.ndarray:
        """Top-1 class index per photo (what the per-class table and confusion matrix count)."""
        return self.probabilities(view).argmax(1)

    def decisions(self, view: str) -> list[tuple[str, float, bool]]:
        """The decision rule's ``(label, score, flagged)`` per photo (thresholds, ``uncertain``)."""
        if view not in self._decisions:
            probs = self.probabilities(view)
            self._decisions[view] = [self.classifier.decide(p.astype(np.float32)) for p in probs]
        return self._decisions[view]

    def flagged(self, view: str) -> np.ndarray:
        return np.array([d[2] for d in self.decisions(view)], dtype=bool)

    def wildlife_targets(self) -> np.ndarray:
        """Whether each photo's true class is wildlife."""
        wild = np.array([is_wildlife(lab) for lab in self.labels])
        return wild[self.targets]


def evaluate(
    classifier: Classifier,
    split: str = "test",
    *,
    limit_per_class: int = 0,
    cache_dir: Path | None = CACHE_DIR,
    refresh: bool = False,
    progress: bool = False,
) -> Evaluation:
    """Evaluate ``classifier`` on ``split`` in every view; logits cached in ``cache_dir``.

    The logits come from :func:`training.evaluate.predict_logits` and the metrics from
    :func:`training.evaluate.metrics_from_logits`: the same computation as
    ``wildscan evaluate``. The cache file is named by a key over the model file, the split
    definition, the code that produces logits and the library versions, so a stale cache
    is never read; ``refresh`` recomputes anyway, ``cache_dir=None`` disables caching.
    """
    examples, targets = split_examples(classifier, split, limit_per_class)
    cache = None
    if cache_dir is not None:
        key = cache_key(classifier, split, limit_per_class)[:20]
        cache = Path(cache_dir) / f"{classifier.config.name}.{split}.{key}.npz"
    logits = None if refresh or cache is None else read_logits(cache, examples, classifier.labels)
    if logits is None:
        logits = {view: predict_logits(classifier, examples, view, progress) for view in VIEWS}
        if cache is not None:
            write_logits(cache, logits, examples)
    return Evaluation(
        classifier,
        split,
        examples,
        targets,
        logits,
        metrics_from_logits(classifier, split, logits, targets, [ex.fine_label for ex in examples]),
    )


def cache_key(classifier: Classifier, split: str, limit_per_class: int = 0) -> str:
    """SHA-256 over everything the logits depend on (model, split file, code, library versions)."""
    import importlib

    import onnxruntime
    import PIL

    parts = {
        "model": classifier.model_info()["sha256"],
        "split": split,
        "limit_per_class": limit_per_class,
        "splits_csv": hashlib.sha256((data.DATASET_DIR / "splits.csv").read_bytes()).hexdigest(),
        "code": {
            name: hashlib.sha256(Path(importlib.import_module(name).__file__).read_bytes()).hexdigest()
            for name in _LOGIT_CODE
        },
        "versions": [onnxruntime.__version__, PIL.__version__, np.__version__],
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def write_logits(path: Path, logits: dict[str, np.ndarray], examples: Sequence[data.Example]) -> Path:
    """Save logits per view with the examples' SHA-256 (atomically)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, _sha256=np.array([ex.sha256 for ex in examples]), **logits)
    tmp.replace(path)
    return path


def read_logits(path: Path, examples: Sequence[data.Example], labels: Sequence[str]) -> dict[str, np.ndarray] | None:
    """Logits saved by :func:`write_logits`, or ``None`` if absent or not for these examples."""
    if not path.is_file():
        return None
    with np.load(path) as saved:
        if list(saved["_sha256"]) != [ex.sha256 for ex in examples]:
            return None
        logits = {view: saved[view] for view in VIEWS if view in saved}
    if set(logits) != set(VIEWS) or any(
        v.shape[0] != len(examples) or v.shape[-1] != len(labels) for v in logits.values()
    ):
        return None
    return logits


def reference_metrics_path(classifier: Classifier) -> Path:
    """Where the model card's numbers are: ``NAME.eval/metrics.json`` beside the bundle."""
    return classifier.bundle.onnx_path.with_suffix(".eval") / "metrics.json"


class MetricsMismatch(AssertionError):
    """Computed metrics differ from the published ones (the message lists the differences)."""


def check_reference(ev: Evaluation, reference: str | Path | None = "auto", tol: float = 1e-9) -> str:
    """Check that ``ev``'s metrics equal a published ``metrics.json``; returns what was checked.

    ``reference``: ``"auto"`` for the model card's file beside the bundle
    (:func:`reference_metrics_path`; not checked when it covers another split), a path,
    or ``None`` for no check. Raises ``FileNotFoundError`` when the file is missing and
    :class:`MetricsMismatch` listing every difference beyond ``tol``.
    """
    if reference is None:
        return "not checked: no reference given"
    path = reference_metrics_path(ev.classifier) if reference == "auto" else Path(reference)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no published metrics to check against (set the reference to None to skip)")
    published = json.loads(path.read_text())
    if reference == "auto" and published.get("split") != ev.split:
        return f"not checked: {path} is for split {published.get('split')!r}, not {ev.split!r}"
    problems = compare_metrics(ev.metrics, published, tol)
    if problems:
        shown = "\n".join(problems[:30]) + (f"\n... and {len(problems) - 30} more" if len(problems) > 30 else "")
        raise MetricsMismatch(f"{len(problems)} numbers differ from {path}:\n{shown}")
    return f"every number equals {path} (tolerance {tol:g})"


def compare_metrics(computed: dict, reference: dict, tol: float = 1e-9) -> list[str]:
    """Every difference between two metrics dicts, as ``"path: computed != reference"`` lines.

    Keys starting with ``_`` (logits, examples) are ignored; ``computed`` is passed through
    JSON first so tuples and lists compare alike. Numbers may differ by ``tol``; text,
    booleans, ``None`` and the structure must be equal. Empty list: the same numbers.
    """
    plain = json.loads(json.dumps({k: v for k, v in computed.items() if not str(k).startswith("_")}))
    ref = {k: v for k, v in reference.items() if not str(k).startswith("_")}
    out: list[str] = []
    _diff(plain, ref, tol, "", out)
    return out


def _diff(a, b, tol: float, path: str, out: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            where = f"{path}.{key}" if path else str(key)
            if key not in b:
                out.append(f"{where}: only in the computed metrics")
            elif key not in a:
                out.append(f"{where}: only in the reference")
            else:
                _diff(a[key], b[key], tol, where, out)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append(f"{path}: {len(a)} items != {len(b)}")
        else:
            for i, (x, y) in enumerate(zip(a, b)):
                _diff(x, y, tol, f"{path}[{i}]", out)
    elif _is_number(a) and _is_number(b):
        if not (abs(a - b) <= tol or (math.isnan(a) and math.isnan(b))):
            out.append(f"{path}: {a!r} != {b!r}")
    elif a != b or type(a) is not type(b):
        out.append(f"{path}: {a!r} != {b!r}")


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def summary_table(m: dict) -> Table:
    """The headline numbers (macro-F1, flag precision/recall, ECE, ...) per view, from metrics."""
    views = [v for v in VIEWS if v in m]
    title = f"{m['model']['name']} {m['model']['version']}, split {m['split']}, {m[views[0]]['n']} photos per view"
    return Table(["metric", *views], [[name, *(get(m[v]) for v in views)] for name, get in SUMMARY_ROWS], title)


def per_class_table(m: dict) -> Table:
    """Precision, recall, F1 and support per class in every view, with group and threshold."""
    views = [v for v in VIEWS if v in m]
    columns = ["class", "group", "support"] + [f"{s} {v}" for v in views for s in ("P", "R", "F1")] + ["threshold"]
    rows = []
    for lab in m["labels"]:
        row = [lab, get_category(lab).group if known_label(lab) else "", m[views[0]]["per_class"][lab]["support"]]
        for v in views:
            c = m[v]["per_class"][lab]
            row += [c["precision"], c["recall"], c["f1"]]
        row.append(m["thresholds"].get(lab))
        rows.append(row)
    macro = ", ".join(f"{v}: wildlife {m[v]['macro_f1_wildlife']:.3f} / all {m[v]['macro_f1_all']:.3f}" for v in views)
    return Table(columns, rows, f"per class (macro-F1 {macro})")


def kind_table(m: dict) -> Table:
    """The share of each kind of photo (the manifest's fine label) flagged in every view:
    ordinary and look-alike kinds first, most flagged first, then wildlife kinds
    (:func:`training.evaluate.kind_rows`)."""
    views = [v for v in VIEWS if v in m]
    columns = ["kind", "class", "photos", *(f"flagged {v}" for v in views), "possible match clean", "flagged as"]
    return Table(columns, kind_rows(m), "flagged, by kind of photo")


def known_label(label: str) -> bool:
    try:
        get_category(label)
        return True
    except KeyError:
        return False


def confusion_matrix(m: dict, view: str = "clean", normalize: bool = True) -> np.ndarray:
    """The confusion matrix ``[true, predicted]`` of a view; rows sum to 1 when ``normalize``."""
    cm = np.asarray(m[view]["confusion"], dtype=np.float64)
    if not normalize:
        return cm
    totals = cm.sum(1, keepdims=True)
    return np.divide(cm, totals, out=np.zeros_like(cm), where=totals > 0)


@dataclass(frozen=True)
class Curve:
    """A precision-recall curve: one point per distinct score, threshold descending."""

    precision: np.ndarray
    recall: np.ndarray
    thresholds: np.ndarray
    average_precision: float
    positives: int


def curve(scores: np.ndarray, positives: np.ndarray) -> Curve:
    """The :class:`Curve` of ``scores`` against boolean ``positives``."""
    p, r, t = metrics.pr_curve(scores, positives)
    return Curve(p, r, t, metrics.average_precision(scores, positives), int(np.sum(positives)))


def flag_curve(ev: Evaluation, view: str = "clean") -> Curve:
    """Wildlife vs not: the total wildlife probability against the photo's true group."""
    return curve(ev.classifier.wildlife_score(ev.probabilities(view)), ev.wildlife_targets())


def flag_operating_point(ev: Evaluation, view: str = "clean") -> tuple[float, float]:
    """``(precision, recall)`` of the actual flag decision (per-class thresholds) in a view."""
    flag = ev.metrics[view]["flag"]
    return flag["precision"], flag["recall"]


def pr_curves(ev: Evaluation, view: str = "clean", labels: Iterable[str] | None = None) -> dict[str, Curve]:
    """One-vs-rest curves of each class's probability (default: wildlife classes with photos)."""
    probs = ev.probabilities(view)
    chosen = list(labels) if labels is not None else [lab for lab in ev.labels if is_wildlife(lab)]
    out = {}
    for lab in chosen:
        k = ev.labels.index(lab)
        if (ev.targets == k).any():
            out[lab] = curve(probs[:, k], ev.targets == k)
    return out


def operating_point(scores: np.ndarray, positives: np.ndarray, target: float) -> tuple[float, float]:
    """``(recall, threshold)``: the best recall at precision >= ``target`` and the highest
    score threshold that reaches it; ``(0.0, nan)`` when no threshold is precise enough."""
    precision, recall, thresholds = metrics.pr_curve(scores, positives)
    ok = np.flatnonzero(precision >= target)
    if not ok.size:
        return 0.0, float("nan")
    best = recall[ok].max()
    first = ok[recall[ok] == best][0]  # thresholds descend: the first is the highest
    return float(best), float(thresholds[first])


def threshold_tradeoff(ev: Evaluation, view: str = "clean", targets: Sequence[float] = PRECISION_TARGETS) -> Table:
    """What recall each wildlife class keeps at precision 0.90 / 0.95 / 0.99, and at which threshold.

    One-vs-rest on the class's calibrated probability, with the shipped threshold's own
    precision and recall beside it; the last row is the flag decision's wildlife score
    (any wildlife class vs none). The recalls equal ``metrics[view]["recall_at_precision"]``.
    """
    probs = ev.probabilities(view)
    columns = ["class", "support", "threshold", "P at threshold", "R at threshold"]
    columns += [f"{name} at P≥{t:.2f}" for t in targets for name in ("recall", "threshold")]
    rows = []
    for lab in ev.metrics[view]["recall_at_precision"]:
        k = ev.labels.index(lab)
        rows.append(_tradeoff_row(lab, probs[:, k], ev.targets == k, ev.classifier.config.threshold(lab), targets))
    wild_score = ev.classifier.wildlife_score(probs)
    rows.append(_tradeoff_row("any wildlife (flag score)", wild_score, ev.wildlife_targets(), None, targets))
    return Table(columns, rows, f"threshold trade-off, {view} view")


def _tradeoff_row(
    name: str, scores: np.ndarray, positives: np.ndarray, threshold: float | None, targets: Sequence[float]
) -> list:
    row = [name, int(positives.sum()), threshold]
    if threshold is None:
        row += [None, None]
    else:
        chosen = scores >= threshold
        tp = int((chosen & positives).sum())
        row += [tp / max(1, int(chosen.sum())), tp / max(1, int(positives.sum()))]
    for t in targets:
        row += list(operating_point(scores, positives, t))
    return row


def reliability_data(ev: Evaluation, view: str = "clean", bins: int = 15) -> dict:
    """Reliability diagram data before and after temperature scaling, with both ECEs.

    ``{"before": {...}, "after": {...}, "ece_before", "ece_after", "temperature"}``; each
    side is :func:`training.metrics.reliability` (per-bin confidence, accuracy, count).
    With the default 15 bins the ECEs equal the metrics' ``ece_*_temperature``.
    """
    raw, calibrated = ev.raw_probabilities(view), ev.probabilities(view)
    return {
        "before": metrics.reliability(raw, ev.targets, bins),
        "after": metrics.reliability(calibrated, ev.targets, bins),
        "ece_before": metrics.expected_calibration_error(raw, ev.targets, bins),
        "ece_after": metrics.expected_calibration_error(calibrated, ev.targets, bins),
        "temperature": ev.classifier.config.temperature,
        "bins": bins,
    }
