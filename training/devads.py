"""Real sale posts (``../shared/data/dev-ads``): the headline evaluation, and the ivory threshold.

dev-ads holds 268 real social-media photos of sellers advertising ivory, labelled per
photo (``ivory`` 97, ``not_ivory`` 162; ``unsure`` and ``wildlife_other`` are left out of
every figure). It is for choosing the ivory threshold and between models, never for
training. A threshold chosen on these photos is only reported through cross-validation
over the ``group`` column (photos of one post stay on one side): each fold's photos are
judged with the threshold chosen on the other folds.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vision.runtime import Classifier

from . import data, metrics

MIN_PRECISION = 0.85  # the ivory threshold maximises F1 among thresholds at this precision or more
FOLDS = 5
REPLICATES = 2000  # bootstrap resamples of the post groups for the 95 % intervals


@dataclass(frozen=True)
class DevAd:
    path: Path
    label: str  # ivory, not_ivory, unsure, wildlife_other
    group: str
    note: str
    sha256: str


def load(root: Path | None = None) -> list[DevAd]:
    """The labelled photos, in ``labels.csv`` order."""
    base = (root or data.shared_data_dir()) / "dev-ads"
    return [
        DevAd(base / r["path"], r["label"], r["group"], r["note"], r["sha256"])
        for r in data.read_csv(base / "labels.csv")
    ]


def scored(ads: list[DevAd]) -> list[DevAd]:
    """The photos every figure uses: ``ivory`` and ``not_ivory``."""
    return [a for a in ads if a.label in ("ivory", "not_ivory")]


def fold_of(group: str, folds: int = FOLDS) -> int:
    """A group's fold: a hash of its id, so a post's photos share a fold and the folds never move."""
    return int(hashlib.sha256(group.encode()).hexdigest(), 16) % folds


def best_threshold(scores: np.ndarray, positives: np.ndarray, min_precision: float = MIN_PRECISION) -> float:
    """The threshold with the highest F1 among those whose precision reaches ``min_precision``
    (the highest F1 overall when none does); ties go to the higher threshold."""
    order = np.argsort(-scores, kind="stable")
    s, hits = scores[order], positives[order]
    tp = np.cumsum(hits)
    k = np.arange(1, len(s) + 1)
    precision, recall = tp / k, tp / max(1, hits.sum())
    f1 = np.where(tp > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    last = np.r_[s[1:] != s[:-1], True]  # cut only between distinct scores
    ok = last & (precision >= min_precision)
    candidates = np.flatnonzero(ok) if ok.any() else np.flatnonzero(last)
    i = candidates[np.argmax(f1[candidates])]
    return float(s[i])


def cross_validated_flags(
    scores: np.ndarray,
    positives: np.ndarray,
    groups: list[str],
    min_precision: float = MIN_PRECISION,
    folds: int = FOLDS,
    floor: float = 0.0,
) -> tuple[np.ndarray, list[float]]:
    """Each photo judged with the threshold chosen on the other folds (never below ``floor``,
    a bound set on other data): ``(flags, thresholds)``."""
    fold = np.array([fold_of(g, folds) for g in groups])
    flags = np.zeros(len(scores), dtype=bool)
    chosen = []
    for f in range(folds):
        test = fold == f
        if not test.any():
            continue
        t = max(floor, best_threshold(scores[~test], positives[~test], min_precision))
        chosen.append(round(t, 4))
        flags[test] = scores[test] >= t
    return flags, chosen


def prf(flags: np.ndarray, positives: np.ndarray) -> dict:
    tp = int((flags & positives).sum())
    p = tp / max(1, int(flags.sum()))
    r = tp / max(1, int(positives.sum()))
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0, "flagged": int(flags.sum())}


def group_intervals(
    groups: list[str],
    positives: np.ndarray,
    flags: dict[str, np.ndarray],
    false_flags: np.ndarray,
    score: np.ndarray,
    replicates: int = REPLICATES,
    seed: int = 0,
) -> dict:
    """95 % intervals (2.5th and 97.5th percentiles) from resampling whole post groups with
    replacement: photos of one post rise and fall together, so resampling single photos
    would claim more certainty than 97 positives give. The flags are held fixed: what varies
    is which photos were drawn, not the choice of the threshold. Gives precision, recall and
    F1 of each ``flags`` entry, the share of not-ivory photos in ``false_flags`` and the ivory
    score's AUC; deterministic for a given ``seed``. A replicate where a figure is undefined
    (nothing flagged, no positives drawn) is left out of that figure's interval; a figure
    undefined in every replicate gets ``None``."""
    weights = _draws(groups, replicates, seed)
    pos = positives.astype(np.float64)

    def interval(values) -> list[float] | None:
        values = np.asarray(values, dtype=np.float64)
        if np.isnan(values).all():
            return None
        lo, hi = np.nanpercentile(values, [2.5, 97.5])
        return [round(float(lo), 4), round(float(hi), 4)]

    out: dict = {"method": "post-group bootstrap", "replicates": replicates, "groups": len(set(groups))}
    for name, f in flags.items():
        precision, recall, f1 = _replicated_prf(weights, f, pos)
        out[name] = {"precision": interval(precision), "recall": interval(recall), "f1": interval(f1)}
    with np.errstate(invalid="ignore", divide="ignore"):
        out["false_flag_rate_not_ivory"] = interval((weights @ (false_flags * (1 - pos))) / (weights @ (1 - pos)))
    photos = np.arange(len(score))
    out["ivory_auc"] = interval(
        [metrics.roc_auc(score[rows], positives[rows]) for rows in (np.repeat(photos, w) for w in weights)]
    )
    return out


def _draws(groups: list[str], replicates: int, seed: int) -> np.ndarray:
    """replicates x photos: how often each photo is drawn when whole groups are resampled."""
    names, index = np.unique(np.asarray(groups), return_inverse=True)
    rng = np.random.default_rng(seed)
    return rng.multinomial(len(names), np.full(len(names), 1.0 / len(names)), size=replicates)[:, index]


def _replicated_prf(weights: np.ndarray, flags: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, ...]:
    """Precision, recall and F1 of fixed ``flags`` in every replicate (NaN where undefined)."""
    tp, flagged, n_pos = weights @ (flags * pos), weights @ flags.astype(np.float64), weights @ pos
    with np.errstate(invalid="ignore", divide="ignore"):
        return tp / flagged, tp / n_pos, 2 * tp / (flagged + n_pos)


def f1_difference(
    groups: list[str],
    positives: np.ndarray,
    flags_a: np.ndarray,
    flags_b: np.ndarray,
    replicates: int = REPLICATES,
    seed: int = 0,
) -> dict:
    """Ivory F1 of flags ``b`` minus that of flags ``a`` on the same photos, with the 95 %
    interval of the difference over the same resampled post groups (a paired bootstrap): the
    way to tell whether one model beats another on dev-ads, since both see the same posts."""
    weights = _draws(groups, replicates, seed)
    pos = positives.astype(np.float64)
    diff = _replicated_prf(weights, flags_b, pos)[2] - _replicated_prf(weights, flags_a, pos)[2]
    lo, hi = np.nanpercentile(diff, [2.5, 97.5])
    point = prf(flags_b, positives)["f1"] - prf(flags_a, positives)["f1"]
    return {
        "difference": round(point, 4),
        "interval": [round(float(lo), 4), round(float(hi), 4)],
        "replicates": replicates,
    }


def evaluate(classifier: Classifier, ads: list[DevAd] | None = None, results: list | None = None) -> dict:
    """dev-ads figures for a bundle at its shipped rule, plus cross-validated thresholds
    (``results``: the classifier's results for ``scored(ads)`` when the caller has them)."""
    ads = scored(ads if ads is not None else load())
    results = results if results is not None else classifier.predict_files([a.path for a in ads])
    probs = np.array([[r.scores[lab] for lab in classifier.labels] for r in results], dtype=np.float64)
    labels = classifier.labels
    ivory = labels.index("ivory")
    positives = np.array([a.label == "ivory" for a in ads])
    decisions = [classifier.decide(p.astype(np.float32)) for p in probs]
    possible = [classifier.possible(p.astype(np.float32), d[2]) for p, d in zip(probs, decisions)]
    flagged_ivory = np.array([d[2] and d[0] == "ivory" for d in decisions])
    flagged_any = np.array([d[2] for d in decisions])
    score = probs[:, ivory]
    floor = float((classifier.config.training_data or {}).get("ivory_floor", 0.0))
    cv_flags, cv_thresholds = cross_validated_flags(score, positives, [a.group for a in ads], floor=floor)
    precision, recall, thresholds = metrics.pr_curve(score, positives)
    missed = Counter(
        _fate(d, p) for d, p, a, f in zip(decisions, possible, ads, flagged_ivory) if a.label == "ivory" and not f
    )
    false = Counter(d[0] for d, a in zip(decisions, ads) if a.label == "not_ivory" and d[2])
    return {
        "model": classifier.model_info(),
        "photos": {"ivory": int(positives.sum()), "not_ivory": int((~positives).sum())},
        "shipped_rule": {**prf(flagged_ivory, positives), "threshold": classifier.config.threshold("ivory")},
        "cross_validated": {
            **prf(cv_flags, positives),
            "fold_thresholds": cv_thresholds,
            "min_precision": MIN_PRECISION,
            "folds": FOLDS,
            "floor": floor,
        },
        "ivory_auc": metrics.roc_auc(score, positives),
        "ivory_average_precision": metrics.average_precision(score, positives),
        "best_possible_f1": float(np.max(2 * precision * recall / np.maximum(precision + recall, 1e-12))),
        "pr_curve": _thin_curve(precision, recall, thresholds),
        "missed_ivory_went_to": dict(missed.most_common()),
        "possible_match_ivory": int(sum(p == "ivory" for p, a in zip(possible, ads) if a.label == "ivory")),
        "false_flag_rate_not_ivory": float(flagged_any[~positives].mean()) if (~positives).any() else 0.0,
        "false_flags_as": dict(false.most_common()),
        "intervals": group_intervals(
            [a.group for a in ads],
            positives,
            {"shipped_rule": flagged_ivory, "cross_validated": cv_flags},
            flagged_any,
            score,
        ),
    }


def _fate(decision: tuple[str, float, bool], possible: str | None) -> str:
    label, _score, flagged = decision
    if flagged:
        return f"flagged as {label}"
    return f"possible ivory ({label})" if possible == "ivory" else label


def _thin_curve(precision: np.ndarray, recall: np.ndarray, thresholds: np.ndarray, points: int = 25) -> list[dict]:
    idx = np.unique(np.linspace(0, len(thresholds) - 1, min(points, len(thresholds))).astype(int))
    return [
        {
            "threshold": round(float(thresholds[i]), 4),
            "precision": round(float(precision[i]), 4),
            "recall": round(float(recall[i]), 4),
        }
        for i in idx
    ]


def markdown(m: dict) -> str:
    """The dev-ads table of the model card and of ``wildscan evaluate --split dev-ads``."""
    cv, sr = m["cross_validated"], m["shipped_rule"]
    ci = m.get("intervals") or {}

    def cell(value: float, where: str, key: str) -> str:
        lo_hi = (ci.get(where) or {}).get(key) if where else ci.get(key)
        return f"{value:.3f}" + (f" ({lo_hi[0]:.2f}–{lo_hi[1]:.2f})" if lo_hi else "")

    def row(name: str, where: str, r: dict) -> str:
        return f"| {name} | " + " | ".join(cell(r[k], where, k) for k in ("precision", "recall", "f1")) + " |"

    lines = [
        f"Real sale posts (`dev-ads`: {m['photos']['ivory']} ivory, {m['photos']['not_ivory']} not-ivory photos), "
        f"model `{m['model']['name']}` {m['model']['version']}.",
        "",
        "| ivory | precision | recall | F1 |",
        "|---|---:|---:|---:|",
        row(f"thresholds cross-validated over post groups ({cv['folds']} folds)", "cross_validated", cv),
        row(f"shipped rule (ivory threshold {sr['threshold']:.3f})", "shipped_rule", sr),
        "",
    ]
    if ci:
        lines += [
            f"In brackets: 95 % intervals from resampling the {ci['groups']} post groups ({ci['replicates']} "
            "bootstrap replicates, flags held fixed): how far these figures could move on another draw of "
            "posts like these.",
            "",
        ]
    lines += [
        f"Ivory score ranking: AUC {cell(m['ivory_auc'], '', 'ivory_auc')}, "
        f"average precision {m['ivory_average_precision']:.3f}, "
        f"best possible F1 {m['best_possible_f1']:.3f}. Fold thresholds: "
        + ", ".join(f"{t:.3f}" for t in cv["fold_thresholds"])
        + (f" (never below the floor {cv['floor']:.3f} set on validation look-alikes)" if cv.get("floor") else "")
        + ".",
        "",
        "False flags (any wildlife category) on the not-ivory photos: "
        + f"{m['false_flag_rate_not_ivory']:.1%}"
        + (
            f" (95 % interval {ci['false_flag_rate_not_ivory'][0]:.1%}–{ci['false_flag_rate_not_ivory'][1]:.1%})"
            if ci.get("false_flag_rate_not_ivory")
            else ""
        )
        + (
            "; flagged as " + ", ".join(f"{k} {v}" for k, v in m["false_flags_as"].items())
            if m["false_flags_as"]
            else ""
        )
        + ".",
        "",
        "Where the missed ivory photos went (shipped rule): "
        + (", ".join(f"{k} {v}" for k, v in m["missed_ivory_went_to"].items()) or "none")
        + ".",
    ]
    return "\n".join(lines) + "\n"


def write_report(m: dict, out_dir: Path) -> list[Path]:
    """``devads.json`` and ``devads.md`` in ``out_dir``."""
    import json

    out_dir.mkdir(parents=True, exist_ok=True)
    j, md = out_dir / "devads.json", out_dir / "devads.md"
    j.write_text(json.dumps(m, indent=1) + "\n")
    md.write_text(markdown(m))
    return [j, md]


def examples(root: Path | None = None) -> list[data.Example]:
    """The labelled photos (:func:`load`) as examples for the feature cache: ``cls`` is the
    photo's label (``ivory``, ``not_ivory``, ``unsure``, ``wildlife_other``), ``source`` its
    post group."""
    root = root or data.shared_data_dir()
    return [
        data.Example(ad.sha256, str(ad.path.relative_to(root)), ad.label, ad.label, "dev", 0, "", ad.group)
        for ad in load(root)
    ]
