"""Error analysis for researchers (notebook 02): the worst false positives and negatives
per class (:func:`class_errors`), wrong flag decisions (:func:`flag_errors`) and the
confusions between look-alikes and wildlife (:func:`lookalike_confusions`,
:func:`lookalike_cases`), each with the photo as the model saw it (:func:`view_image`),
from an :class:`training.analysis.Evaluation`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vision.preprocess import load_image
from vision.tables import Table, is_wildlife
from vision.taxonomy import get_category

from . import data
from .analysis import Evaluation, known_label
from .augment import eval_ad_view
from .evaluate import VIEWS
from .listing import listing_view


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
    return Case(
        ev.examples[i],
        view,
        ev.labels[k_true],
        ev.labels[k_pred],
        float(probs[i, k_pred]),
        float(probs[i, k_true]),
        decision,
        float(decision_score),
        bool(flagged),
    )


def _cases(ev: Evaluation, view: str, mask: np.ndarray, key: np.ndarray, limit: int | None) -> list[Case]:
    """Cases where ``mask`` holds, ``key`` ascending (ties by index), at most ``limit``."""
    idx = np.flatnonzero(mask)
    idx = idx[np.argsort(key[idx], kind="stable")]
    probs = ev.probabilities(view)
    return [_case(ev, view, int(i), probs) for i in idx[:limit]]


def class_errors(
    ev: Evaluation, label: str, kind: str = "fp", view: str = "clean", limit: int | None = 6
) -> list[Case]:
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
    return Table(
        ["class", "support", "false negatives", "called instead", "false positives", "true class of those"],
        rows,
        f"top-1 errors per class, {view} view",
    )


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
    return [lab for lab in labels if known_label(lab) and get_category(lab).group == "lookalike"]


# Pairs shown even when the model confuses them nowhere: the look-alikes officers ask about.
KEY_LOOKALIKE_PAIRS = (
    ("ceramic_porcelain", "ivory"),
    ("figurine", "ivory"),
    ("leather_goods", "reptile_skin_product"),
    ("animal_print", "big_cat"),
    ("toy", "big_cat"),
)


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
    columns = [
        "look-alike",
        "wildlife",
        "look-alike photos",
        "called wildlife",
        "flagged as wildlife",
        "wildlife photos",
        "called look-alike",
    ]
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
        rows.append(
            [
                look,
                n,
                int(wild[predicted[mask]].sum()),
                int(flagged[mask].sum()),
                float(flagged[mask].mean()) if n else float("nan"),
            ]
        )
    return Table(
        ["look-alike", "photos", "called wildlife", "flagged", "flag rate"], rows, f"look-alike classes, {view} view"
    )


def lookalike_cases(
    ev: Evaluation,
    lookalike: str,
    wildlife: str | Sequence[str] | None = None,
    view: str = "clean",
    limit: int | None = 8,
) -> dict[str, list[Case]]:
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
