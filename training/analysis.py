"""Analysis for researchers: the evaluation and a bulk scan as tables, curves and photo lists.

The notebooks in ``notebooks/`` call these functions and only draw; everything that
decides a number lives here and is tested in ``tests/test_analysis.py``. Nothing here
imports torch or matplotlib.

Three parts:

- **Evaluation** (:func:`evaluate`): a bundle's logits on a dataset split in the clean and
  ad-style views, computed by :mod:`training.evaluate` exactly as ``wildscan evaluate``
  does (so the metrics equal the model card's, checked by :func:`compare_metrics`), cached
  under ``runs/notebooks/`` so the error-analysis notebook does not recompute them.
  Tables and curve data: :func:`summary_table`, :func:`per_class_table`,
  :func:`confusion_matrix`, :func:`threshold_tradeoff`, :func:`pr_curves`,
  :func:`flag_curve`, :func:`reliability_data`.
- **Errors** (:class:`Case`): the worst false positives and negatives per class
  (:func:`class_errors`), wrong flag decisions (:func:`flag_errors`) and the confusions
  between look-alikes and wildlife (:func:`lookalike_confusions`, :func:`lookalike_cases`),
  each with the photo as the model saw it (:func:`view_image`).
- **Scans**: a results file of ``wildscan scan`` (:func:`load_results`) summarised with
  ``wildscan report``'s own aggregation (:func:`scan_report`), flagged items per category,
  seller and platform, the largest near-duplicate clusters, the score distribution; and a
  small demo crawl scanned with the real scanner (:func:`make_demo_scan`).
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import random
import shutil
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vision.preprocess import load_image
from vision.runtime import Classifier
from vision.taxonomy import get_category, label_name

from . import data, metrics
from .augment import eval_ad_view
from .listing import listing_view
from .evaluate import PRECISION_TARGETS, SUMMARY_ROWS, VIEWS, metrics_from_logits, predict_logits, split_examples

CACHE_DIR = data.REPO / "runs" / "notebooks"
# Modules whose code decides the logits (decoding, preprocessing, the ad-style view, the
# ONNX run): a change to any of them invalidates the cached logits.
_LOGIT_CODE = ("vision.preprocess", "vision.bundle", "vision.runtime", "training.augment", "training.evaluate")


# --- tables ---------------------------------------------------------------------------------


@dataclass
class Table:
    """Rows to show: an HTML table in a notebook, Markdown as text, a DataFrame on request."""

    columns: list[str]
    rows: list[list]
    title: str = ""

    def records(self) -> list[dict]:
        """The rows as dicts keyed by column."""
        return [dict(zip(self.columns, row)) for row in self.rows]

    def column(self, name: str) -> list:
        """One column's values; raises ``KeyError`` naming the columns if there is none."""
        if name not in self.columns:
            raise KeyError(f"no column {name!r}; columns are {', '.join(self.columns)}")
        k = self.columns.index(name)
        return [row[k] for row in self.rows]

    def to_markdown(self, digits: int = 3) -> str:
        lines = [f"**{self.title}**", ""] if self.title else []
        lines += ["| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]
        lines += ["| " + " | ".join(_cell(v, digits) for v in row) + " |" for row in self.rows]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(_cell(v, 3))}</td>" for v in row) + "</tr>" for row in self.rows
        )
        caption = f"<caption>{html.escape(self.title)}</caption>" if self.title else ""
        return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def to_pandas(self):
        """A ``pandas.DataFrame`` (pandas is not a dependency of wildscan: install it to use this)."""
        import pandas as pd

        return pd.DataFrame(self.rows, columns=self.columns)


def _cell(value, digits: int) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def category_name(label: str) -> str:
    """English display name of a label, or the label itself when the taxonomy lacks it."""
    try:
        return label_name(label)
    except KeyError:
        return label


def is_wildlife(label: str) -> bool:
    try:
        return get_category(label).is_wildlife
    except KeyError:
        return False


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


def evaluate(classifier: Classifier, split: str = "test", *, limit_per_class: int = 0,
             cache_dir: Path | None = CACHE_DIR, refresh: bool = False, progress: bool = False) -> Evaluation:
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
    return Evaluation(classifier, split, examples, targets, logits,
                      metrics_from_logits(classifier, split, logits, targets))


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
        "code": {name: hashlib.sha256(Path(importlib.import_module(name).__file__).read_bytes()).hexdigest()
                 for name in _LOGIT_CODE},
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
    if set(logits) != set(VIEWS) or any(v.shape[0] != len(examples) or v.shape[-1] != len(labels)
                                        for v in logits.values()):
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
        row = [lab, get_category(lab).group if _known(lab) else "", m[views[0]]["per_class"][lab]["support"]]
        for v in views:
            c = m[v]["per_class"][lab]
            row += [c["precision"], c["recall"], c["f1"]]
        row.append(m["thresholds"].get(lab))
        rows.append(row)
    macro = ", ".join(f"{v}: wildlife {m[v]['macro_f1_wildlife']:.3f} / all {m[v]['macro_f1_all']:.3f}" for v in views)
    return Table(columns, rows, f"per class (macro-F1 {macro})")


def _known(label: str) -> bool:
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


def _tradeoff_row(name: str, scores: np.ndarray, positives: np.ndarray, threshold: float | None,
                  targets: Sequence[float]) -> list:
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


# --- errors -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One photo in one view and what the model said about it.

    ``predicted`` is the top-1 label (what the per-class numbers count), ``score`` its
    probability, ``true_score`` the true class's; ``decision`` and ``flagged`` are what the
    product reports (thresholds applied; ``decision`` may be ``uncertain``).
    """

    example: data.Example
    view: str
    true: str
    predicted: str
    score: float
    true_score: float
    decision: str
    decision_score: float
    flagged: bool

    @property
    def path(self) -> Path:
        return self.example.file()

    @property
    def correct(self) -> bool:
        return self.true == self.predicted

    def caption(self) -> str:
        """Two short lines for a gallery tile."""
        flag = " FLAGGED" if self.flagged else ""
        return f"true {self.true} ({self.true_score:.2f})\nsaid {self.predicted} ({self.score:.2f}){flag}"

    def image(self, size: int | None = None):
        """The photo as the model saw it in this view (see :func:`view_image`)."""
        return view_image(self.example, self.view, size)


def view_image(example: data.Example, view: str = "clean", size: int | None = None):
    """The photo of ``example`` as evaluated: decoded RGB (``clean``) or its ad-style
    rendering (``ad``, :func:`training.augment.eval_ad_view`) or listing scene (``listing``,
    :func:`training.listing.listing_view`); thumbnailed to ``size``."""
    img = load_image(example.file().read_bytes()).image
    if view == "ad":
        img = eval_ad_view(img, example.sha256)
    elif view == "listing":
        img = listing_view(img, example.sha256, 0)[0]
    elif view != "clean":
        raise ValueError(f"unknown view {view!r}; choose from {', '.join(VIEWS)}")
    if size:
        img = img.copy()
        img.thumbnail((size, size))
    return img


def _case(ev: Evaluation, view: str, i: int, probs: np.ndarray) -> Case:
    k_pred, k_true = int(probs[i].argmax()), int(ev.targets[i])
    decision, decision_score, flagged = ev.decisions(view)[i]
    return Case(ev.examples[i], view, ev.labels[k_true], ev.labels[k_pred], float(probs[i, k_pred]),
                float(probs[i, k_true]), decision, float(decision_score), bool(flagged))


def _cases(ev: Evaluation, view: str, mask: np.ndarray, key: np.ndarray, limit: int | None) -> list[Case]:
    """Cases where ``mask`` holds, ``key`` ascending (ties by index), at most ``limit``."""
    idx = np.flatnonzero(mask)
    idx = idx[np.argsort(key[idx], kind="stable")]
    probs = ev.probabilities(view)
    return [_case(ev, view, int(i), probs) for i in idx[:limit]]


def class_errors(ev: Evaluation, label: str, kind: str = "fp", view: str = "clean",
                 limit: int | None = 6) -> list[Case]:
    """The worst top-1 errors of one class, worst first.

    ``fp``: photos of other classes predicted as ``label``, highest probability of
    ``label`` first. ``fn``: photos of ``label`` predicted as something else, lowest
    probability of ``label`` first. Raises ``ValueError`` for an unknown label or kind.
    """
    if label not in ev.labels:
        raise ValueError(f"the model has no class {label!r}; it has {', '.join(ev.labels)}")
    k = ev.labels.index(label)
    probs = ev.probabilities(view)
    predicted = probs.argmax(1)
    if kind == "fp":
        return _cases(ev, view, (predicted == k) & (ev.targets != k), -probs[:, k], limit)
    if kind == "fn":
        return _cases(ev, view, (ev.targets == k) & (predicted != k), probs[:, k], limit)
    raise ValueError(f"kind must be 'fp' or 'fn', got {kind!r}")


def error_table(ev: Evaluation, view: str = "clean") -> Table:
    """Per class: support, false negatives and what they were called, false positives and
    where they came from (top-1, as in the confusion matrix)."""
    cm = np.asarray(ev.metrics[view]["confusion"])
    rows = []
    for k, lab in enumerate(ev.labels):
        missed = {ev.labels[j]: int(cm[k, j]) for j in range(len(ev.labels)) if j != k and cm[k, j]}
        taken = {ev.labels[j]: int(cm[j, k]) for j in range(len(ev.labels)) if j != k and cm[j, k]}
        rows.append([lab, int(cm[k].sum()), sum(missed.values()), _top(missed), sum(taken.values()), _top(taken)])
    return Table(["class", "support", "false negatives", "called instead", "false positives", "true class of those"],
                 rows, f"top-1 errors per class, {view} view")


def _top(counts: dict[str, int], n: int = 3) -> str:
    return ", ".join(f"{lab} {c}" for lab, c in Counter(counts).most_common(n))


def flag_errors(ev: Evaluation, kind: str = "false_flag", view: str = "clean", limit: int | None = 12) -> list[Case]:
    """Wrong flag decisions, worst first.

    ``false_flag``: photos of non-wildlife classes that were flagged, highest reported
    score first (what makes an officer stop trusting the tool). ``missed``: wildlife photos
    not flagged, lowest total wildlife probability first.
    """
    wild, flagged = ev.wildlife_targets(), ev.flagged(view)
    if kind == "false_flag":
        scores = np.array([d[1] for d in ev.decisions(view)])
        return _cases(ev, view, flagged & ~wild, -scores, limit)
    if kind == "missed":
        return _cases(ev, view, wild & ~flagged, ev.classifier.wildlife_score(ev.probabilities(view)), limit)
    raise ValueError(f"kind must be 'false_flag' or 'missed', got {kind!r}")


def lookalike_labels(labels: Iterable[str]) -> list[str]:
    """The model's labels in the taxonomy's ``lookalike`` group (ceramic, figurine, toy, ...)."""
    return [lab for lab in labels if _known(lab) and get_category(lab).group == "lookalike"]


# Pairs shown even when the model confuses them nowhere: the look-alikes officers ask about.
KEY_LOOKALIKE_PAIRS = (("ceramic_porcelain", "ivory"), ("figurine", "ivory"), ("leather_goods", "reptile_skin_product"),
                       ("animal_print", "big_cat"), ("toy", "big_cat"))


def lookalike_confusions(ev: Evaluation, view: str = "clean") -> Table:
    """Look-alike class vs wildlife class: how often each is taken for the other.

    One row per (look-alike, wildlife) pair that is confused at least once in either
    direction, plus :data:`KEY_LOOKALIKE_PAIRS`. "called" counts top-1 predictions (the
    confusion matrix); "flagged as" counts look-alike photos the decision rule flagged
    with that wildlife label. For ivory and ceramic the "called" counts equal the metrics'
    ``ivory_vs_ceramic``.
    """
    cm = np.asarray(ev.metrics[view]["confusion"])
    decisions = ev.decisions(view)
    flagged_as = Counter((ev.labels[t], d[0]) for t, d in zip(ev.targets, decisions) if d[2])
    rows = []
    for look in lookalike_labels(ev.labels):
        i = ev.labels.index(look)
        pair_rows = []
        for wild in (lab for lab in ev.labels if is_wildlife(lab)):
            j = ev.labels.index(wild)
            counts = [int(cm[i, j]), flagged_as[(look, wild)], int(cm[j, i])]
            if any(counts) or (look, wild) in KEY_LOOKALIKE_PAIRS:
                pair_rows.append([look, wild, int(cm[i].sum()), counts[0], counts[1], int(cm[j].sum()), counts[2]])
        rows += sorted(pair_rows, key=lambda r: -(r[3] + r[4] + r[6]))
    columns = ["look-alike", "wildlife", "look-alike photos", "called wildlife", "flagged as wildlife",
               "wildlife photos", "called look-alike"]
    return Table(columns, rows, f"look-alike confusions, {view} view")


def lookalike_summary(ev: Evaluation, view: str = "clean") -> Table:
    """Per look-alike class: photos, how many were top-1 called some wildlife class, and how
    many were flagged (the false-flag rate officers feel)."""
    predicted, flagged = ev.predicted(view), ev.flagged(view)
    wild = np.array([is_wildlife(lab) for lab in ev.labels])
    rows = []
    for look in lookalike_labels(ev.labels):
        mask = ev.targets == ev.labels.index(look)
        n = int(mask.sum())
        rows.append([look, n, int(wild[predicted[mask]].sum()), int(flagged[mask].sum()),
                     float(flagged[mask].mean()) if n else float("nan")])
    return Table(["look-alike", "photos", "called wildlife", "flagged", "flag rate"], rows,
                 f"look-alike classes, {view} view")


def lookalike_cases(ev: Evaluation, lookalike: str, wildlife: str | Sequence[str] | None = None, view: str = "clean",
                    limit: int | None = 8) -> dict[str, list[Case]]:
    """Photos confused between a look-alike class and wildlife (one class, several, or any).

    ``{"lookalike_as_wildlife": ..., "wildlife_as_lookalike": ...}``: look-alike photos
    whose top-1 is one of the wildlife classes, most confident first; and wildlife photos
    whose top-1 is the look-alike, most confident first.
    """
    if wildlife is None:
        wild = [lab for lab in ev.labels if is_wildlife(lab)]
    else:
        wild = [wildlife] if isinstance(wildlife, str) else list(wildlife)
    for lab in [lookalike, *wild]:
        if lab not in ev.labels:
            raise ValueError(f"the model has no class {lab!r}; it has {', '.join(ev.labels)}")
    probs = ev.probabilities(view)
    predicted = probs.argmax(1)
    look = ev.labels.index(lookalike)
    wild_idx = np.array([ev.labels.index(lab) for lab in wild])
    is_wild_pred, is_wild_true = np.isin(predicted, wild_idx), np.isin(ev.targets, wild_idx)
    top = probs[np.arange(len(predicted)), predicted]
    return {
        "lookalike_as_wildlife": _cases(ev, view, (ev.targets == look) & is_wild_pred, -top, limit),
        "wildlife_as_lookalike": _cases(ev, view, is_wild_true & (predicted == look), -probs[:, look], limit),
    }


# --- scan results ---------------------------------------------------------------------------

DEMO_CLASSES = {
    "ivory": 6, "ceramic_porcelain": 5, "figurine": 3, "reef_coral": 3, "reptile_skin_product": 3,
    "leather_goods": 3, "big_cat": 2, "toy": 3, "animal_print": 2, "parrot": 2, "snake": 2,
    "goods_other": 4, "clothing": 2,
}
DEMO_SELLERS = ["antik_hanse", "curio_lux", "brocante_du_nord", "vintage_vondel", "oma_erbstuecke", "lot_trader",
                "deco_maison", "zeldzaam_nl"]
DEMO_PLATFORMS = ["marketplace-a.example", "classifieds-b.example", "auction-c.example"]
DEMO_TITLES = ["Old carved piece, estate sale", "Vintage decor item", "Rare collector's object", "Handmade, as new",
               "Antique, good condition", "Souvenir from travels", "Must go this week", "Unique gift"]


def load_results(path: str | Path) -> list[dict]:
    """The rows of a ``wildscan scan`` results file (JSONL, CSV or Parquet), typed alike.

    CSV text is turned back into numbers and booleans for the record columns (``score``,
    ``score_*``, ``flagged``, ``width``, ``height``, ``cluster_*``); metadata columns are
    left as the file holds them. Raises :class:`serving.scan.outputs.OutputError` for a
    missing file or unknown format.
    """
    from serving.scan.outputs import read_rows
    from serving.scan.report import as_bool, as_int

    rows = []
    for row in read_rows(path):
        row = dict(row)
        row["flagged"] = as_bool(row.get("flagged"))
        for key in ("width", "height", "cluster_id", "cluster_size"):
            if key in row:
                row[key] = as_int(row[key])
        for key in row:
            if key == "score" or key.startswith("score_"):
                row[key] = _as_float(row[key])
        rows.append(row)
    return rows


def _as_float(value) -> float | None:
    return None if value in (None, "") else float(value)


def scan_report(rows: Iterable[dict]):
    """The aggregation ``wildscan report`` prints (:class:`serving.scan.report.Report`)."""
    from serving.scan.report import build_report

    return build_report(rows)


def flagged_by_category(report) -> Table:
    """Flagged items per reported category, most first."""
    rows = [[label, category_name(label) if label else "(failed)", n] for label, n in report.by_category.most_common()]
    return Table(["category", "name", "flagged"], rows, f"{report.flagged} of {report.total} items flagged")


def flagged_by(report, column: str, top: int = 10) -> Table:
    """Flagged items per ``seller`` or ``platform`` (top ``top``), with their categories.

    Raises ``ValueError`` for another column; the table is empty (with a note in its
    title) when the results have no such column.
    """
    groups = {"seller": (report.has_seller, report.by_seller), "platform": (report.has_platform, report.by_platform)}
    if column not in groups:
        raise ValueError(f"column must be 'seller' or 'platform', got {column!r}")
    present, counts = groups[column]
    if not present:
        return Table([column, "flagged", "categories"], [], f"the results have no {column!r} column")
    ranked = sorted(counts.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))[:top]
    rows = [[name, sum(c.values()), ", ".join(f"{lab} {n}" for lab, n in c.most_common())] for name, c in ranked]
    return Table([column, "flagged", "categories"], rows, f"flagged items by {column} (top {top})")


def cluster_table(report, top: int = 10) -> Table:
    """The largest near-duplicate clusters (two or more photos): size, flags, labels, reach."""
    rows = [[c.cluster_id, c.size, c.flagged,
             ", ".join(f"{lab or '(failed)'} {n}" for lab, n in c.labels.most_common()),
             len(c.sellers), len(c.platforms), c.examples[0] if c.examples else ""]
            for c in report.largest_clusters(top)]
    return Table(["cluster", "photos", "flagged", "labels", "sellers", "platforms", "example"], rows,
                 f"largest near-duplicate clusters (top {top})")


def cluster_members(rows: Iterable[dict], cluster_id: int) -> list[dict]:
    """The rows of one cluster, in file order."""
    return [row for row in rows if row.get("cluster_id") == cluster_id]


def image_path(row: dict) -> Path | None:
    """The image file a result row points at, or ``None`` (bytes from a manifest, file gone)."""
    path = Path(str(row.get("path") or ""))
    return path if row.get("path") and path.is_file() else None


def row_image(row: dict, size: int | None = 160):
    """The photo of a result row (EXIF-oriented RGB, thumbnailed to ``size``), or ``None``
    when there is no readable file (bytes from a manifest, a moved file, a failure row)."""
    from vision.errors import WildscanError

    path = image_path(row)
    if path is None:
        return None
    try:
        img = load_image(path.read_bytes()).image
    except (OSError, WildscanError):
        return None
    if size:
        img.thumbnail((size, size))
    return img


def score_distribution(rows: Iterable[dict]) -> dict[str, np.ndarray]:
    """Reported scores of the scored rows, split into ``flagged``, ``not flagged`` and ``uncertain``."""
    groups: dict[str, list[float]] = {"flagged": [], "not flagged": [], "uncertain": []}
    for row in rows:
        if row.get("error_reason") or row.get("score") is None:
            continue
        key = "flagged" if row["flagged"] else "uncertain" if row.get("label") == "uncertain" else "not flagged"
        groups[key].append(float(row["score"]))
    return {k: np.array(v) for k, v in groups.items()}


def wildlife_scores(rows: Iterable[dict]) -> np.ndarray:
    """Each scored row's total probability of wildlife categories (from its ``score_*`` columns),
    kept even below every threshold: the distribution the thresholds cut."""
    out = []
    for row in rows:
        scores = {k[len("score_"):]: v for k, v in row.items() if k.startswith("score_") and v is not None}
        if scores and not row.get("error_reason"):
            out.append(sum(v for lab, v in scores.items() if is_wildlife(lab)))
    return np.array(out)


def make_demo_manifest(folder: Path, *, per_class: dict[str, int] | None = None, split: str = "test",
                       reposts: int = 3, seed: int = 7) -> Path:
    """A small fake crawl of shared photos as a CSV manifest in ``folder``; returns its path.

    Photos of ``split`` (``per_class`` of each class, chosen by SHA-256 order) get made-up
    ad metadata (url, title, price, currency, seller, platform, captured_at). The first
    ``reposts`` wildlife photos are posted again by two other sellers, one of them as a
    smaller re-encoded copy (near-duplicate clusters), and one truncated file is added
    (a failure row). Deterministic for a given ``seed``.
    """
    import csv

    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    per_class = DEMO_CLASSES if per_class is None else per_class
    by_class: dict[str, list[data.Example]] = {}
    for ex in sorted(data.load_split(split), key=lambda e: e.sha256):
        by_class.setdefault(ex.cls, []).append(ex)
    chosen = [ex for cls, n in per_class.items() for ex in by_class.get(cls, [])[:n]]
    paths = [str(ex.file()) for ex in chosen]
    for ex in [ex for ex in chosen if is_wildlife(ex.cls)][:reposts]:
        paths.append(str(ex.file()))
        copy = folder / "reposted" / f"{ex.sha256[:12]}.jpg"
        copy.parent.mkdir(exist_ok=True)
        img = load_image(ex.file().read_bytes()).image
        img.resize((max(32, img.width * 3 // 4), max(32, img.height * 3 // 4)), Image.BILINEAR).save(copy, quality=70)
        paths.append(str(copy))
    broken = folder / "broken_upload.jpg"
    whole = chosen[0].file().read_bytes() if chosen else b""
    broken.write_bytes(whole[: len(whole) // 2])
    paths.append(str(broken))

    manifest = folder / "crawl.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["path", "url", "title", "price", "currency", "seller", "platform", "captured_at"])
        for n, path in enumerate(paths):
            platform = rng.choice(DEMO_PLATFORMS)
            writer.writerow([path, f"https://{platform}/ad/{100200 + n}", rng.choice(DEMO_TITLES),
                             f"{rng.uniform(5, 900):.2f}", "EUR", rng.choice(DEMO_SELLERS), platform,
                             f"2025-03-{1 + n % 28:02d}T{rng.randint(0, 23):02d}:00:00Z"])
    return manifest


def make_demo_scan(folder: Path, model: str | Path | None = None, *, outputs: Sequence[str] = ("results.jsonl",),
                   **manifest_options) -> Path:
    """Build the demo manifest in a fresh ``folder`` and scan it with the real scanner.

    Runs :func:`serving.scan.commands.scan` (what ``wildscan scan crawl.csv --out
    results.jsonl`` runs) with ``model`` (``None``: the shipped one) into ``outputs``
    (file names in ``folder``: ``.jsonl``, ``.csv``, ``.parquet``); returns the first.
    ``manifest_options`` go to :func:`make_demo_manifest`. Raises what the scan raises
    (:class:`vision.errors.WildscanError` subclasses).
    """
    from serving.scan.commands import scan

    folder = Path(folder)
    if folder.exists():
        shutil.rmtree(folder)  # a fresh scan, not the resumption of an older one
    manifest = make_demo_manifest(folder, **manifest_options)
    outs = [folder / name for name in outputs]
    scan([str(manifest)], outs, model=str(model) if model is not None else None, quiet=True)
    return outs[0]
