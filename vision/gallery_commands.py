"""``wildscan gallery``: add, list, remove, export and import reference galleries.

    wildscan gallery add pangolin_scales seized/*.jpg --by "Zoll Frankfurt"
    wildscan gallery list
    wildscan gallery remove pangolin_scales [--sha256 HASH ...]
    wildscan gallery export pangolin.json [--category pangolin_scales]
    wildscan gallery import pangolin.json [--replace]
    wildscan gallery negatives [PHOTO ...]   # (re)build the negative pool

``wildscan classify``, the API and ``wildscan scan`` use the galleries automatically.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys


def register_gallery(sub: argparse._SubParsersAction) -> None:
    """Add ``gallery`` and its subcommands to the ``wildscan`` parser."""
    p = sub.add_parser(
        "gallery",
        help="teach a category from example photos (reference galleries)",
        description="Reference galleries: example photos' embeddings (never the photos) per category, "
        "matched in classify, the API and scan. Stored beside the model (galleries.db) or in $WILDSCAN_GALLERIES.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--model", default=None, help="bundle name or path (default: the shipped model)")
    common.add_argument("--db", default=None, help="gallery database (default: galleries.db beside the model)")
    common.add_argument("--json", action="store_true", help="print JSON instead of text")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)

    add = verbs.add_parser("add", parents=[common], help="add example photos to a category's gallery")
    add.add_argument("category", help="a taxonomy category id, e.g. pangolin_scales")
    add.add_argument("photos", nargs="+", help="image files or folders")
    add.add_argument("--by", default=None, help="who adds them (default: your user name)")
    add.set_defaults(func=run_add)

    verbs.add_parser("list", parents=[common], help="list the galleries of the model").set_defaults(func=run_list)

    remove = verbs.add_parser("remove", parents=[common], help="remove a gallery's photos (all, or by SHA-256)")
    remove.add_argument("category")
    remove.add_argument("--sha256", nargs="+", default=None, help="only these photos")
    remove.set_defaults(func=run_remove)

    export = verbs.add_parser("export", parents=[common], help="write galleries to a file (embeddings, no photos)")
    export.add_argument("file")
    export.add_argument("--category", nargs="+", default=None, help="only these categories")
    export.set_defaults(func=run_export)

    imp = verbs.add_parser("import", parents=[common], help="merge galleries from an exported file")
    imp.add_argument("file")
    imp.add_argument("--replace", action="store_true", help="replace local galleries of the same category")
    imp.set_defaults(func=run_import)

    neg = verbs.add_parser("negatives", parents=[common], help="(re)build the negative pool used for thresholds")
    neg.add_argument("photos", nargs="*", help="non-wildlife photos (default: a fixed set of the shared data)")
    neg.set_defaults(func=run_negatives)


def _open(args):
    """The classifier (head only) and the gallery store for ``args``."""
    from .gallery_photos import open_for
    from .registry import create_model

    classifier = create_model(args.model, galleries=None)
    return classifier, open_for(classifier, args.db)


def _print(args, data, text: str) -> None:
    print(json.dumps(data, indent=1, ensure_ascii=False) if args.json else text)


def _describe(info) -> str:
    if info is None:
        return "(none)"
    cal = info.calibration or {}
    loo = cal.get("loo_recall")
    return (
        f"{info.category}: version {info.version}, {info.references} photos, threshold "
        f"{'-' if info.threshold is None else f'{info.threshold:.4f}'}, leave-one-out recall "
        f"{'-' if loo is None else f'{loo:.0%}'}, false matches on the negative pool "
        f"{cal.get('false_match_rate', 0):.1%} of {cal.get('negatives', 0)}"
    )


def run_add(args: argparse.Namespace) -> int:
    from .commands import expand_inputs
    from .gallery import check_category
    from .gallery_photos import embed_files, ensure_negative_pool

    check_category(args.category)
    classifier, store = _open(args)
    with store:
        ensure_negative_pool(store, classifier)
        done = embed_files(classifier, expand_inputs(args.photos))
        for path, reason in done.failures:
            print(f"wildscan gallery add: skipped {path}: {reason}", file=sys.stderr)
        info = store.add(args.category, done.shas, done.embeddings, added_by=args.by or getpass.getuser())
    _print(args, {**info.as_dict(), "added": done.shas, "failures": done.failures}, _describe(info))
    return 1 if done.failures else 0


def run_list(args: argparse.Namespace) -> int:
    classifier, store = _open(args)
    with store:
        galleries, pool = store.list(), store.negative_pool_info()
    data = {
        "model": classifier.model_info(),
        "database": str(store.path),
        "negative_pool": pool,
        "galleries": [g.as_dict() for g in galleries],
    }
    lines = [f"galleries of {classifier.model_info()['name']} in {store.path}:"]
    lines += [f"  {_describe(g)}" for g in galleries] or ["  (none)"]
    lines.append(
        f"negative pool: {pool['photos']} photos, {pool['source']}" if pool else "negative pool: not built yet"
    )
    _print(args, data, "\n".join(lines))
    return 0


def run_remove(args: argparse.Namespace) -> int:
    _classifier, store = _open(args)
    with store:
        info = store.remove(args.category, args.sha256)
    _print(args, info.as_dict(), _describe(info))
    return 0


def run_export(args: argparse.Namespace) -> int:
    _classifier, store = _open(args)
    with store:
        data = store.export(args.file, args.category)
    summary = {g["category"]: {"version": g["version"], "references": len(g["references"])} for g in data["galleries"]}
    _print(
        args,
        summary,
        f"wrote {len(summary)} galleries to {args.file}: "
        + ", ".join(f"{c} v{s['version']} ({s['references']} photos)" for c, s in summary.items()),
    )
    return 0


def run_import(args: argparse.Namespace) -> int:
    _classifier, store = _open(args)
    with store:
        infos = store.import_file(args.file, replace=args.replace)
    _print(args, [i.as_dict() for i in infos], "\n".join(_describe(i) for i in infos) or "nothing to import")
    return 0


def run_negatives(args: argparse.Namespace) -> int:
    from .commands import expand_inputs
    from .gallery_photos import build_negative_pool

    classifier, store = _open(args)
    with store:
        pool = build_negative_pool(store, classifier, expand_inputs(args.photos) if args.photos else None)
    for path, reason in pool["failures"]:
        print(f"wildscan gallery negatives: skipped {path}: {reason}", file=sys.stderr)
    _print(args, pool, f"negative pool: {pool['photos']} photos ({pool['source']}); galleries recalibrated")
    return 0
