"""The decision rule chosen on the exported model's own outputs, every view of every photo.

    python -m training.view_rule [--model NAME]                 # compare the variants
    python -m training.view_rule --write 2.3.0 [--model NAME]   # ship the chosen one (test and
                                                                # dev-ads evaluations, model card)
    python -m training.view_rule --write 2.3.0 --variant NAME   # ship a named variant by hand

:func:`training.heads.choose_rule` chooses a run's rule on the torch head's cached features,
with the whole-photo score for every label that is not an object. Here the exported ONNX file
scores validation (clean, ad-style and listing-scene views) and the real sale posts
(``dev-ads``) on the whole photo *and* each crop, so a live-animal label can take its best
view too (a small snake in a wide scene) with a threshold chosen on those best-view scores.

A :class:`Variant` names the labels read at their best view, the labels whose whole-photo
score starts the crop cascade and, optionally, one group of labels whose thresholds count any
photo of the group as a hit (:func:`hits`: what an officer needs from a flag is the reptile,
even when the reptile label is the wrong one) and a lowest cascade start. For each, as
:func:`training.heads.choose_rule` does: thresholds at validation precision 0.95 with floors
(:func:`training.rule.ovr_thresholds`), the cascade's start so that at most 20 % of validation
photos need crops (cost within 2x a view), the ivory look-alike floor, and the ivory threshold
on dev-ads (cross-validated over
post groups). :func:`select` then applies the rule declared before the comparison: dev-ads
not-ivory photos flagged <= 5 %, dev-ads cross-validated ivory F1 not below the shipped rule's,
validation false flags in no view more than 0.5 point above the shipped rule's; of those, the
highest validation flag recall averaged over the three views. The shipped rule is the first
variant, :data:`SHIPPED` (2.3.0's, selected against 2.2.0's, :data:`REPTILES_AT_BEST`, which had
been selected against 2.1.0's, :data:`OBJECTS_ONLY`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import NamedTuple

import numpy as np

from vision.bundle import BundleConfig, bundle_paths, save_bundle_config
from vision.registry import resolve_model
from vision.runtime import Classifier, needs_crops
from vision.taxonomy import get_category

from . import data, devads, metrics
from .evaluate import VIEWS, model_inputs, split_examples
from .rule import IVORY_MAX_FALSE_FLAG, OBJECT_LABELS, aggregate, choose_crops_from, ovr_thresholds

CACHE = Path("runs/view_rule")
REPTILES = ("snake", "lizard", "crocodilian", "turtle_tortoise")
MAX_FALSE_FLAG_RISE = 0.005
ANIMAL_KINDS = ("snake_live", "lizard_live", "crocodilian_live", "turtle_tortoise_live")


class Variant(NamedTuple):
    name: str
    best_view: tuple[str, ...]  # labels scored by their best view (the object labels)
    triggers: tuple[str, ...]  # labels whose whole-photo score starts the cascade
    shared: tuple[str, ...] = ()  # one group: its labels' thresholds count any photo of the group a hit
    crops_from_min: float = 0.0  # the cascade never starts lower (fewer crops than the budget allows)


BEST_REPTILES = (*OBJECT_LABELS, *REPTILES)
SNAKE_LIZARD = (*OBJECT_LABELS, "snake", "lizard")
# 2.3.0; the group variants' cascade starts lower than 2.2.0's (more photos flagged whole leave
# room in the crop budget), which raises the ivory floor; this one starts where 2.2.0's does
SHIPPED = Variant(
    "+ reptiles; snake, lizard start crops; reptiles one group; crops from 0.24 at least",
    BEST_REPTILES,
    SNAKE_LIZARD,
    REPTILES,
    0.24,
)
REPTILES_AT_BEST = Variant("+ reptiles; snake, lizard start crops", BEST_REPTILES, SNAKE_LIZARD)  # 2.2.0
OBJECTS_ONLY = Variant("objects only (2.1.0's classes)", OBJECT_LABELS, OBJECT_LABELS)
VARIANTS = [
    SHIPPED,
    REPTILES_AT_BEST,
    OBJECTS_ONLY,
    Variant("+ snake", (*OBJECT_LABELS, "snake"), (*OBJECT_LABELS, "snake")),
    Variant("+ snake, lizard", SNAKE_LIZARD, SNAKE_LIZARD),
    Variant("+ reptiles", BEST_REPTILES, BEST_REPTILES),
    Variant("+ reptiles; snake starts crops", BEST_REPTILES, (*OBJECT_LABELS, "snake")),
    Variant("+ reptiles; objects start crops", BEST_REPTILES, OBJECT_LABELS),
    Variant("+ every wildlife class; objects start crops", ("*",), OBJECT_LABELS),
    # one group: a reptile flagged under another reptile's label counts as a hit (2026-12-03)
    Variant("objects only; reptiles one group", OBJECT_LABELS, OBJECT_LABELS, REPTILES),
    Variant("+ snake, lizard; snake and lizard one group", SNAKE_LIZARD, SNAKE_LIZARD, ("snake", "lizard")),
    Variant("+ reptiles; snake starts crops; reptiles one group", BEST_REPTILES, (*OBJECT_LABELS, "snake"), REPTILES),
    Variant("+ reptiles; snake, lizard start crops; reptiles one group", BEST_REPTILES, SNAKE_LIZARD, REPTILES),
]


def hits(targets: np.ndarray, labels: list[str], shared: tuple[str, ...] = ()) -> np.ndarray:
    """N x C: which photos (integer ``targets``) count as hits for each label's threshold: its
    own photos, and for a label of the ``shared`` group every photo of the group (a lizard
    flagged by the snake score is a reptile flagged; the label may be the wrong reptile). A
    group is two or more wildlife labels: a non-wildlife label would leave the negatives."""
    y = np.eye(len(labels))[targets]
    if shared:
        bad = [lab for lab in shared if lab not in labels or not get_category(lab).is_wildlife]
        if bad or len(set(shared)) < 2:
            raise ValueError(f"a shared group is two or more wildlife labels of the model, got {shared!r}")
        group = np.array([lab in shared for lab in labels])
        y[:, group] = y[:, group].max(1, keepdims=True)
    return y


def view_scores(classifier: Classifier, examples: list[data.Example], view: str, cache: Path | None = None):
    """Calibrated scores of every view (whole photo, then each crop) of ``examples`` in
    ``view``: N x V x C, no cascade. Cached as ``.npy`` at ``cache`` when given."""
    if cache is not None and cache.exists():
        return np.load(cache)
    parts = []
    for start in range(0, len(examples), 64):
        x = model_inputs(examples[start : start + 64], classifier, view)
        n, v = x.shape[:2]
        logits = classifier.run(x.reshape(n * v, *x.shape[2:]))[0]
        parts.append(classifier.probabilities(logits).reshape(n, v, -1))
    out = np.concatenate(parts)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, out)
    return out


class Evidence(NamedTuple):
    """Everything a rule is chosen and judged on, scored once."""

    labels: list[str]
    val: dict[str, np.ndarray]  # view -> N x V x C
    val_targets: np.ndarray  # N (integer class)
    val_kinds: np.ndarray  # N (fine label)
    ads: np.ndarray  # dev-ads (ivory and not-ivory photos) N x V x C
    ads_positive: np.ndarray
    ads_groups: list[str]


def gather(classifier: Classifier, limit_per_class: int = 0, ads_limit: int = 0, cache: Path | None = CACHE):
    """The :class:`Evidence` for ``classifier``: all validation and dev-ads photos, or the first
    ``limit_per_class`` per class and ``ads_limit`` posts (a quick check); scores cached under
    ``cache`` by the ONNX file's hash (full sets only)."""
    cfg = classifier.config
    scoring = json.dumps([cfg.labels, cfg.preprocess.to_dict(), cfg.temperature, cfg.score_mode], sort_keys=True)
    key = f"{classifier.bundle.sha256[:16]}.{hashlib.sha256(scoring.encode()).hexdigest()[:8]}"
    where = (lambda name: cache / f"{key}.{name}.npy") if cache and not (limit_per_class or ads_limit) else None
    val_ex, targets = split_examples(classifier, "val", limit_per_class)
    val = {v: view_scores(classifier, val_ex, v, where(f"val.{v}") if where else None) for v in VIEWS}
    ads = [ex for ex in devads.examples() if ex.cls in ("ivory", "not_ivory")]
    ads = ads[:ads_limit] if ads_limit else ads
    scores = view_scores(classifier, ads, "clean", where("dev-ads") if where else None)
    return Evidence(
        classifier.labels,
        val,
        targets,
        np.array([ex.fine_label for ex in val_ex]),
        scores,
        np.array([ex.cls == "ivory" for ex in ads]),
        [ex.source for ex in ads],
    )


def masks(labels: list[str], variant: Variant) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(wildlife, best view, triggers)`` masks over ``labels``; ``"*"``: every wildlife label."""
    wildlife = np.array([get_category(lab).is_wildlife for lab in labels])
    named = np.array([lab in OBJECT_LABELS or lab in variant.best_view for lab in labels])
    best = named | (wildlife & ("*" in variant.best_view))
    triggers = np.array([lab in variant.triggers for lab in labels])
    return wildlife, best, triggers


def scores_of(p: np.ndarray, best: np.ndarray, wildlife, triggers, thr, crops_from) -> tuple[np.ndarray, np.ndarray]:
    """Per-photo scores as the runtime makes them (cascade, then best view): ``(scores, crops run)``."""
    run = needs_crops(p[:, 0], wildlife, triggers, thr, crops_from)
    return aggregate(np.moveaxis(p, 1, 0), best, run), run


def threshold_array(labels: list[str], thresholds: dict[str, float]) -> np.ndarray:
    """Thresholds over ``labels`` as the runtime holds them (float32; 1 for labels without one)."""
    return np.array([thresholds.get(lab, 1.0) for lab in labels], dtype=np.float32)


def choose(ev: Evidence, variant: Variant, rounds: int = 10) -> dict:
    """The rule for one variant (thresholds, cascade start, ivory floor), chosen as the module
    says. Which photos get crops depends on the thresholds (a photo flagged on the whole photo
    gets none) and the thresholds on the scores the crops give, so both are chosen again under
    the rule just chosen until nothing changes (at most ``rounds`` times): the thresholds then
    hold their precision under the cascade that ships."""
    labels, ivory = ev.labels, ev.labels.index("ivory")
    wildlife, best, triggers = masks(labels, variant)
    pv = np.concatenate([ev.val[v] for v in VIEWS])
    y = np.tile(hits(ev.val_targets, labels, variant.shared), (len(VIEWS), 1))
    negatives = ev.val["clean"][~wildlife[ev.val_targets]]

    def start_of_crops(thr: np.ndarray) -> float:
        start = choose_crops_from(pv[:, 0], triggers & wildlife, (wildlife & (pv[:, 0] >= thr)).any(1))
        return max(start, variant.crops_from_min)

    thresholds = ovr_thresholds(pv[:, 0], y, labels, wildlife)
    crops_from = start_of_crops(threshold_array(labels, thresholds))
    done, converged = 0, False
    while done < rounds:
        done += 1
        thr = threshold_array(labels, thresholds)
        at_best = ovr_thresholds(scores_of(pv, best, wildlife, triggers, thr, crops_from)[0], y, labels, wildlife)
        new = {**thresholds, **{lab: at_best[lab] for k, lab in enumerate(labels) if best[k] and lab in at_best}}
        new.update({lab: thresholds[lab] for lab in OBJECT_LABELS if lab in thresholds})  # as heads.choose_rule
        neg = scores_of(negatives, best, wildlife, triggers, thr, crops_from)[0]
        floor = round(float(np.quantile(neg[:, ivory], 1 - IVORY_MAX_FALSE_FLAG)) + 1e-4, 4)
        ads = scores_of(ev.ads, best, wildlife, triggers, thr, crops_from)[0]
        new["ivory"] = round(max(floor, devads.best_threshold(ads[:, ivory], ev.ads_positive)), 4)
        new_start = start_of_crops(threshold_array(labels, new))
        converged = new == thresholds and new_start == crops_from
        if converged:
            break
        thresholds, crops_from = new, new_start
    thr = threshold_array(labels, thresholds)
    return {
        "variant": variant.name,
        "object_labels": [lab for k, lab in enumerate(labels) if best[k]],
        "crop_triggers": [lab for k, lab in enumerate(labels) if triggers[k]],
        "shared": list(variant.shared),
        "crops_from_min": variant.crops_from_min,
        "thresholds": thresholds,
        "crops_from": crops_from,
        "ivory_floor": floor,
        "rounds": done,
        "converged": converged,  # otherwise the last round's thresholds, under the cascade before them
        "val_crop_fraction": float(scores_of(pv, best, wildlife, triggers, thr, crops_from)[1].mean()),
        "dev_ads_crop_fraction": float(scores_of(ev.ads, best, wildlife, triggers, thr, crops_from)[1].mean()),
    }


def measure(ev: Evidence, rule: dict) -> dict:
    """How a rule does on dev-ads and on each validation view (flags and the top label)."""
    labels, ivory = ev.labels, ev.labels.index("ivory")
    wildlife = np.array([get_category(lab).is_wildlife for lab in labels])
    best = np.array([lab in rule["object_labels"] for lab in labels])
    triggers = np.array([lab in rule["crop_triggers"] for lab in labels])
    thr = threshold_array(labels, rule["thresholds"])
    ads, _ = scores_of(ev.ads, best, wildlife, triggers, thr, rule["crops_from"])
    cv, _ = devads.cross_validated_flags(ads[:, ivory], ev.ads_positive, ev.ads_groups, floor=rule["ivory_floor"])
    flagged_ads = (wildlife & (ads >= thr)).any(1)
    out = {
        "dev_ads_cv": {k: round(v, 4) for k, v in devads.prf(cv, ev.ads_positive).items()},
        "dev_ads_auc": round(metrics.roc_auc(ads[:, ivory], ev.ads_positive), 4),
        "dev_ads_not_ivory_flagged": round(float(flagged_ads[~ev.ads_positive].mean()), 4),
    }
    is_wild = wildlife[ev.val_targets]
    wild_labels = [lab for lab in labels if get_category(lab).is_wildlife]
    for view in VIEWS:
        p, run = scores_of(ev.val[view], best, wildlife, triggers, thr, rule["crops_from"])
        flagged = (wildlife & (p >= thr)).any(1)
        table = metrics.per_class(ev.val_targets, p.argmax(1), labels)
        out[view] = {
            "macro_f1_wildlife": round(metrics.macro_f1(table, wild_labels), 4),
            "flag_recall": round(float(flagged[is_wild].mean()), 4),
            "false_flag_rate": round(float(flagged[~is_wild].mean()), 4),
            "crops_run": round(float(run.mean()), 4),
            "flagged_by_kind": {
                k: round(float(flagged[ev.val_kinds == k].mean()), 4) for k in ANIMAL_KINDS if (ev.val_kinds == k).any()
            },
        }
    return out


def select(rows: list[dict]) -> dict:
    """The rule declared in the module docstring over :func:`compare`'s rows (the first one is
    the shipped variant)."""
    base = rows[0]["measured"]

    def allowed(m: dict) -> bool:
        return (
            m["dev_ads_not_ivory_flagged"] <= 0.05
            and m["dev_ads_cv"]["f1"] >= base["dev_ads_cv"]["f1"]
            and all(m[v]["false_flag_rate"] <= base[v]["false_flag_rate"] + MAX_FALSE_FLAG_RISE for v in VIEWS)
        )

    recall = lambda m: float(np.mean([m[v]["flag_recall"] for v in VIEWS]))
    candidates = [rows[0]] + [r for r in rows[1:] if allowed(r["measured"])]  # the shipped rule stays unless beaten
    return max(candidates, key=lambda r: recall(r["measured"]))


def compare(classifier: Classifier, variants: list[Variant] = VARIANTS) -> list[dict]:
    ev = gather(classifier)
    rows = []
    for variant in variants:
        rule = choose(ev, variant)
        rows.append({"rule": rule, "measured": measure(ev, rule)})
    return rows


def write(model_path: Path, rows: list[dict], version: str, chosen: dict | None = None) -> Path:
    """The bundle JSON with the rule of ``chosen`` (default: :func:`select` over ``rows``) and
    ``version``; the comparison goes into ``training_data["view_rule"]``. The ONNX file is not
    touched."""
    onnx_path, json_path = bundle_paths(model_path)
    rule = (chosen or select(rows))["rule"]
    cfg = json.loads(json_path.read_text())
    cfg.update(
        version=version,
        thresholds=rule["thresholds"],
        object_labels=rule["object_labels"],
        crop_triggers=rule["crop_triggers"],
        crops_from=rule["crops_from"],
    )
    td = cfg.setdefault("training_data", {})
    td.update(
        ivory_floor=rule["ivory_floor"],
        val_crop_fraction=rule["val_crop_fraction"],
        dev_ads_crop_fraction=rule["dev_ads_crop_fraction"],
    )
    by_rule = chosen is None or chosen["rule"]["variant"] == select(rows)["rule"]["variant"]
    td["view_rule"] = {
        "chosen": rule["variant"],
        "shared": rule["shared"],  # the labels whose thresholds count any photo of the group a hit
        "crops_from_min": rule["crops_from_min"],
        "how": "python -m training.view_rule: thresholds on the ONNX file's best-view validation scores; "
        + (
            "chosen by the rule in its docstring" if by_rule else "chosen by hand (--variant), not by the declared rule"
        ),
        "rows": [
            {"variant": r["rule"]["variant"], "rounds": r["rule"]["rounds"], "converged": r["rule"]["converged"]}
            | r["measured"]
            for r in rows
        ],
    }
    save_bundle_config(onnx_path, BundleConfig.from_dict(cfg))
    return json_path


def ship(model_path: Path, rows: list[dict], version: str, progress: bool = True, chosen: dict | None = None) -> Path:
    """:func:`write`, then what ``wildscan export`` does after choosing a rule: the test split
    and dev-ads evaluated with the new JSON (``NAME.eval``), its summary in the JSON, the model
    card rewritten. Returns the card's path."""
    from .card import write_model_card
    from .evaluate import bundle_summary, evaluate_split, write_report

    json_path = write(model_path, rows, version, chosen)
    classifier = Classifier.from_path(json_path, intra_threads=2, galleries=None, runtime="onnxruntime")
    eval_dir = classifier.bundle.onnx_path.with_suffix(".eval")
    evaluation = evaluate_split(classifier, "test", progress=progress)
    write_report(evaluation, eval_dir)
    devads.write_report(devads.evaluate(classifier), eval_dir)
    cfg = classifier.config
    speed = cfg.metrics.get("images_per_second_1_thread", 0.0)  # the same ONNX file: export's figure
    weights = cfg.metrics.get("weights", "fp32")
    save_bundle_config(
        classifier.bundle.onnx_path,
        BundleConfig.from_dict({**cfg.to_dict(), "metrics": bundle_summary(evaluation, weights, speed)}),
    )
    return write_model_card(classifier.bundle.onnx_path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=None, help="bundle name or path (default: the shipped model)")
    p.add_argument("--write", metavar="VERSION", help="write the selected rule into the bundle JSON as VERSION")
    p.add_argument(
        "--variant",
        metavar="NAME",
        help="with --write: ship this variant instead of the one the declared rule selects (the JSON says so)",
    )
    args = p.parse_args(argv)
    if args.variant and not args.write:
        p.error("--variant names the variant to ship: it needs --write VERSION")
    if args.variant and args.variant not in {v.name for v in VARIANTS}:
        p.error(f"no variant {args.variant!r}; choose from: {' | '.join(v.name for v in VARIANTS)}")
    path = resolve_model(args.model)
    classifier = Classifier.from_path(path, intra_threads=2, galleries=None)
    rows = compare(classifier)
    for row in rows:
        print(json.dumps({"variant": row["rule"]["variant"], **row["measured"]}))
    print("selected:", select(rows)["rule"]["variant"])
    if args.write:
        named = [r for r in rows if r["rule"]["variant"] == args.variant]
        print(ship(Path(path), rows, args.write, chosen=named[0] if named else None))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
