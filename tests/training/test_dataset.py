"""The wildtrade-v1 dataset definitions: reproducible, leak-free, verified against the manifest."""

import shutil
from collections import Counter

import pytest

from training import data

pytestmark = pytest.mark.slow


def test_committed_splits_pass_every_check(shared_data):
    """SHA-256 of every file against the manifest, no near-duplicate across splits, class minimums."""
    assert data.check() == []


def test_build_is_byte_identical(tmp_path, shared_data):
    for name in ("mapping.csv", "curation.csv"):
        shutil.copy(data.DATASET_DIR / name, tmp_path / name)
    data.build(tmp_path, progress=False)
    for name in ("splits.csv", "excluded.csv"):
        assert (tmp_path / name).read_bytes() == (data.DATASET_DIR / name).read_bytes(), name


def test_check_catches_leakage_and_tampering(tmp_path, shared_data):
    for name in ("mapping.csv", "curation.csv", "splits.csv", "excluded.csv"):
        shutil.copy(data.DATASET_DIR / name, tmp_path / name)
    rows = data.read_csv(tmp_path / "splits.csv")
    # plant a near-duplicate of a test photo in train, and a wrong hash
    test_row = next(r for r in rows if r["split"] == "test")
    rows.append({**test_row, "split": "train", "group": "999999", "path": rows[0]["path"], "sha256": rows[0]["sha256"]})
    rows[1]["sha256"] = "0" * 64
    data._write_csv(tmp_path / "splits.csv", data.SPLIT_FIELDS, rows)
    problems = "\n".join(data.check(tmp_path))
    assert "near-duplicates across splits" in problems
    assert "sha256 differs from the manifest" in problems


def test_near_duplicate_grouping_finds_reencoded_copies(photo):
    from io import BytesIO

    from PIL import Image

    from vision.hashing import pdq_hash

    img = Image.open(photo("ceramic_lookalike")).convert("RGB")
    buf = BytesIO()
    img.resize((img.width // 2, img.height // 2)).save(buf, "JPEG", quality=40)
    other = Image.open(photo("snake_live")).convert("RGB")
    hashes = [pdq_hash(img)[0], pdq_hash(Image.open(buf).convert("RGB"))[0], pdq_hash(other)[0]]
    pairs = data.near_duplicate_pairs(hashes)
    assert pairs == [(0, 1)]
    assert data.group_ids(3, pairs) == [0, 0, 2]


def test_split_proportions_and_exclusions():
    examples = data.load_split()
    counts = Counter(ex.split for ex in examples)
    total = sum(counts.values())
    assert abs(counts["train"] / total - 0.70) < 0.02
    assert abs(counts["test"] / total - 0.15) < 0.02
    excluded = {r["sha256"]: r["reason"] for r in data.read_csv(data.DATASET_DIR / "excluded.csv")}
    assert sum(r == "painted_miniature" for r in excluded.values()) > 100
    assert not excluded.keys() & {ex.sha256 for ex in examples}
    assert set(data.classes()) == {ex.cls for ex in examples}


def test_stats_table_matches_split_file():
    table = data.stats_table()
    examples = data.load_split()
    ivory = Counter(ex.split for ex in examples if ex.cls == "ivory")
    assert (
        f"| ivory | wildlife | {ivory['train']} | {ivory['val']} | {ivory['test']} | {sum(ivory.values())} |" in table
    )
    assert f"| {len(examples)} |" in table.splitlines()[-1]


def test_card_shows_the_numbers_data_stats_prints():
    card = (data.DATASET_DIR / "CARD.md").read_text()
    assert data.stats_table() in card
    excluded = data.read_csv(data.DATASET_DIR / "excluded.csv")
    assert f"Not used ({len(excluded)} photos" in card
