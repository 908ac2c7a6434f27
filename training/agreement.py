"""Agreement check for a preprocessing change: the same ONNX with the bundle's preprocessing
and with a candidate one, on the test split (clean, ad-style and listing-scene views) and the
real sale posts (dev-ads).

    .venv/bin/python -m training.agreement [--model NAME] [--interpolation linear]
        [--reference-interpolation NAME] [--limit-per-class N] [--out FILE]

A faster preparation path changes the model's input, so before a bundle adopts it this
measures what changes: top-1 agreement (the label shown), flag agreement (the decision),
the largest and mean change of any probability, and the wildlife macro-F1 of every view
and the dev-ads ivory F1 and AUC under both. It passes under the runtime parity rule: no
view's wildlife macro-F1 and not the dev-ads ivory F1 lower by more than half a point.
Saved as ``NAME.eval/agreement.json`` (``--out``), the model card shows it.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from vision.records import utc_now
from vision.registry import create_model
from vision.runtime import Classifier

from . import devads
from .evaluate import VIEWS, evaluate_split
from .parity import verdict


def _decisions(classifier: Classifier, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(label index shown, flagged) per row, by the bundle's decision rule."""
    labels = classifier.labels
    out = [classifier.decide(p) for p in probs.astype(np.float32)]
    shown = np.array([labels.index(d[0]) if d[0] in labels else -1 for d in out])
    return shown, np.array([d[2] for d in out])


def _compare(classifier: Classifier, p_ref: np.ndarray, p_new: np.ndarray) -> dict:
    shown_ref, flag_ref = _decisions(classifier, p_ref)
    shown_new, flag_new = _decisions(classifier, p_new)
    change = np.abs(p_new - p_ref).max(axis=1)
    return {
        "photos": len(p_ref),
        "top1_agreement": float((p_ref.argmax(1) == p_new.argmax(1)).mean()),
        "shown_label_agreement": float((shown_ref == shown_new).mean()),
        "flag_agreement": float((flag_ref == flag_new).mean()),
        "max_probability_change": float(change.max()),
        "mean_max_probability_change": float(change.mean()),
    }


def _pair(reference: dict, candidate: dict, key: str) -> dict:
    return {"reference": reference[key], "candidate": candidate[key]}


def _measure(model: str | None, interpolation: str | None, limit_per_class: int, progress: bool):
    """The bundle with ``interpolation`` (None: its own): its classifier, test-split metrics
    (with logits), dev-ads metrics and dev-ads probabilities."""
    classifier = create_model(model, intra_threads=2, galleries=None, runtime="onnxruntime")
    if interpolation:
        classifier.config.preprocess = replace(classifier.preprocess, interpolation=interpolation)
    split = evaluate_split(classifier, "test", limit_per_class=limit_per_class, return_logits=True, progress=progress)
    ads = devads.scored(devads.load())
    results = classifier.predict_files([a.path for a in ads])
    ad_probs = np.array([[r.scores[lab] for lab in classifier.labels] for r in results])
    return classifier, split, devads.evaluate(classifier, ads, results), ad_probs


def check(
    model: str | None, interpolation: str, reference: str | None = None, limit_per_class: int = 0, progress=True
) -> dict:
    """Reference (default: the bundle's own) vs candidate preprocessing of one bundle:
    agreement and metric changes."""
    classifier, ref, ref_ads, ref_ad_probs = _measure(model, reference, limit_per_class, progress)
    reference = classifier.preprocess.interpolation
    _, new, new_ads, new_ad_probs = _measure(model, interpolation, limit_per_class, progress)
    views = {}
    for view in VIEWS:
        p_ref, p_new = (classifier.probabilities(run["_logits"][view]) for run in (ref, new))
        views[view] = {
            **_compare(classifier, p_ref, p_new),
            "macro_f1_wildlife": _pair(ref[view], new[view], "macro_f1_wildlife"),
        }
    views["dev_ads"] = {
        **_compare(classifier, ref_ad_probs, new_ad_probs),
        "ivory_f1": _pair(ref_ads["shipped_rule"], new_ads["shipped_rule"], "f1"),
        "ivory_auc": _pair(ref_ads, new_ads, "ivory_auc"),
    }
    figures = [views[view]["macro_f1_wildlife"] for view in VIEWS] + [views["dev_ads"]["ivory_f1"]]
    return {
        "change": {"interpolation": {"reference": reference, "candidate": interpolation}},
        **verdict([(f["reference"], f["candidate"]) for f in figures], complete=not limit_per_class),
        "views": views,
        "model": classifier.model_info(),
        "measured": utc_now(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=None, help="bundle name or path (default: the shipped model)")
    p.add_argument("--interpolation", default="linear", help="the candidate resize (default: linear)")
    p.add_argument("--reference-interpolation", help="the resize compared with (default: the bundle's own)")
    p.add_argument("--limit-per-class", type=int, default=0, help="a quick look (never marks the check passed)")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    result = check(args.model, args.interpolation, args.reference_interpolation, args.limit_per_class, not args.quiet)
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
