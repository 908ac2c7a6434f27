"""``wildscan scan`` and ``wildscan report``.

Only argparse is imported at registration; everything else when a command runs, so
``wildscan --help`` stays instant.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .api import ENGINES, ScanSummary, scan, summary_text

__all__ = ["register_report", "register_scan", "scan"]


def register_scan(sub: argparse._SubParsersAction) -> None:
    """Add ``wildscan scan`` to the CLI."""
    p = sub.add_parser(
        "scan",
        help="score every photo of folders, path lists or crawl manifests; resumable",
        description="Score every image of the inputs and write one row per image (with the manifest's "
        "metadata, a near-duplicate cluster and, for unreadable files, the reason). Results are kept in a "
        "SQLite database: run the same command again after a crash and it continues where it stopped.",
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="folder (recursive), image, list of paths (.txt) or manifest (.csv, .jsonl, .parquet)",
    )
    p.add_argument(
        "--out",
        action="append",
        required=True,
        metavar="FILE",
        help="results file: .jsonl, .csv or .parquet (repeat for several)",
    )
    p.add_argument("--db", default=None, help="scan database (default: beside the first --out, .db)")
    p.add_argument("--model", default=None, help="bundle name or path (default: the shipped model)")
    p.add_argument("--engine", choices=ENGINES, default="local", help="local processes (default) or a Ray cluster")
    p.add_argument("--address", default=None, help="Ray cluster to join (e.g. auto, ray://head:10001)")
    p.add_argument(
        "--workers",
        type=_positive,
        default=None,
        help="worker processes (local, default: one per core) or model actors (ray)",
    )
    p.add_argument(
        "--batch-size",
        type=_positive,
        default=4,
        help="images per inference call (default 4: batches of 2-4 ran 1.2x faster than 16; bench_layout.py)",
    )
    p.add_argument(
        "--threshold",
        action="append",
        default=[],
        metavar="CATEGORY=VALUE",
        help="flag CATEGORY at this probability instead of the model's threshold (repeatable)",
    )
    p.add_argument("--path-column", default=None, help="manifest column with image paths (default: detected)")
    p.add_argument("--bytes-column", default=None, help="manifest column with image bytes (default: detected)")
    p.add_argument("--quiet", action="store_true", help="no progress bar (progress goes to the log with -v)")
    p.add_argument("--list-skipped", action="store_true", help="name the folder files skipped as not images")
    p.set_defaults(func=run_scan)


def register_report(sub: argparse._SubParsersAction) -> None:
    """Add ``wildscan report`` to the CLI."""
    p = sub.add_parser(
        "report",
        help="summarise a scan's results: flagged items by category, seller, platform; reused photos",
    )
    p.add_argument("results", help="results file written by 'wildscan scan' (.jsonl, .csv, .parquet)")
    p.add_argument("--top", type=_positive, default=10, help="rows per section (default 10)")
    p.add_argument(
        "--html",
        type=Path,
        metavar="FILE",
        help="also write one offline HTML page: flagged and possible ads first (grouped by near-duplicate "
        "cluster and seller, with thumbnails, category, score, what decided, URL, title, price), counts per "
        "category, platform and day, failures",
    )
    p.set_defaults(func=run_report)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


class Terminated(KeyboardInterrupt):
    """SIGTERM (a service manager, ``kill``): stops the scan like Ctrl-C does."""


def _terminate(signum, frame) -> None:
    raise Terminated


def run_scan(args: argparse.Namespace) -> int:
    """``wildscan scan``: run :func:`scan` and print the summary. Ctrl-C and SIGTERM stop it
    between batches, say what is saved and how to resume (exit 130 and 143)."""
    import signal

    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        summary = _scan_from_args(args)
    except KeyboardInterrupt as e:
        from .store import default_db_path

        db = args.db or default_db_path(args.out[0])
        how = "terminated" if isinstance(e, Terminated) else "interrupted"
        print(f"wildscan scan: {how}; every result so far is saved in {db}. "
              "Run the same command again to continue where it stopped.", file=sys.stderr)  # fmt: skip
        return 143 if isinstance(e, Terminated) else 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(summary_text(summary))
    from vision.formats import say_skipped, skipped_in_folders

    skipped = say_skipped("scan", skipped_in_folders(args.inputs), args.list_skipped)
    if skipped:
        print(skipped, file=sys.stderr)
    return 0


def _scan_from_args(args: argparse.Namespace) -> ScanSummary:
    return scan(
        args.inputs,
        args.out,
        db=args.db,
        model=args.model,
        engine=args.engine,
        address=args.address,
        workers=args.workers,
        batch_size=args.batch_size,
        thresholds=args.threshold,
        path_column=args.path_column,
        bytes_column=args.bytes_column,
        quiet=args.quiet,
    )


def run_report(args: argparse.Namespace) -> int:
    """``wildscan report``: print the summary of a results file."""
    from .outputs import read_rows
    from .report import build_report, format_report

    rows = list(read_rows(args.results))
    print(format_report(build_report(rows), top=args.top))
    if args.html:
        from .html_report import write_html_report

        write_html_report(rows, args.html, source=Path(args.results).name)
        print(f"HTML report: {args.html}", file=sys.stderr)
    return 0
