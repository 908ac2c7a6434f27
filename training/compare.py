"""Compare model 2 variants on the real sale posts (dev-ads) and validation, from cached features.

    python -m training.compare --arch tf_efficientnet_lite2 --listing-views 1 --hidden 1024 --epochs 60

Trains the heads of one variant (:mod:`training.heads`), then prints one JSON row per way of
using the views: ``whole`` (the whole photo only) and ``crops`` (whole + every crop, object
classes at their best view). Each row has the ivory ranking on dev-ads (AUC), the
cross-validated precision / recall / F1 of the ivory threshold (post groups kept
together), the false flags on the not-ivory photos at the in-sample threshold, and the
validation wildlife macro-F1 of the top label in the clean, ad-style and listing-scene
views. The model card's selection table is made of these rows (``--append FILE``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from vision.taxonomy import get_category

from . import data, devads, metrics
from .heads import (
    EVAL_VIEWS,
    FeatureSource,
    HeadsConfig,
    crop_views,
    fuse_neighbours,
    head_logits,
    targets_matrix,
    train_head,
    training_rows,
    views_of,
)
from .neighbours import FusedHead
from .rule import OBJECT_LABELS, aggregate, fit_temperature, ovr_thresholds, sigmoid


def compare(cfg: HeadsConfig) -> list[dict]:
    """The rows for one variant (see the module docstring)."""
    src = FeatureSource(cfg, progress=False)
    train = training_rows(cfg, src.labels)
    head = train_head(cfg, src, train)
    if cfg.neighbours_k:
        head = fuse_neighbours(cfg, src, head, train)[0]
    return rows(cfg, src, head)


def compare_run(run_dir: Path) -> list[dict]:
    """The rows for a trained run folder (``wildscan train``'s output, e.g. a partial
    fine-tune): its saved network top and head, scored on the cached activations."""
    from .export import load_run

    cfg = HeadsConfig.from_file(run_dir / "config.json")
    src = FeatureSource(cfg, progress=False)
    src.net = load_run(run_dir)[2]  # the network as `wildscan export` assembles it
    src.tuned = cfg.finetune_stages > 0
    return rows(cfg, src, src.net.top.classifier)


def rows(cfg: HeadsConfig, src: FeatureSource, head) -> list[dict]:
    """The rows of one trained head (and network) on validation and dev-ads."""
    labels = src.labels
    wildlife = np.array([get_category(lab).is_wildlife for lab in labels])
    objects = np.array([lab in OBJECT_LABELS for lab in labels])
    val_ex = data.load_split("val")
    yv1 = targets_matrix(val_ex, labels)
    lv = head_logits(head, src("val", views_of(val_ex, list(EVAL_VIEWS))))
    temperature = FusedHead.kept_temperature(head) or fit_temperature(lv, np.tile(yv1, (len(EVAL_VIEWS), 1)))
    pv = sigmoid(lv / temperature)
    thresholds = ovr_thresholds(pv, np.tile(yv1, (len(EVAL_VIEWS), 1)), labels, wildlife)
    wild_labels = [lab for lab in labels if get_category(lab).is_wildlife]
    val = [
        round(metrics.macro_f1(metrics.per_class(yv1.argmax(1), part.argmax(1), labels), wild_labels), 4)
        for part in np.split(pv, len(EVAL_VIEWS))
    ]
    ads = [ex for ex in devads.examples() if ex.cls in ("ivory", "not_ivory")]
    n = 1 + len(cfg.crops)
    dp = sigmoid(head_logits(head, src("dev-ads", views_of(ads, crop_views(len(cfg.crops))))) / temperature)
    dp = dp.reshape(n, len(ads), len(labels))
    positives = np.array([ex.cls == "ivory" for ex in ads])
    ivory = labels.index("ivory")
    out = []
    for mode, run_crops in (("whole photo", np.zeros(len(ads), bool)), ("whole + crops", np.ones(len(ads), bool))):
        p = aggregate(dp, objects, run_crops)
        score = p[:, ivory]
        flags, _ = devads.cross_validated_flags(score, positives, [ex.source for ex in ads])
        cv = devads.prf(flags, positives)
        thr = np.array([thresholds.get(lab, 1.0) for lab in labels])
        thr[ivory] = devads.best_threshold(score, positives)
        false = (wildlife & (p >= thr)).any(1)[~positives].mean()
        out.append(
            {
                "arch": cfg.arch,
                "head": f"MLP {cfg.hidden}" if cfg.hidden else "linear",
                "listing_views": cfg.listing_views,
                "finetune_stages": cfg.finetune_stages,
                "ad_views": cfg.ad_views,
                "ivory_lookalike_weight": cfg.ivory_lookalike_weight,
                "balanced_pasting": cfg.balanced_pasting,
                "epochs": cfg.epochs,
                "ensemble": cfg.ensemble,
                "neighbours_k": cfg.neighbours_k,
                "views": mode,
                "auc": round(metrics.roc_auc(score, positives), 4),
                "cv_precision": round(cv["precision"], 4),
                "cv_recall": round(cv["recall"], 4),
                "cv_f1": round(cv["f1"], 4),
                "false_flags": round(float(false), 4),
                "val": val,
            }
        )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arch", default="tf_efficientnet_lite0")
    p.add_argument("--listing-views", type=int, default=2)
    p.add_argument("--ad-views", type=int, default=1)
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--seed", type=int, default=17, help="head initialisation and batch order (spread between seeds)")
    p.add_argument("--ensemble", type=int, default=1, help="heads fitted with consecutive seeds, logits averaged")
    p.add_argument("--lookalike-weight", type=float, default=1.0, help="look-alikes' weight in the ivory loss")
    p.add_argument(
        "--balanced-pasting", action="store_true", help="pasted listing scenes in every class (training.listing)"
    )
    p.add_argument("--neighbours", type=int, default=0, help="k of the ivory neighbour score (0: none)")
    p.add_argument("--run", type=Path, help="score this trained run folder instead of training heads")
    p.add_argument("--append", type=Path, help="append the rows to this JSON list")
    args = p.parse_args(argv)
    cfg = HeadsConfig(
        arch=args.arch,
        listing_views=args.listing_views,
        ad_views=args.ad_views,
        hidden=args.hidden,
        epochs=args.epochs,
        seed=args.seed,
        ensemble=args.ensemble,
        ivory_lookalike_weight=args.lookalike_weight,
        balanced_pasting=args.balanced_pasting,
        neighbours_k=args.neighbours,
    )
    found = compare_run(args.run) if args.run else compare(cfg)
    for row in found:
        print(json.dumps(row))
    if args.append:
        old = json.loads(args.append.read_text()) if args.append.exists() else []
        args.append.write_text(json.dumps(old + found, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
