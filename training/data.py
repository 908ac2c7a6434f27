"""The wildtrade dataset: fine labels -> classes, curation, leak-free splits, checks.

Everything here is deterministic: ``build`` rewrites byte-identical files from the shared
photos and the hand-written definitions in ``datasets/wildtrade-v1/`` (``mapping.csv``:
fine label -> class; ``curation.csv``: photos removed after looking at them). No torch.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vision.hashing import PDQ_MATCH_DISTANCE, pdq_hash, sha256_file
from vision.preprocess import load_image
from vision.settings import REPO, photos_dir

from .errors import TrainingError

DATASET_DIR = REPO / "datasets" / "wildtrade-v1"
SPLITS = ("train", "val", "test")
FRACTIONS = (0.70, 0.15, 0.15)
SEED = 20171
MIN_PER_SPLIT = {"train": 10, "val": 3, "test": 3}
SPLIT_FIELDS = ["sha256", "path", "fine_label", "class", "split", "group", "pdq", "source"]


def repo_path(p: str | Path) -> Path:
    """``p``, relative to the repository unless absolute (run and cache folders in configs)."""
    p = Path(p)
    return p if p.is_absolute() else REPO / p


def shared_data_dir() -> Path:
    """The shared photos: ``$WILDSCAN_PHOTOS`` (or ``$WILDSCAN_DATA``), else ``../shared/data``."""
    return photos_dir()


@dataclass(frozen=True)
class Example:
    sha256: str
    path: str  # relative to shared_data_dir()
    fine_label: str
    cls: str
    split: str
    group: int
    pdq: str
    source: str

    def file(self, root: Path | None = None) -> Path:
        return (root or shared_data_dir()) / self.path


# --- reading the definitions ---------------------------------------------------------------


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def load_manifest(root: Path | None = None) -> list[dict]:
    return read_csv((root or shared_data_dir()) / "manifest.csv")


def load_mapping(dataset_dir: Path = DATASET_DIR) -> dict[str, tuple[str, str]]:
    """fine label -> (class or "" for excluded, note)."""
    return {r["fine_label"]: (r["class"], r["note"]) for r in read_csv(dataset_dir / "mapping.csv")}


def load_curation(dataset_dir: Path = DATASET_DIR) -> dict[str, tuple[str, str]]:
    """sha256 -> (reason, new class or ""): photos removed, or moved to another class, by review."""
    path = dataset_dir / "curation.csv"
    return {r["sha256"]: (r["reason"], r.get("new_class", "")) for r in read_csv(path)} if path.exists() else {}


def classes(dataset_dir: Path = DATASET_DIR) -> list[str]:
    """The model's classes in a fixed order: as first listed in mapping.csv."""
    seen: dict[str, None] = {}
    for cls, _note in load_mapping(dataset_dir).values():
        if cls:
            seen.setdefault(cls, None)
    return list(seen)


def load_split(split: str | None = None, dataset_dir: Path = DATASET_DIR) -> list[Example]:
    """Examples of one split (or all) from ``splits.csv``."""
    rows = read_csv(dataset_dir / "splits.csv")
    return [
        Example(r["sha256"], r["path"], r["fine_label"], r["class"], r["split"], int(r["group"]), r["pdq"], r["source"])
        for r in rows
        if split is None or r["split"] == split
    ]


def load_feedback(folder: str | Path, split: str = "feedback") -> list[Example]:
    """Photos that officers labelled, from a ``wildscan feedback export`` folder: one example
    per row with a photo (``label``: the category the officer confirmed or gave), grouped by
    case (photos of one case stay together), ``path`` absolute. Rows without a photo (the
    server kept no evidence copy) are skipped. For extra training data or a dev set."""
    folder = Path(folder)
    manifest = folder / "feedback.csv"
    if not manifest.exists():
        raise TrainingError(f"{manifest} not found: write it with 'wildscan feedback export {folder}'", "bad_data")
    rows = [r for r in read_csv(manifest) if r["path"]]
    cases: dict[str, int] = {}
    out = []
    for r in rows:
        group = cases.setdefault(r["case_id"] or r["result_id"], len(cases))
        path = (folder / r["path"]).resolve()
        if not path.is_relative_to(folder.resolve()):
            raise TrainingError(f"{manifest}: path {r['path']!r} leaves the folder", "bad_data")
        out.append(
            Example(r["sha256"], str(path), f"feedback_{r['verdict']}", r["label"], split, group, r["pdq"], "feedback")
        )
    return out


# --- near-duplicate groups -----------------------------------------------------------------


def pdq_of_bytes(raw: bytes) -> str:
    """PDQ of a photo at the reference's 512 px (dataset grouping, not speed-critical)."""
    return pdq_hash(load_image(raw).image, max_side=512)[0]


def pdq_of_file(path: Path) -> str:
    return pdq_of_bytes(path.read_bytes())


def near_duplicate_pairs(hashes: list[str], max_distance: int = PDQ_MATCH_DISTANCE) -> list[tuple[int, int]]:
    """All index pairs ``i < j`` whose PDQ Hamming distance is at most ``max_distance``."""
    words = np.array([np.frombuffer(bytes.fromhex(h), dtype=">u8") for h in hashes], dtype=np.uint64)
    pairs: list[tuple[int, int]] = []
    block = 512
    for start in range(0, len(words), block):
        chunk = words[start : start + block]
        dist = np.bitwise_count(chunk[:, None, :] ^ words[None, :, :]).sum(axis=-1)
        ii, jj = np.nonzero(dist <= max_distance)
        ii += start
        keep = jj > ii
        pairs.extend(zip(ii[keep].tolist(), jj[keep].tolist()))
    return pairs


def near_copies(hashes: list[str], reference: list[str], max_distance: int = PDQ_MATCH_DISTANCE) -> set[int]:
    """Indices of ``hashes`` (PDQ) within ``max_distance`` of a ``reference`` hash: a
    re-encoded or resized copy of a held-out photo."""
    n = len(reference)
    return {j - n for i, j in near_duplicate_pairs(list(reference) + hashes, max_distance) if i < n <= j}


def group_ids(n: int, pairs: list[tuple[int, int]]) -> list[int]:
    """Connected components (union-find): a group id per item, the smallest member index."""
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return [find(i) for i in range(n)]


# --- splitting -------------------------------------------------------------------------------


def _stable_key(*parts: object) -> str:
    return hashlib.sha256(("|".join(map(str, parts))).encode()).hexdigest()


def assign_splits(items: list[tuple[str, int, str]], seed: int = SEED) -> dict[int, str]:
    """Split by group: ``items`` are ``(class, group, sha256)``; returns group -> split.

    Each group goes wholly to one split, chosen by a seeded hash of its first member's
    SHA-256 against ``FRACTIONS``. The choice depends on nothing else, so removing a
    photo (curation) never moves any other photo between splits; per-class proportions
    follow from the hash's uniformity and ``check`` enforces ``MIN_PER_SPLIT``.
    """
    first: dict[int, str] = {}
    for _cls, group, sha in items:
        first[group] = min(sha, first.get(group, sha))
    bounds = np.cumsum(FRACTIONS)
    out = {}
    for group, sha in first.items():
        u = int(_stable_key(seed, sha), 16) / 16**64
        out[group] = SPLITS[min(int(np.searchsorted(bounds, u, side="right")), len(SPLITS) - 1)]
    return out


# --- build / check / stats -------------------------------------------------------------------


def build(dataset_dir: Path = DATASET_DIR, root: Path | None = None, progress: bool = True) -> dict:
    """Write ``splits.csv`` and ``excluded.csv``; returns counts. Deterministic."""
    root = root or shared_data_dir()
    manifest = load_manifest(root)
    mapping = load_mapping(dataset_dir)
    curation = load_curation(dataset_dir)
    kept, excluded = [], []
    for row in manifest:
        fine = row["label"]
        if fine not in mapping:
            raise TrainingError(
                f"fine label {fine!r} has no row in {dataset_dir / 'mapping.csv'}: map it first", "bad_data"
            )
        cls, note = mapping[fine]
        if not cls:
            excluded.append((row, note.removeprefix("EXCLUDE: ") or "excluded label"))
        elif row["sha256"] in curation:
            reason, new_class = curation[row["sha256"]]
            if new_class:
                kept.append((row, new_class))
            else:
                excluded.append((row, reason))
        else:
            kept.append((row, cls))
    hashes = _pdq_hashes([root / r["path"] for r, _ in kept], progress)
    pairs = near_duplicate_pairs(hashes)
    # identical originals are one photo, whatever PDQ says
    by_orig: dict[str, int] = {}
    for i, (row, _cls) in enumerate(kept):
        first = by_orig.setdefault(row["orig_sha256"], i)
        if first != i:
            pairs.append((first, i))
    groups = group_ids(len(kept), pairs)
    split_of = assign_splits([(cls, g, r["sha256"]) for (r, cls), g in zip(kept, groups)])
    rows = [
        {
            "sha256": r["sha256"],
            "path": r["path"],
            "fine_label": r["label"],
            "class": cls,
            "split": split_of[g],
            "group": g,
            "pdq": h,
            "source": r["source"],
        }
        for (r, cls), g, h in zip(kept, groups, hashes)
    ]
    _write_csv(dataset_dir / "splits.csv", SPLIT_FIELDS, rows)
    _write_csv(
        dataset_dir / "excluded.csv",
        ["sha256", "path", "fine_label", "reason"],
        [{"sha256": r["sha256"], "path": r["path"], "fine_label": r["label"], "reason": why} for r, why in excluded],
    )
    return {
        "kept": len(rows),
        "excluded": len(excluded),
        "groups": len(set(groups)),
        "near_duplicate_pairs": len(pairs),
    }


def _pdq_hashes(paths: list[Path], progress: bool) -> list[str]:
    from tqdm import tqdm

    return [pdq_of_file(p) for p in tqdm(paths, desc="PDQ", unit="img", disable=not progress, mininterval=2)]


def _write_csv(path: Path, fields: list[str], rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(buf.getvalue(), encoding="utf-8")
    tmp.replace(path)


def check(dataset_dir: Path = DATASET_DIR, root: Path | None = None, recompute_pdq: bool = False) -> list[str]:
    """Verify the split files; returns a list of problems (empty when all is well).

    Checks every file's SHA-256 against the manifest, that no PDQ near-duplicate pair
    crosses splits, that groups do not straddle splits, that excluded photos are not
    used, and that every class meets ``MIN_PER_SPLIT``. With ``recompute_pdq`` the
    stored PDQ hashes are recomputed from the files too.
    """
    root = root or shared_data_dir()
    problems: list[str] = []
    examples = load_split(None, dataset_dir)
    manifest = {r["path"]: r for r in load_manifest(root)}
    excluded = {r["sha256"] for r in read_csv(dataset_dir / "excluded.csv")}
    for ex in examples:
        row = manifest.get(ex.path)
        if row is None:
            problems.append(f"{ex.path}: not in the manifest")
            continue
        if row["sha256"] != ex.sha256:
            problems.append(f"{ex.path}: splits.csv sha256 differs from the manifest")
        if not ex.file(root).is_file():
            problems.append(f"{ex.path}: file missing")
        elif sha256_file(ex.file(root)) != row["sha256"]:
            problems.append(f"{ex.path}: file's SHA-256 does not match the manifest")
        elif recompute_pdq and pdq_of_file(ex.file(root)) != ex.pdq:
            problems.append(f"{ex.path}: stored PDQ differs from the file's")
        if ex.sha256 in excluded:
            problems.append(f"{ex.path}: listed as excluded but used in {ex.split}")
    group_splits: dict[int, set[str]] = defaultdict(set)
    for ex in examples:
        group_splits[ex.group].add(ex.split)
    problems += [f"group {g} straddles splits {sorted(s)}" for g, s in group_splits.items() if len(s) > 1]
    for i, j in near_duplicate_pairs([ex.pdq for ex in examples]):
        if examples[i].split != examples[j].split:
            problems.append(
                f"near-duplicates across splits: {examples[i].path} ({examples[i].split}) ~ "
                f"{examples[j].path} ({examples[j].split})"
            )
    counts = Counter((ex.cls, ex.split) for ex in examples)
    for cls in classes(dataset_dir):
        for split, minimum in MIN_PER_SPLIT.items():
            if counts[(cls, split)] < minimum:
                problems.append(f"class {cls}: {counts[(cls, split)]} photos in {split}, minimum {minimum}")
    return problems


def stats_table(dataset_dir: Path = DATASET_DIR) -> str:
    """Markdown table: photos per class and split, with the class's group."""
    from vision.taxonomy import get_category

    examples = load_split(None, dataset_dir)
    counts = Counter((ex.cls, ex.split) for ex in examples)
    lines = ["| class | group | train | val | test | total |", "|---|---|---:|---:|---:|---:|"]
    totals = Counter()
    for cls in classes(dataset_dir):
        row = [counts[(cls, s)] for s in SPLITS]
        totals.update(dict(zip(SPLITS, row)))
        lines.append(f"| {cls} | {get_category(cls).group} | " + " | ".join(map(str, row)) + f" | {sum(row)} |")
    lines.append("| **all** | | " + " | ".join(str(totals[s]) for s in SPLITS) + f" | {sum(totals.values())} |")
    return "\n".join(lines)


def contact_sheet(examples: list[Example], out: Path, columns: int = 10, tile: int = 128, limit: int = 100) -> Path:
    """Save a PNG grid of up to ``limit`` photos (for looking at a class)."""
    from PIL import Image, ImageDraw

    chosen = examples[:limit]
    rows = max(1, -(-len(chosen) // columns))
    sheet = Image.new("RGB", (columns * tile, rows * tile), "white")
    draw = ImageDraw.Draw(sheet)
    for k, ex in enumerate(chosen):
        img = load_image(ex.file().read_bytes()).image
        img.thumbnail((tile - 4, tile - 4))
        x, y = (k % columns) * tile, (k // columns) * tile
        sheet.paste(img, (x + 2, y + 2))
        draw.text((x + 4, y + 4), str(k), fill="yellow")
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out
