"""``wildscan scan`` and ``wildscan report``.

Only argparse is imported at registration; everything else when a command runs, so
``wildscan --help`` stays instant.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vision.errors import Reason, WildscanError

if TYPE_CHECKING:
    from .outputs import Survey

log = logging.getLogger(__name__)

ENGINES = ("local", "ray")


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
    p.add_argument("--batch-size", type=_positive, default=16, help="images per inference call (default 16)")
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
    p.set_defaults(func=run_scan)


def register_report(sub: argparse._SubParsersAction) -> None:
    """Add ``wildscan report`` to the CLI."""
    p = sub.add_parser(
        "report",
        help="summarise a scan's results: flagged items by category, seller, platform; reused photos",
    )
    p.add_argument("results", help="results file written by 'wildscan scan' (.jsonl, .csv, .parquet)")
    p.add_argument("--top", type=_positive, default=10, help="rows per section (default 10)")
    p.set_defaults(func=run_report)


class OptionError(WildscanError):
    """A command-line option with a value that cannot be used."""

    reason = Reason.BAD_OPTION


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


@dataclass
class ScanSummary:
    """What a scan did: the survey of its records, and how fast the new ones went."""

    info: Survey
    new: int
    done_before: int
    seconds: float
    outputs: list[Path]
    db: Path

    @property
    def rate(self) -> float:
        return self.new / self.seconds if self.seconds > 0 else 0.0


def parse_thresholds(pairs: list[str], labels: list[str]) -> dict[str, float]:
    """``["ivory=0.8"]`` -> ``{"ivory": 0.8}``; raises :class:`OptionError` naming the problem."""
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise OptionError(f"--threshold {pair!r}: expected CATEGORY=VALUE")
        if name not in labels:
            raise OptionError(f"--threshold {pair!r}: the model has no category {name!r}; it has {', '.join(labels)}")
        try:
            number = float(value)
        except ValueError:
            raise OptionError(f"--threshold {pair!r}: {value!r} is not a number") from None
        if not 0.0 <= number <= 1.0:
            raise OptionError(f"--threshold {pair!r}: a probability between 0 and 1 is needed")
        out[name] = number
    return out


def load_classifier(model: str | None, thresholds: list[str]):
    """``(classifier with the --threshold overrides applied, bundle path, whether any changed)``."""
    from vision.bundle import load_bundle
    from vision.registry import resolve_model
    from vision.runtime import Classifier

    path = resolve_model(model)
    bundle = load_bundle(path)
    overrides = parse_thresholds(thresholds, bundle.config.labels)
    changed = any(bundle.config.threshold(label) != value for label, value in overrides.items())
    bundle.config.thresholds = {**bundle.config.thresholds, **overrides}
    return Classifier(bundle), path, changed


def scorer_key(classifier) -> str:
    """What a stored result depends on besides the image bytes: the model's SHA-256, and
    the versions of its reference galleries when it has any (new references, new results)."""
    import hashlib
    import json

    key = classifier.model_info()["sha256"]
    galleries = getattr(classifier, "galleries", None)
    versions = galleries.index().versions if galleries is not None else None
    if versions:
        key += "+galleries:" + hashlib.sha256(json.dumps(versions, sort_keys=True).encode()).hexdigest()[:16]
    return key


def make_engine(name: str, model_path, *, workers=None, batch_size=16, address=None, galleries="auto"):
    """The engine object for ``--engine``."""
    if name == "ray":
        from .ray_engine import RayEngine

        return RayEngine(model_path, address=address, actors=workers, batch_size=batch_size, galleries=galleries)
    from .local import LocalEngine

    return LocalEngine(model_path, workers=workers, batch_size=batch_size, galleries=galleries)


def scan(
    inputs: list[str],
    outs: Sequence[str | Path],
    *,
    db: str | Path | None = None,
    model: str | None = None,
    engine: str = "local",
    address: str | None = None,
    workers: int | None = None,
    batch_size: int = 16,
    thresholds: Sequence[str] = (),
    path_column: str | None = None,
    bytes_column: str | None = None,
    quiet: bool = True,
) -> ScanSummary:
    """Scan ``inputs`` into ``outs`` (resuming from ``db``); what ``wildscan scan`` runs.

    Raises :class:`~vision.errors.WildscanError` subclasses for bad inputs, outputs,
    options, models or databases.
    """
    import tempfile

    from .inputs import Columns, iter_items
    from .outputs import flat_rows, output_format, relabeller, survey, write_rows
    from .store import ScanStore, default_db_path
    from .work import Progress

    if address and engine != "ray":
        raise OptionError("--address names a Ray cluster: use it with --engine ray")
    out_paths = [Path(o) for o in outs]
    for out in out_paths:
        output_format(out)  # refuse a bad suffix before hours of work
    classifier, model_path, thresholds_changed = load_classifier(model, list(thresholds))
    db_path = Path(db) if db else default_db_path(outs[0])
    columns = Columns(path=path_column, bytes=bytes_column)
    with tempfile.TemporaryDirectory(prefix="wildscan-scan-") as tmp:
        galleries = classifier.pin_galleries(tmp)  # one version of the galleries for the whole run
        runner = make_engine(
            engine, model_path, workers=workers, batch_size=batch_size, address=address, galleries=galleries
        )
        with ScanStore(db_path, scorer_key(classifier)) as store:
            total, done = store.register(iter_items(inputs, columns))
            log.info("%d items, %d already in %s", total, done, db_path)
            progress = Progress(total, done, quiet=quiet)
            try:
                if done < total:
                    runner.run(store.pending(iter_items(inputs, columns)), store, progress)
            finally:
                progress.close()
            seconds = progress.elapsed
            relabel = relabeller(classifier, thresholds_changed)
            info = survey(store.records(), classifier.labels, relabel)
            for out in out_paths:
                write_rows(out, flat_rows(store.records(), info, relabel), info)
        if galleries is not None:
            classifier.galleries.close()  # the pinned copy, before its folder goes
    return ScanSummary(info=info, new=progress.new, done_before=done, seconds=seconds, outputs=out_paths, db=db_path)


def summary_text(summary: ScanSummary) -> str:
    """The end-of-scan summary: counts per label, flagged, failures, speed, clusters."""
    info = summary.info
    lines = [
        f"{info.total} items: {summary.new} scanned now, {summary.done_before} done before; "
        f"{summary.seconds:.1f} s, {summary.rate:.1f} images/s",
        "  labels: " + (", ".join(f"{k} {v}" for k, v in info.label_counts.most_common()) or "none"),
        f"  flagged: {info.flagged}",
        f"  failures: {sum(info.failures.values())}"
        + (f" ({', '.join(f'{k} {v}' for k, v in info.failures.most_common())})" if info.failures else ""),
    ]
    clusters = info.clusters
    if clusters:
        lines.append(f"  near-duplicate clusters: {len(clusters)} (largest: {max(clusters.values())} photos)")
    lines.append(f"  wrote {', '.join(map(str, summary.outputs))} (database {summary.db})")
    return "\n".join(lines)


def run_scan(args: argparse.Namespace) -> int:
    """``wildscan scan``: run :func:`scan` and print the summary."""
    try:
        summary = _scan_from_args(args)
    except KeyboardInterrupt:
        from .store import default_db_path

        db = args.db or default_db_path(args.out[0])
        print(f"wildscan scan: interrupted; every result so far is saved in {db}. "
              "Run the same command again to continue where it stopped.", file=sys.stderr)  # fmt: skip
        return 130
    print(summary_text(summary))
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

    print(format_report(build_report(read_rows(args.results)), top=args.top))
    return 0
