"""Which ad-style effect costs a model the most, one effect at a time.

    python -m training.ad_effects [--model PATH] [--split val] [--effects border,collage]

The ad-style evaluation view (:func:`training.augment.eval_ad_view`) stacks at least three
effects on every photo. This scores the bundle on the clean photos, on that view, and on
each effect of :mod:`training.augment` applied alone (seeded per photo and effect), and
prints the wildlife macro-F1 of the top label, flag recall and the false-flag rate on
non-wildlife photos per view: where a trunk that sees listing-like photos has most to win.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

import numpy as np
from PIL import Image

from vision.preprocess import load_for_model, load_image, to_model_views
from vision.registry import resolve_model
from vision.runtime import Classifier

from . import augment
from .evaluate import score_view, split_examples

# name (also the seed's key) -> (the effect, in words)
EFFECTS: dict[str, tuple[Callable[[Image.Image, random.Random], Image.Image], str]] = {
    "colour": (augment.colour_cast, "colour cast"),
    "jpeg15-60": (augment.recompress, "JPEG quality 15-60"),
    "text": (augment.text_overlay, "price tag or banner"),
    "watermark": (augment.watermark, "watermark"),
    "collage": (augment.collage, "collage"),
    "downscale": (augment.downscale, "thumbnail blown up"),
    "border": (augment.border, "smaller, on cloth"),
}
WORDS = {"clean": "clean photo", "eval_ad": "ad-style view (3+ effects)", **{k: v[1] for k, v in EFFECTS.items()}}


def view_inputs(classifier: Classifier, raw: bytes, key: str, effect: str) -> np.ndarray:
    cfg = classifier.preprocess
    if effect == "clean":
        return load_for_model(raw, cfg)[0]
    image = load_image(raw).image.convert("RGB")
    if effect == "eval_ad":
        return to_model_views(augment.eval_ad_view(image, key), cfg)
    return to_model_views(EFFECTS[effect][0](image, random.Random(f"abl|{effect}|{key}")), cfg)


def score_effect(classifier: Classifier, examples, targets: np.ndarray, effect: str, chunk: int = 64) -> dict:
    logits = []
    for start in range(0, len(examples), chunk):
        part = examples[start : start + chunk]
        batch = np.stack([view_inputs(classifier, ex.file().read_bytes(), ex.sha256, effect) for ex in part])
        logits.append(classifier.run(batch)[0])
    return score_view(classifier, np.concatenate(logits), targets)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="bundle (default: the shipped one)")
    p.add_argument("--split", default="val")
    p.add_argument("--limit-per-class", type=int, default=0, help="the first N photos of each class (0: all)")
    p.add_argument("--effects", help=f"comma-separated, of {', '.join(WORDS)} (default: all)")
    args = p.parse_args(argv)
    classifier = Classifier.from_path(resolve_model(args.model), intra_threads=2, galleries=None)
    examples, targets = split_examples(classifier, args.split, args.limit_per_class)
    names = args.effects.split(",") if args.effects else list(WORDS)
    if unknown := [name for name in names if name not in WORDS]:
        p.error(f"unknown effect {', '.join(unknown)}: choose from {', '.join(WORDS)}")
    print(f"| view ({args.split}, {len(examples)} photos) | wildlife macro-F1 | flag recall | false flags | seconds |")
    print("|---|---:|---:|---:|---:|")
    for name in names:
        start = time.perf_counter()
        m = score_effect(classifier, examples, targets, name)
        flag = m["flag"]
        print(
            f"| {WORDS[name]} | {m['macro_f1_wildlife']:.3f} | {flag['recall']:.3f} | {flag['false_flag_rate']:.3f} "
            f"| {time.perf_counter() - start:.0f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
