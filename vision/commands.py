"""``wildscan classify`` and ``wildscan models``: the inference-side subcommands."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .formats import IMAGE_SUFFIXES


def register_classify(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "classify",
        help="classify image files; prints one JSON record per line",
        description="Classify image files (folders are searched recursively). Prints one JSON "
        "result record per image; unreadable images give a record with an error.",
    )
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument("--model", default=None, help="bundle name or path (default: the shipped model)")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads (default 1)")
    p.add_argument("--batch-size", type=int, default=4, help="images per inference call (default 4)")
    p.add_argument(
        "--galleries",
        default="auto",
        metavar="DB",
        help="reference gallery database (default: galleries.db beside the model, when it exists)",
    )
    p.add_argument(
        "--no-galleries",
        dest="galleries",
        action="store_const",
        const=None,
        help="the trained model alone, without reference galleries",
    )
    p.add_argument("--list-skipped", action="store_true", help="name the folder files skipped as not images")
    p.set_defaults(func=run_classify)


def register_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the installed model bundles")
    p.set_defaults(func=run_models)


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Files as given, folders expanded to the image files below them (sorted)."""
    paths: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            paths.extend(sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES))
        else:
            paths.append(p)
    return paths


def run_classify(args: argparse.Namespace) -> int:
    from .formats import say_skipped, skipped_in_folders
    from .records import describe
    from .registry import create_model

    classifier = create_model(
        args.model, intra_threads=args.threads, max_batch=args.batch_size, galleries=args.galleries
    )
    paths = expand_inputs(args.images)
    failures = 0
    for start in range(0, len(paths), args.batch_size):
        for result in classifier.predict_files(paths[start : start + args.batch_size]):
            failures += not result.ok
            print(json.dumps(describe(result.to_dict()), ensure_ascii=False), flush=True)
    if failures:
        print(f"wildscan classify: {failures} of {len(paths)} images could not be read (see 'error')", file=sys.stderr)
    skipped = say_skipped("classify", skipped_in_folders(args.images), args.list_skipped)
    if skipped:
        print(skipped, file=sys.stderr)
    return 1 if failures else 0


def run_models(args: argparse.Namespace) -> int:
    from .registry import default_model, list_models, models_dir

    names = list_models()
    if not names:
        print(f"no model bundles in {models_dir()}")
    for name in names:
        print(("* " if name == default_model() else "  ") + name)
    return 0
