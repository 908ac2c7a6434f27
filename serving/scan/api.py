"""The bulk scanner's library entry point: :func:`scan` (what ``wildscan scan`` runs) and
its summary. The command line (:mod:`serving.scan.commands`) only parses arguments.

    from serving.scan.api import scan
    summary = scan(["crawl/"], ["results.parquet"])
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vision.engines import runtime_setting_of
from vision.errors import Reason, WildscanError

if TYPE_CHECKING:
    from .outputs import Survey

log = logging.getLogger(__name__)

ENGINES = ("local", "ray")


class OptionError(WildscanError):
    """A command-line option with a value that cannot be used."""

    reason = Reason.BAD_OPTION


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
    """What a stored result depends on besides the image bytes: the model's SHA-256, the
    digest of what in its bundle JSON decides the scores (a new preprocessing on the same
    ONNX file gives new scores; thresholds apply to stored scores), the runtime and precision
    when not onnxruntime fp32, and the versions of its reference galleries when it has any
    (new references, new results)."""
    import hashlib
    import json

    info = classifier.model_info()
    key = f"{info['sha256']}+scoring:{classifier.config.scoring_digest()}"
    runtime = runtime_setting_of(info)
    if runtime != "onnxruntime":
        key += f"+{runtime}"  # another runtime: its own results
    galleries = getattr(classifier, "galleries", None)
    versions = galleries.index().versions if galleries is not None else None
    if versions:
        key += "+galleries:" + hashlib.sha256(json.dumps(versions, sort_keys=True).encode()).hexdigest()[:16]
    return key


def make_engine(name: str, model_path, *, workers=None, batch_size=4, address=None, galleries="auto", runtime=None):
    """The engine object for ``--engine``; ``runtime``: the setting its workers load the model
    with (the driver's resolved choice, so that every worker runs what the results are keyed on)."""
    if name == "ray":
        from .ray_engine import RayEngine

        return RayEngine(
            model_path, address=address, actors=workers, batch_size=batch_size, galleries=galleries, runtime=runtime
        )
    from .local import LocalEngine

    return LocalEngine(model_path, workers=workers, batch_size=batch_size, galleries=galleries, runtime=runtime)


def scan(
    inputs: list[str],
    outs: Sequence[str | Path],
    *,
    db: str | Path | None = None,
    model: str | None = None,
    engine: str = "local",
    address: str | None = None,
    workers: int | None = None,
    batch_size: int = 4,
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
    from .outputs import output_format
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
        runtime = runtime_setting_of(classifier.model_info())
        runner = make_engine(engine, model_path, workers=workers, batch_size=batch_size, address=address,
                             galleries=galleries, runtime=runtime)  # fmt: skip
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
            info = write_outputs(store, classifier, thresholds_changed, out_paths)
        if galleries is not None:
            classifier.galleries.close()  # the pinned copy, before its folder goes
    return ScanSummary(info=info, new=progress.new, done_before=done, seconds=seconds, outputs=out_paths, db=db_path)


def write_outputs(store, classifier, thresholds_changed: bool, out_paths: list[Path]):
    """Every output file from the store (JSONL nested, CSV and Parquet flat); the survey."""
    from .outputs import output_format, output_rows, relabeller, survey, write_rows

    relabel = relabeller(classifier, thresholds_changed)
    info = survey(store.records(), classifier.labels, relabel)
    for out in out_paths:
        nested = output_format(out) == "jsonl"
        write_rows(out, output_rows(store.records(), info, relabel, nested), info)
    return info


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
