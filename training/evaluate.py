"""``wildscan evaluate``: score a model bundle on a split, clean and in the ad-style view.

Runs the ONNX bundle through ``vision`` exactly as the API and scanner do (same decoding,
same preprocessing, same decision rule), so the numbers describe the shipped product.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from vision.preprocess import load_for_model, load_image, to_model_views
from vision.runtime import Classifier
from vision.taxonomy import get_category

from . import data, metrics
from .augment import eval_ad_view
from .listing import listing_view

VIEWS = ("clean", "ad", "listing")  # listing: the object pasted into a real listing photo (training.listing)
PRECISION_TARGETS = (0.90, 0.95, 0.99)


def model_inputs(examples: list[data.Example], classifier: Classifier, view: str) -> np.ndarray:
    """Model inputs for the examples in one view, made by ``vision.preprocess`` (whole photo
    and, when the bundle has them, its crops)."""
    cfg = classifier.preprocess
    out = np.empty((len(examples), *cfg.input_shape()), np.float32)
    for i, ex in enumerate(examples):
        raw = ex.file().read_bytes()
        if view == "clean":
            out[i] = load_for_model(raw, cfg)[0]
        elif view == "ad":
            out[i] = to_model_views(eval_ad_view(load_image(raw).image, ex.sha256), cfg)
        else:
            out[i] = to_model_views(listing_view(load_image(raw).image, ex.sha256, 0)[0], cfg)
    return out


def predict_logits(
    classifier: Classifier, examples: list[data.Example], view: str, progress: bool = False, chunk: int = 64
) -> np.ndarray:
    from tqdm import tqdm

    parts = []
    for start in tqdm(range(0, len(examples), chunk), desc=f"evaluate {view}", disable=not progress, mininterval=5):
        parts.append(classifier.run(model_inputs(examples[start : start + chunk], classifier, view))[0])
    return np.concatenate(parts) if parts else np.zeros((0, len(classifier.labels)), np.float32)


def score_view(classifier: Classifier, logits: np.ndarray, targets: np.ndarray, kinds: list[str] | None = None) -> dict:
    """All metrics for one view from the bundle's logits and integer targets; with ``kinds``
    (each photo's fine label in the manifest) also ``by_kind`` (:func:`flags_by_kind`)."""
    labels = classifier.labels
    wildlife = [lab for lab in labels if get_category(lab).is_wildlife]
    probs_raw = classifier.probabilities(logits, temperature=1.0).astype(np.float64)
    probs = classifier.probabilities(logits).astype(np.float64)
    predicted = probs.argmax(1)
    table = metrics.per_class(targets, predicted, labels)
    is_wild = np.array([get_category(labels[t]).is_wildlife for t in targets])
    decisions = [classifier.decide(p.astype(np.float32)) for p in probs]
    flagged = np.array([d[2] for d in decisions])
    uncertain = np.array([d[0] == "uncertain" for d in decisions])
    wild_score = classifier.wildlife_score(probs)
    tp = int((flagged & is_wild).sum())
    out = {
        "n": len(targets),
        "accuracy": float((predicted == targets).mean()),
        "macro_f1_all": metrics.macro_f1(table),
        "macro_f1_wildlife": metrics.macro_f1(table, wildlife),
        "per_class": table,
        "flag": {
            "precision": tp / max(1, int(flagged.sum())),
            "recall": tp / max(1, int(is_wild.sum())),
            "false_flag_rate": float((flagged & ~is_wild).sum() / max(1, int((~is_wild).sum()))),
            "uncertain_rate": float(uncertain.mean()),
        },
        "binary": {
            "average_precision": metrics.average_precision(wild_score, is_wild),
            "precision_at_recall_0.95": metrics.precision_at_recall(wild_score, is_wild, 0.95),
            "recall_at_precision_0.97": metrics.recall_at_precision(wild_score, is_wild, 0.97),
        },
        "ece_before_temperature": metrics.expected_calibration_error(probs_raw, targets),
        "ece_after_temperature": metrics.expected_calibration_error(probs, targets),
        "recall_at_precision": {
            lab: {str(t): metrics.recall_at_precision(probs[:, k], targets == k, t) for t in PRECISION_TARGETS}
            for k, lab in enumerate(labels)
            if lab in wildlife and (targets == k).any()
        },
        "confusion": metrics.confusion(targets, predicted, len(labels)).tolist(),
    }
    if "ivory" in labels and "ceramic_porcelain" in labels:
        iv, ce = labels.index("ivory"), labels.index("ceramic_porcelain")
        cm = out["confusion"]
        out["ivory_vs_ceramic"] = {
            "ivory_photos": int(sum(cm[iv])),
            "ivory_called_ceramic": int(cm[iv][ce]),
            "ceramic_photos": int(sum(cm[ce])),
            "ceramic_called_ivory": int(cm[ce][iv]),
            "ceramic_flagged": int((flagged & (targets == ce)).sum()),
        }
    if kinds is not None:
        out["by_kind"] = flags_by_kind(classifier, probs, targets, kinds, decisions)
    return out


def flags_by_kind(
    classifier: Classifier,
    probs: np.ndarray,
    targets: np.ndarray,
    kinds: list[str],
    decisions: list[tuple[str, float, bool]],
) -> dict[str, dict]:
    """What the decision rule did with each kind of photo (the manifest's fine label:
    classified-ad photos, stone carvings, live snakes...): how many photos, how many flagged,
    how many shown as a possible match, and the labels that flagged them. The nearest figures
    the data has to the issue's real-photo targets (home & garden ads, plants, snakes)."""
    out: dict[str, dict] = {}
    for p, t, kind, (label, _, flagged) in zip(probs, targets, kinds, decisions, strict=True):
        row = out.setdefault(
            kind, {"class": classifier.labels[t], "photos": 0, "flagged": 0, "possible": 0, "flagged_as": {}}
        )
        row["photos"] += 1
        if flagged:
            row["flagged"] += 1
            row["flagged_as"][label] = row["flagged_as"].get(label, 0) + 1
        elif classifier.possible(p, flagged) is not None:
            row["possible"] += 1
    return dict(sorted(out.items()))


def split_examples(
    classifier: Classifier, split: str = "test", limit_per_class: int = 0, examples: list[data.Example] | None = None
) -> tuple[list[data.Example], np.ndarray]:
    """The examples of ``split`` (or the ``examples`` given) whose class the model knows, and
    their integer targets.

    ``limit_per_class`` keeps only the first N photos of each class (0: all).
    """
    examples = data.load_split(split) if examples is None else examples
    if limit_per_class:
        seen: dict[str, int] = {}
        examples = [
            ex
            for ex in examples
            if seen.setdefault(ex.cls, 0) < limit_per_class and not seen.update({ex.cls: seen[ex.cls] + 1})
        ]
    index = {lab: i for i, lab in enumerate(classifier.labels)}
    examples = [ex for ex in examples if ex.cls in index]
    return examples, np.array([index[ex.cls] for ex in examples], dtype=np.int64)


def metrics_from_logits(
    classifier: Classifier,
    split: str,
    logits_by_view: dict[str, np.ndarray],
    targets: np.ndarray,
    kinds: list[str] | None = None,
) -> dict:
    """What :func:`evaluate_split` returns (without ``_`` keys), from logits already computed;
    ``kinds``: each photo's fine label (for ``by_kind``)."""
    result = {
        "model": classifier.model_info(),
        "split": split,
        "labels": classifier.labels,
        "temperature": classifier.config.temperature,
        "thresholds": classifier.config.thresholds,
    }
    for view, logits in logits_by_view.items():
        result[view] = score_view(classifier, logits, targets, kinds)
    return result


def evaluate_split(
    classifier: Classifier,
    split: str = "test",
    *,
    limit_per_class: int = 0,
    progress: bool = False,
    return_logits: bool = False,
    examples: list[data.Example] | None = None,
    views: tuple[str, ...] = VIEWS,
) -> dict:
    """Metrics for the ``views`` of ``split`` (or of the ``examples`` given, e.g. officers'
    feedback: :func:`training.data.load_feedback`); ``labels``, ``model`` and counts included.

    With ``return_logits`` also ``_logits`` (view -> N x C), ``_examples`` and ``_targets``.
    """
    examples, targets = split_examples(classifier, split, limit_per_class, examples)
    logits_by_view = {view: predict_logits(classifier, examples, view, progress) for view in views}
    kinds = [ex.fine_label for ex in examples]
    result = metrics_from_logits(classifier, split, logits_by_view, targets, kinds)
    if return_logits:
        result["_logits"] = logits_by_view
        result["_examples"] = examples
        result["_targets"] = targets
    return result


# The headline numbers of one view: (name, how to read it from a view's metrics).
SUMMARY_ROWS = [
    ("macro-F1, wildlife classes", lambda v: v["macro_f1_wildlife"]),
    ("macro-F1, all classes", lambda v: v["macro_f1_all"]),
    ("top-1 accuracy", lambda v: v["accuracy"]),
    ("flag precision (wildlife vs not)", lambda v: v["flag"]["precision"]),
    ("flag recall", lambda v: v["flag"]["recall"]),
    ("false-flag rate on non-wildlife", lambda v: v["flag"]["false_flag_rate"]),
    ("'uncertain' rate", lambda v: v["flag"]["uncertain_rate"]),
    ("binary precision at recall 0.95", lambda v: v["binary"]["precision_at_recall_0.95"]),
    ("binary recall at precision 0.97", lambda v: v["binary"]["recall_at_precision_0.97"]),
    ("binary average precision", lambda v: v["binary"]["average_precision"]),
    ("ECE before temperature", lambda v: v["ece_before_temperature"]),
    ("ECE after temperature", lambda v: v["ece_after_temperature"]),
]


def markdown_report(m: dict) -> str:
    """The metrics as Markdown tables (the model card's evaluation section)."""
    lines = [
        f"Model `{m['model']['name']}` {m['model']['version']} (sha256 `{m['model']['sha256'][:16]}…`), "
        f"split `{m['split']}`, {m['clean']['n']} photos per view.",
        "",
    ]
    views = [v for v in VIEWS if v in m]
    names = {"clean": "clean", "ad": "ad-style", "listing": "listing scene"}
    lines += ["| metric | " + " | ".join(names[v] for v in views) + " |", "|---|" + "---:|" * len(views)]
    for name, get in SUMMARY_ROWS:
        lines.append(f"| {name} | " + " | ".join(f"{get(m[v]):.3f}" for v in views) + " |")
    extra = [v for v in views if v != "clean"]
    lines += [
        "",
        "| class | group | support | P clean | R clean | F1 clean | "
        + " | ".join(f"F1 {names[v]}" for v in extra)
        + " | threshold |",
        "|---|---|---:|---:|---:|---:|" + "---:|" * len(extra) + "---:|",
    ]
    for lab in m["labels"]:
        c = m["clean"]["per_class"][lab]
        thr = m["thresholds"].get(lab)
        lines.append(
            f"| {lab} | {get_category(lab).group} | {c['support']} | {c['precision']:.3f} | {c['recall']:.3f} | "
            f"{c['f1']:.3f} | "
            + " | ".join(f"{m[v]['per_class'][lab]['f1']:.3f}" for v in extra)
            + f" | {'' if thr is None else f'{thr:.2f}'} |"
        )
    iv = m["clean"].get("ivory_vs_ceramic")
    if iv and "ad" in m:
        lines += [
            "",
            "Ivory vs ceramic look-alikes (clean / ad-style): "
            f"ivory called ceramic {iv['ivory_called_ceramic']}/{iv['ivory_photos']} / "
            f"{m['ad']['ivory_vs_ceramic']['ivory_called_ceramic']}; ceramic called ivory "
            f"{iv['ceramic_called_ivory']}/{iv['ceramic_photos']} / "
            f"{m['ad']['ivory_vs_ceramic']['ceramic_called_ivory']}; "
            f"ceramic flagged {iv['ceramic_flagged']} / {m['ad']['ivory_vs_ceramic']['ceramic_flagged']}.",
        ]
    lines += [
        "",
        "Recall each wildlife class keeps at a given precision (clean view):",
        "",
        "| class | P≥0.90 | P≥0.95 | P≥0.99 |",
        "|---|---:|---:|---:|",
    ]
    for lab, r in m["clean"]["recall_at_precision"].items():
        lines.append(f"| {lab} | " + " | ".join(f"{r[str(t)]:.3f}" for t in PRECISION_TARGETS) + " |")
    if "by_kind" in m["clean"]:
        lines += ["", *kind_markdown(m, views, names)]
    return "\n".join(lines) + "\n"


def kind_rows(m: dict) -> list[list]:
    """Each kind of photo (the manifest's fine label) as ``[kind, class, photos, share flagged in
    each view..., share shown as a possible match (clean), the labels that flagged it (clean)]``:
    kinds that are not wildlife first, most flagged first (every flag is false), then the
    wildlife kinds, least flagged first (every flag is right, whatever the class)."""
    views = [v for v in VIEWS if v in m]
    clean = m["clean"]["by_kind"]
    share = lambda row: row["flagged"] / row["photos"]
    wild = lambda kind: get_category(clean[kind]["class"]).is_wildlife
    order = sorted(clean, key=lambda k: (wild(k), share(clean[k]) if wild(k) else -share(clean[k]), k))
    rows = []
    for kind in order:
        row = clean[kind]
        top = sorted(row["flagged_as"].items(), key=lambda kv: -kv[1])[:3]
        rows.append(
            [kind, row["class"], row["photos"]]
            + [share(m[v]["by_kind"][kind]) for v in views]
            + [row["possible"] / row["photos"], ", ".join(f"{lab} {n}" for lab, n in top)]
        )
    return rows


def kind_markdown(m: dict, views: list[str], names: dict[str, str]) -> list[str]:
    """:func:`kind_rows` as Markdown lines."""
    lines = [
        "Flagged, by kind of photo (the manifest's fine label; flagged as any wildlife class): ordinary and "
        "look-alike kinds first (every flag is false), then wildlife kinds (every flag is right, whatever "
        "the class).",
        "",
        "| kind | class | photos | " + " | ".join(f"flagged {names[v]}" for v in views) + " | possible match clean "
        "| flagged as (clean) |",
        "|---|---|---:|" + "---:|" * len(views) + "---:|---|",
    ]
    for kind, cls, n, *shares, flagged_as in kind_rows(m):
        lines.append(f"| {kind} | {cls} | {n} | " + " | ".join(f"{x:.1%}" for x in shares) + f" | {flagged_as} |")
    return lines


def bundle_summary(m: dict, weights: str, images_per_second: float) -> dict:
    """The headline figures of an evaluation, as the bundle JSON keeps them (``metrics``)."""
    two = lambda get: {view: round(get(m[view]), 4) for view in ("clean", "ad")}
    return {
        "split": m["split"],
        "weights": weights,
        "macro_f1_wildlife": two(lambda v: v["macro_f1_wildlife"]),
        "macro_f1_all": two(lambda v: v["macro_f1_all"]),
        "flag_precision": two(lambda v: v["flag"]["precision"]),
        "flag_recall": two(lambda v: v["flag"]["recall"]),
        "ece_after_temperature": two(lambda v: v["ece_after_temperature"]),
        "images_per_second_1_thread": images_per_second,
    }


def write_report(m: dict, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    clean = {k: v for k, v in m.items() if not k.startswith("_")}
    j = out_dir / "metrics.json"
    j.write_text(json.dumps(clean, indent=1) + "\n")
    md = out_dir / "metrics.md"
    md.write_text(markdown_report(clean))
    return [j, md]
