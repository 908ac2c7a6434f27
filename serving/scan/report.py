"""``wildscan report``: what a results file says, for an analyst deciding where to look.

Flagged items by category, by seller and by platform, and the largest clusters of
near-identical photos (the same picture re-posted under several ads), read from the
JSONL, CSV or Parquet file a scan wrote.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from vision.taxonomy import label_name

_TRUE = {"true", "1", "yes"}


@dataclass
class Cluster:
    """One group of near-identical photos in a results file."""

    cluster_id: int
    size: int = 0
    flagged: int = 0
    labels: Counter = field(default_factory=Counter)
    sellers: set = field(default_factory=set)
    platforms: set = field(default_factory=set)
    examples: list[str] = field(default_factory=list)


@dataclass
class Report:
    """Counts over the rows of a results file."""

    total: int = 0
    flagged: int = 0
    possible: Counter = field(default_factory=Counter)  # "possible match" rows per category
    failures: Counter = field(default_factory=Counter)
    by_category: Counter = field(default_factory=Counter)
    by_gallery: Counter = field(default_factory=Counter)  # flags decided by a reference gallery, per gallery version
    by_seller: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    by_platform: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    has_seller: bool = False
    has_platform: bool = False
    clusters: dict[int, Cluster] = field(default_factory=dict)

    def largest_clusters(self, n: int) -> list[Cluster]:
        """The ``n`` biggest clusters of two or more records, biggest first."""
        groups = [c for c in self.clusters.values() if c.size > 1]
        return sorted(groups, key=lambda c: (-c.size, -c.flagged, c.cluster_id))[:n]


def build_report(rows: Iterable[dict]) -> Report:
    """Aggregate result rows (as :func:`serving.scan.outputs.read_rows` yields them)."""
    report = Report()
    for row in rows:
        report.total += 1
        report.has_seller |= "seller" in row
        report.has_platform |= "platform" in row
        if row.get("error_reason"):
            report.failures[row["error_reason"]] += 1
        flagged = as_bool(row.get("flagged"))
        label = row.get("label") or ""
        if flagged:
            report.flagged += 1
            report.by_category[label] += 1
            report.by_seller[_text(row.get("seller"))][label] += 1
            report.by_platform[_text(row.get("platform"))][label] += 1
            if row.get("matched_by") == "reference":
                report.by_gallery[_gallery(row)] += 1
        if not flagged and row.get("possible"):
            report.possible[str(row["possible"])] += 1
        _add_to_cluster(report, row, flagged, label)
    return report


def _gallery(row: dict) -> str:
    """``CATEGORY vVERSION`` of the gallery that decided a row (scan columns or a nested record)."""
    gallery = row.get("gallery")
    nested: dict = gallery if isinstance(gallery, dict) else {}
    category = row.get("gallery_category") or nested.get("category") or row.get("label")
    version = row.get("gallery_version") or nested.get("version")
    return f"{category} v{as_int(version)}" if version not in (None, "") else str(category)


def _add_to_cluster(report: Report, row: dict, flagged: bool, label: str) -> None:
    cluster_id = as_int(row.get("cluster_id"))
    if cluster_id is None:
        return
    cluster = report.clusters.setdefault(cluster_id, Cluster(cluster_id))
    cluster.size += 1
    cluster.flagged += flagged
    cluster.labels[label] += 1
    if row.get("seller") not in (None, ""):
        cluster.sellers.add(str(row["seller"]))
    if row.get("platform") not in (None, ""):
        cluster.platforms.add(str(row["platform"]))
    if len(cluster.examples) < 3:
        cluster.examples.append(str(row.get("url") or row.get("path") or row.get("item_id")))


def format_report(report: Report, top: int = 10) -> str:
    """The report as plain text (English category names)."""
    lines = [f"{report.total} records, {report.flagged} flagged, {sum(report.failures.values())} failures"]
    if report.failures:
        lines.append("  failures: " + _counts(report.failures))
    lines.append("")
    lines.append("Flagged by category:")
    lines += [f"  {n:>6}  {category_text(label)}" for label, n in report.by_category.most_common()] or ["  (none)"]
    lines.append("")
    lines.append("Flags decided by a reference gallery (not by the model), by gallery version:")
    lines += [f"  {n:>6}  {name}" for name, n in report.by_gallery.most_common()] or ["  (none)"]
    lines.append("")
    lines.append("Possible matches below the flag threshold (check by eye), by category:")
    lines += [f"  {n:>6}  {category_text(label)}" for label, n in report.possible.most_common()] or ["  (none)"]
    for title, present, groups in (
        ("seller", report.has_seller, report.by_seller),
        ("platform", report.has_platform, report.by_platform),
    ):
        lines.append("")
        lines.append(f"Flagged by {title} (top {top}):")
        if not present:
            lines.append(f"  (the results have no '{title}' column)")
            continue
        ranked = sorted(groups.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))[:top]
        lines += [f"  {sum(c.values()):>6}  {name}: {_counts(c, category_text)}" for name, c in ranked] or ["  (none)"]
    lines.append("")
    lines.append(f"Largest near-duplicate clusters (top {top}):")
    clusters = report.largest_clusters(top)
    lines += [_cluster_line(c) for c in clusters] or ["  (no photo appears more than once)"]
    return "\n".join(lines)


def _cluster_line(c: Cluster) -> str:
    where = []
    if c.sellers:
        where.append(f"{len(c.sellers)} sellers")
    if c.platforms:
        where.append(f"{len(c.platforms)} platforms")
    labels = _counts(c.labels, category_text)
    extra = f"; {', '.join(where)}" if where else ""
    return f"  cluster {c.cluster_id}: {c.size} photos, {c.flagged} flagged ({labels}){extra}; e.g. {c.examples[0]}"


def _counts(counter: Counter, name=str) -> str:
    return ", ".join(f"{name(k)} {v}" for k, v in counter.most_common())


def category_text(label: str) -> str:
    """``Name [label]`` in English; the label alone when the taxonomy lacks it; ``(failed)`` for none."""
    if not label:
        return "(failed)"
    try:
        return f"{label_name(label)} [{label}]"
    except KeyError:
        return label


def _text(value) -> str:
    return "(unknown)" if value in (None, "") else str(value)


def as_bool(value) -> bool:
    """A flag from JSON/Parquet (bool) or CSV (text)."""
    if isinstance(value, str):
        return value.strip().lower() in _TRUE
    return bool(value)


def as_int(value) -> int | None:
    """An integer from JSON/Parquet or CSV text; ``None`` when empty."""
    if value in (None, ""):
        return None
    return int(float(value))
