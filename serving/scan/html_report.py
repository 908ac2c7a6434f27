"""``wildscan report RESULTS --html report.html``: one offline page for an analyst.

The flagged ads first, then the "possible" ones (check by eye), grouped so that one
picture re-posted under several ads is one group (a PDQ cluster) and the rest by seller;
each with its thumbnail, category, score, what decided (the model or a reference gallery),
URL, title, price and seller. Then counts per category, platform and day, and the files
that failed. One self-contained file: thumbnails are embedded, nothing is fetched, every
text from the crawl is escaped and only http(s) URLs become links.
"""

from __future__ import annotations

import base64
import html
import io
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from vision.errors import ImageError
from vision.preprocess import DEFAULT_MAX_BYTES, load_image
from vision.records import utc_now

from .report import Report, as_bool, as_int, build_report, category_text

THUMB_SIDE = 160
DAY_COLUMNS = ("posted_at", "captured_at", "date", "created_at")  # the ad's own date, when the crawl has one
STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 1.5rem; color: #1d2733; background: #f5f7fa; }
h1 { margin: 0 0 .3rem; } h2 { margin-top: 2rem; } .muted { color: #5b6775; }
.totals { display: flex; gap: 1rem; flex-wrap: wrap; } .totals div { background: #fff; padding: .6rem 1rem;
  border: 1px solid #d7dde5; border-radius: 8px; } .totals b { display: block; font-size: 1.4rem; }
.group { background: #fff; border: 1px solid #d7dde5; border-radius: 10px; margin: 1rem 0; padding: .6rem 1rem; }
.group h3 { margin: .2rem 0 .6rem; font-size: 1rem; }
.item { display: grid; grid-template-columns: 170px 1fr; gap: .8rem; padding: .5rem 0; border-top: 1px solid #eef1f5; }
.item img { max-width: 160px; max-height: 160px; border-radius: 6px; background: #e9edf2; }
.flagged .kind { color: #b3261e; } .possible .kind { color: #8a5a00; } .kind { font-weight: 700; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .1rem .8rem; margin: .3rem 0; font-size: .9rem; }
dt { color: #5b6775; } dd { margin: 0; word-break: break-all; }
table { border-collapse: collapse; background: #fff; margin: .5rem 1.5rem .5rem 0; display: inline-table;
  vertical-align: top; } td, th { border: 1px solid #d7dde5; padding: .25rem .6rem; text-align: left; }
td.n { text-align: right; }
"""


@dataclass
class Group:
    """Ads to look at together: one near-duplicate cluster, or one seller's other ads."""

    title: str
    rows: list[dict] = field(default_factory=list)

    @property
    def flagged(self) -> int:
        return sum(as_bool(r.get("flagged")) for r in self.rows)

    def rank(self) -> tuple:
        best = max((float(r.get("score") or 0) for r in self.rows), default=0.0)
        return (-self.flagged, -len(self.rows), -best, self.title)


def write_html_report(rows: Iterable[dict], out: Path, *, source: str, max_items: int = 300) -> Path:
    """Write the report of result ``rows`` (from ``source``, a file name) to ``out``."""
    rows = list(rows)
    report = build_report(rows)
    groups = to_look_at(rows)
    shown = 0
    body: list[str] = []
    for group in groups:
        if shown >= max_items:
            break
        items = group.rows[: max_items - shown]
        shown += len(items)
        body.append(_group_html(group, items))
    waiting = sum(len(g.rows) for g in groups)
    if waiting > shown:
        body.append(f'<p class="muted">{waiting - shown} more ads to look at are not shown (limit {max_items}).</p>')
    page = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; '
        "style-src 'unsafe-inline'\">",
        f"<title>wildscan report: {_e(source)}</title><style>{STYLE}</style></head><body>",
        "<h1>wildscan report</h1>",
        f'<p class="muted">{_e(source)} · written {_e(utc_now())} · {_models(rows)}</p>',
        _totals(report),
        "<h2>Ads to look at first</h2>",
        '<p class="muted">Flagged ads (likely a protected product) first, then possible matches below the alert '
        "threshold. A pointer for officers, not a legal determination: verify species and permits against the "
        "official CITES and EU lists.</p>",
        *(body or ['<p class="muted">Nothing flagged and no possible matches.</p>']),
        "<h2>Counts</h2>",
        _counts_html(report, rows),
        "<h2>Files that could not be checked</h2>",
        _failures_html(rows),
        "</body></html>",
    ]
    out.write_text("\n".join(page), encoding="utf-8")
    return out


def to_look_at(rows: list[dict]) -> list[Group]:
    """Flagged and possible rows in groups: a near-duplicate cluster (2+ photos) is one group,
    the others are grouped by seller; groups with more flags first."""
    groups: dict[str, Group] = {}
    for row in rows:
        if not (as_bool(row.get("flagged")) or row.get("possible")) or row.get("error_reason"):
            continue
        cluster, size = as_int(row.get("cluster_id")), as_int(row.get("cluster_size")) or 1
        if cluster is not None and size > 1:
            key, title = f"cluster {cluster}", f"Same picture in {size} ads (near-duplicate group {cluster})"
        else:
            seller = row.get("seller") or row.get("meta_seller")
            key, title = f"seller {seller or ''}", f"Seller {seller}" if seller else "Seller unknown"
        groups.setdefault(key, Group(title)).rows.append(row)
    for group in groups.values():
        group.rows.sort(key=lambda r: (not as_bool(r.get("flagged")), -float(r.get("score") or 0)))
    return sorted(groups.values(), key=Group.rank)


def _group_html(group: Group, rows: list[dict]) -> str:
    sellers = sorted({str(r["seller"]) for r in group.rows if r.get("seller") not in (None, "")})
    extra = f" · sellers: {_e(', '.join(sellers))}" if len(sellers) > 1 else ""
    head = f"<h3>{_e(group.title)} · {group.flagged} flagged of {len(group.rows)}{extra}</h3>"
    return f'<section class="group">{head}{"".join(_item_html(r) for r in rows)}</section>'


def _item_html(row: dict) -> str:
    flagged = as_bool(row.get("flagged"))
    label = row.get("label") if flagged else row.get("possible") or row.get("label")
    kind = "Flagged" if flagged else "Possible match: check by eye"
    thumb = _thumbnail(row.get("path"))
    img = f'<img src="{thumb}" alt="photo {_e(row.get("sha256") or "")[:12]}">' if thumb else "<div>no photo</div>"
    facts = [
        ("Category", f"{_name(label)} ({float(row.get('score') or 0) * 100:.1f} %)" if flagged else _name(label)),
        ("Decided by", _decided_by(row)),
        ("Ad", _link(row.get("url"))),
        ("Title", _e(row.get("title") or "")),
        ("Price", _e(row.get("price") if row.get("price") not in (None, "") else "")),
        ("Seller", _e(row.get("seller") or "")),
        ("Platform", _e(row.get("platform") or "")),
        ("File", _e(row.get("path") or row.get("item_id") or "")),
        ("SHA-256", _e(row.get("sha256") or "")),
    ]
    dl = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts if v)
    css = "flagged" if flagged else "possible"
    return f'<div class="item {css}">{img}<div><span class="kind">{kind}</span><dl>{dl}</dl></div></div>'


def _decided_by(row: dict) -> str:
    if row.get("matched_by") != "reference":
        return "the model"
    similarity = row.get("gallery_similarity")
    sim = f", similarity {float(similarity):.3f}" if similarity not in (None, "") else ""
    return _e(f"reference photos: {row.get('gallery_category')} gallery, version {row.get('gallery_version')}{sim}")


def _totals(report: Report) -> str:
    cells = [
        ("records", report.total),
        ("flagged", report.flagged),
        ("possible matches", sum(report.possible.values())),
        ("failures", sum(report.failures.values())),
    ]
    return '<div class="totals">' + "".join(f"<div><b>{n}</b>{name}</div>" for name, n in cells) + "</div>"


def _counts_html(report: Report, rows: list[dict]) -> str:
    by_day: Counter = Counter()
    day_column = next((c for c in DAY_COLUMNS if any(r.get(c) for r in rows)), "scanned_at")
    for row in rows:
        if as_bool(row.get("flagged")):
            by_day[str(row.get(day_column) or "")[:10] or "(unknown)"] += 1
    platforms: Counter = Counter({name: sum(c.values()) for name, c in report.by_platform.items()})
    return "".join(
        [
            _table("Flagged by category", [(_name(k), n) for k, n in report.by_category.most_common()]),
            _table("Flagged by platform", [(_e(k), n) for k, n in platforms.most_common()])
            if report.has_platform
            else "",
            _table(f"Flagged by day ({day_column})", [(_e(k), n) for k, n in sorted(by_day.items())]),
            _table("Possible matches by category", [(_name(k), n) for k, n in report.possible.most_common()]),
        ]
    )


def _failures_html(rows: list[dict]) -> str:
    failed = [r for r in rows if r.get("error_reason")]
    if not failed:
        return '<p class="muted">None.</p>'
    lines = "".join(
        f"<tr><td>{_e(r.get('path') or r.get('item_id') or '')}</td><td>{_e(r['error_reason'])}</td>"
        f"<td>{_e(r.get('error_message') or '')}</td></tr>"
        for r in failed
    )
    return f'<table class="failures"><tr><th>file</th><th>reason</th><th>message</th></tr>{lines}</table>'


def _table(title: str, pairs: list[tuple]) -> str:
    """A two-column table; the names in ``pairs`` are HTML already (escaped by the caller)."""
    body = "".join(f'<tr><td>{k}</td><td class="n">{n}</td></tr>' for k, n in pairs) or (
        '<tr><td colspan="2" class="muted">none</td></tr>'
    )
    return f"<table><caption>{_e(title)}</caption>{body}</table>"


def _models(rows: list[dict]) -> str:
    seen: dict[tuple, int] = defaultdict(int)
    for r in rows:
        if r.get("model_name"):
            runtime = " ".join(str(r[k]) for k in ("model_runtime", "model_precision") if r.get(k))
            seen[(r["model_name"], r.get("model_version"), str(r.get("model_sha256") or "")[:16], runtime)] += 1
    return " · ".join(_e(f"model {n} {v} (SHA-256 {s}…{', ' + rt if rt else ''})") for n, v, s, rt in seen) or (
        "no model named"
    )


def _thumbnail(path) -> str:
    """A small JPEG of the photo at ``path`` as a data URI; ``""`` when it cannot be read."""
    if not path:
        return ""
    try:
        file = Path(str(path))
        if not file.is_file() or file.stat().st_size > DEFAULT_MAX_BYTES:  # no device, no huge file
            return ""
        image = load_image(file.read_bytes()).image
    except (OSError, ImageError):
        return ""
    image.thumbnail((THUMB_SIDE, THUMB_SIDE))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=75)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _link(url) -> str:
    if not url:
        return ""
    text = _e(url)
    return (
        f'<a href="{text}" rel="noreferrer noopener">{text}</a>'
        if str(url).startswith(("https://", "http://"))
        else text
    )


def _name(label) -> str:
    return _e(category_text(str(label))) if label else ""


def _e(value) -> str:
    return html.escape(str(value), quote=True)
