"""``wildscan data | train | evaluate | export``: the training-side subcommands.

Registration only builds parsers; torch and timm are imported inside the commands.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .errors import TrainingError


def register_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="build, check or describe the training dataset")
    actions = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    b = actions.add_parser("build", help="rewrite splits.csv and excluded.csv from the shared photos")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    c = actions.add_parser("check", help="verify hashes, leakage between splits and class minimums")
    c.add_argument("--pdq", action="store_true", help="also recompute every stored PDQ hash (slower)")
    s = actions.add_parser("stats", help="print photos per class and split")
    s.add_argument("--sheets", metavar="DIR", help="also write a contact sheet PNG per class into DIR")
    s.add_argument("--split", default="train", help="split for the contact sheets (default train)")
    p.set_defaults(func=run_data)


def run_data(args: argparse.Namespace) -> int:
    from . import data

    if args.data_command == "build":
        print(json.dumps(data.build(progress=not args.quiet)))
        return 0
    if args.data_command == "check":
        problems = data.check(recompute_pdq=args.pdq)
        for line in problems:
            print(line)
        print(f"{len(problems)} problems" if problems else "dataset OK", file=sys.stderr)
        return 1 if problems else 0
    print(data.stats_table())
    if args.sheets:
        examples = data.load_split(args.split)
        for cls in data.classes():
            out = data.contact_sheet([e for e in examples if e.cls == cls], Path(args.sheets) / f"{cls}.png")
            print(f"wrote {out}", file=sys.stderr)
    return 0


def register_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train the model (cached features on CPU)")
    p.add_argument(
        "--recipe",
        choices=["heads", "finetune"],
        default="heads",
        help="heads: frozen ImageNet trunk + one-vs-rest heads chosen on real sale posts (model 2, "
        "the shipped one); finetune: the model 1 recipe (fine-tuned top, softmax)",
    )
    p.add_argument(
        "--config",
        help="recipe JSON (default: training/configs/efficientnet_lite0.wildtrade_v1.heads.json "
        "for heads, ...wildtrade_v1.json for finetune)",
    )
    p.add_argument("--name", help="run name (default from the config)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--device", choices=["cpu", "cuda"])
    p.add_argument("--limit-per-class", type=int, help="train on a small subset (smoke runs)")
    p.add_argument("--train-views", type=int, help="augmented views per training photo (0: clean photos only)")
    p.add_argument("--out-dir", help="where run folders go (default runs/)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    if not args.quiet:  # epochs and calibration are reported through logging
        logging.getLogger("training").setLevel(logging.INFO)
    if args.recipe == "heads":
        from .heads import HeadsConfig
        from .heads import run as run_heads

        config = _existing(args.config or "training/configs/efficientnet_lite0.wildtrade_v1.heads.json", "recipe")
        heads_cfg = HeadsConfig.from_file(config, name=args.name, epochs=args.epochs, out_dir=args.out_dir)
        print(run_heads(heads_cfg, progress=not args.quiet, limit_per_class=args.limit_per_class or 0))
        return 0
    from .train import TrainConfig, run

    config = _existing(args.config or "training/configs/efficientnet_lite0.wildtrade_v1.json", "recipe")
    cfg = TrainConfig.from_file(
        config,
        name=args.name,
        epochs=args.epochs,
        device=args.device,
        limit_per_class=args.limit_per_class,
        out_dir=args.out_dir,
        train_views=args.train_views,
    )
    print(run(cfg, progress=not args.quiet))
    return 0


def _existing(path: str, what: str) -> str:
    """``path`` when it is a file; else a :class:`TrainingError` naming ``what`` was expected."""
    if not Path(path).is_file():
        raise TrainingError(f"{path} not found: expected a {what}", "bad_input")
    return path


def register_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a training run to a verified ONNX model bundle")
    p.add_argument("run", help="run folder written by 'wildscan train'")
    p.add_argument("--out", default="models", help="folder for the bundle (default models/)")
    p.add_argument("--version", default="1.0.0", help="model version written into the bundle")
    p.add_argument("--no-int8", action="store_true", help="skip int8 quantisation")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    from .export import export_run

    _existing(str(Path(args.run) / "config.json"), "run folder (written by 'wildscan train')")
    report = export_run(
        Path(args.run), Path(args.out), version=args.version, int8=not args.no_int8, progress=not args.quiet
    )
    print(json.dumps(report, indent=2))
    return 0


def register_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="evaluate a model bundle on real sale posts (dev-ads) or a dataset split")
    p.add_argument("--model", default=None, help="bundle name or path (default: the shipped model)")
    p.add_argument(
        "--split",
        default="test",
        help="dev-ads (real sale posts: ivory precision/recall/F1, AUC, PR curve, false flags), "
        "or test/val/train (clean, ad-style and listing-scene views)",
    )
    p.add_argument(
        "--feedback",
        metavar="DIR",
        help="instead of a split: the photos officers labelled ('wildscan feedback export DIR'), as they are",
    )
    p.add_argument("--out", default=None, help="folder for metrics.json and metrics.md (default: print)")
    p.add_argument("--limit-per-class", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    from vision.registry import create_model

    from .evaluate import evaluate_split, write_report

    classifier = create_model(args.model, intra_threads=2, galleries=None)
    if args.split == "dev-ads":
        from . import devads

        result = devads.evaluate(classifier)
        if args.out:
            print("\n".join(map(str, devads.write_report(result, Path(args.out)))))
        else:
            print(devads.markdown(result))
        return 0
    if args.feedback:
        from .data import load_feedback

        examples = load_feedback(args.feedback)
        metrics = evaluate_split(classifier, "feedback", examples=examples, views=("clean",), progress=not args.quiet)
    else:
        metrics = evaluate_split(classifier, args.split, limit_per_class=args.limit_per_class, progress=not args.quiet)
    if args.out:
        paths = write_report(metrics, Path(args.out))
        print("\n".join(map(str, paths)))
    else:
        from .evaluate import markdown_report

        print(markdown_report(metrics))
    return 0
