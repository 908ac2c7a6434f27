"""Hold a second runtime to the int8 parity rule before it may serve: OpenVINO bf16 against
the shipped onnxruntime fp32 evaluation of the same ONNX file.

    .venv/bin/python -m training.parity [--model NAME] [--limit-per-class N]

Scores the test split (clean, ad-style and listing-scene views) and the real sale posts
(dev-ads) with OpenVINO bf16, compares them with the bundle's own evaluation
(``NAME.eval/metrics.json`` and ``devads.json``, made by onnxruntime fp32), and writes the
result into the bundle JSON as ``runtime_parity["openvino-bf16"]``. It passes when no view's
wildlife macro-F1 drops by more than 0.5 point and the dev-ads ivory F1 at the shipped rule
by no more than 0.5 point either; only then does ``WILDSCAN_RUNTIME=auto`` pick OpenVINO
bf16 (on CPUs with native bf16, :mod:`vision.engines`). Needs a CPU with AVX512_BF16 or AMX:
elsewhere OpenVINO would emulate bf16 and the check says so.
"""

from __future__ import annotations

import argparse
import json
import sys

from vision.bundle import BundleConfig, bundle_paths, save_bundle_config
from vision.engines import PARITY_KEY, native_bf16
from vision.records import utc_now
from vision.registry import resolve_model
from vision.runtime import Classifier

from . import devads
from .errors import TrainingError
from .evaluate import VIEWS, evaluate_split

MAX_DROP = 0.005  # the int8 rule: at most half a point of wildlife macro-F1 on any view
RULE = f"wildlife macro-F1 of every test view and dev-ads ivory F1 within {MAX_DROP * 100:.1f} point"


def verdict(pairs: list[tuple[float, float]], complete: bool) -> dict:
    """The rule over ``(before, after)`` figure pairs: passed (only on complete splits), the
    largest drop and the rule's text."""
    max_drop = max(before - after for before, after in pairs)
    return {"passed": bool(complete and max_drop <= MAX_DROP), "max_drop": round(max_drop, 4), "rule": RULE}


def check(model_path, limit_per_class: int = 0, progress: bool = True) -> dict:
    """The parity record for OpenVINO bf16 against the bundle's onnxruntime evaluation."""
    if not native_bf16():
        raise TrainingError("this CPU has no native bf16 (AVX512_BF16 or AMX): nothing to check here")
    onnx_path, _ = bundle_paths(model_path)
    eval_dir = onnx_path.with_suffix(".eval")
    reference = json.loads((eval_dir / "metrics.json").read_text())
    reference_ads = json.loads((eval_dir / "devads.json").read_text())
    classifier = Classifier.from_path(onnx_path, intra_threads=2, galleries=None, runtime="openvino-bf16")
    if classifier.model_info()["precision"] != "bf16":
        raise TrainingError("OpenVINO did not load in bf16 on this machine")
    found = evaluate_split(classifier, "test", limit_per_class=limit_per_class, progress=progress)
    ads = devads.evaluate(classifier)
    macro = {
        view: {
            "onnxruntime_fp32": reference[view]["macro_f1_wildlife"],
            "openvino_bf16": found[view]["macro_f1_wildlife"],
        }
        for view in VIEWS
    }
    ivory_f1 = {"onnxruntime_fp32": reference_ads["shipped_rule"]["f1"], "openvino_bf16": ads["shipped_rule"]["f1"]}
    pairs = [(m["onnxruntime_fp32"], m["openvino_bf16"]) for m in [*macro.values(), ivory_f1]]
    complete = not limit_per_class and found["clean"]["n"] == reference["clean"]["n"]
    return {
        **verdict(pairs, complete),
        "wildlife_macro_f1": macro,
        "dev_ads_ivory_f1": ivory_f1,
        "dev_ads_ivory_auc": {"onnxruntime_fp32": reference_ads["ivory_auc"], "openvino_bf16": ads["ivory_auc"]},
        "test_photos": found["clean"]["n"],
        "model_sha256": classifier.model_info()["sha256"],  # the record holds for this ONNX file only
        "scoring": classifier.config.scoring_digest(),  # ... and for this preprocessing
        "measured": utc_now(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=None, help="bundle name or path (default: the shipped model)")
    p.add_argument("--limit-per-class", type=int, default=0, help="a quick look (never marks the check passed)")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    onnx_path, json_path = bundle_paths(resolve_model(args.model))
    result = check(onnx_path, args.limit_per_class, progress=not args.quiet)
    print(json.dumps(result, indent=1))
    if not args.limit_per_class:
        config = BundleConfig.from_dict(json.loads(json_path.read_text()))
        config.runtime_parity[PARITY_KEY] = result
        save_bundle_config(onnx_path, config)
        print(f"wrote runtime_parity[{PARITY_KEY!r}] into {json_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
