"""Bulk scan: one record per path, failures with reasons, duplicates scored once, metadata
carried through, a real SIGKILL + resume, near-duplicate clusters and the report."""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from serving.scan import local
from serving.scan.api import scan
from serving.scan.clusters import cluster_labels
from serving.scan.inputs import InputError, iter_items
from serving.scan.outputs import read_rows
from serving.scan.store import ScanStore
from serving.scan.work import Progress
from vision.cli import main
from vision.hashing import sha256_file
from vision.runtime import Classifier

PHOTO_LABELS = ["ivory_carving", "reef_coral_live", "ceramic_lookalike", "snake_live", "product_photo", "bird_wild"]
METADATA = ["url", "title", "price", "seller", "platform", "captured_at"]


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture()
def messy_folder(tmp_path, photo) -> Path:
    """Real photos (one in a subfolder) plus corrupt, truncated, zero-byte, non-image and
    duplicate files, and a text file that is not an image by name (not scanned)."""
    folder = tmp_path / "crawl"
    (folder / "sub").mkdir(parents=True)
    for i, label in enumerate(PHOTO_LABELS):
        shutil.copy(photo(label), folder / f"{i:02d}_{label}.jpg")
    good = (folder / "00_ivory_carving.jpg").read_bytes()
    shutil.copy(folder / "00_ivory_carving.jpg", folder / "sub" / "same_bytes.jpg")
    (folder / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (folder / "corrupt.jpg").write_bytes(good[:200] + bytes(600) + good[800:])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.jpg").write_text("this is a listing description, not a photo")
    (folder / "notes.txt").write_text("not scanned: not an image suffix")
    return folder


def scanned_paths(folder: Path) -> set[str]:
    return {str(p.resolve()) for p in folder.rglob("*.jpg")}


def jsonl(path: Path) -> list[dict]:
    """A scan's JSONL as flat rows (the nested records flattened as ``wildscan report`` reads them)."""
    return list(read_rows(path))


def without_time(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "scanned_at"} for row in rows]


def db_rows(db: Path, query: str, *args) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(query, args).fetchall()
    finally:
        conn.close()


# --- a messy folder ------------------------------------------------------------------------


def test_folder_scan_gives_one_record_per_path_with_reasons(messy_folder, tiny_bundle, tmp_path, capsys):
    out = tmp_path / "results.jsonl"
    assert main(["scan", str(messy_folder), "--out", str(out), "--model", str(tiny_bundle), "--quiet"]) == 0
    rows = jsonl(out)

    assert {r["path"] for r in rows} == scanned_paths(messy_folder)
    assert len(rows) == len(scanned_paths(messy_folder)) == 11
    by_name = {Path(r["path"]).name: r for r in rows}
    assert by_name["empty.jpg"]["error_reason"] == "empty"
    assert by_name["text.jpg"]["error_reason"] == "not_an_image"
    assert by_name["truncated.jpg"]["error_reason"] == "truncated"
    assert by_name["corrupt.jpg"]["error_reason"] == "corrupt"
    for name in ("empty.jpg", "text.jpg", "truncated.jpg", "corrupt.jpg"):
        assert by_name[name]["label"] is None and by_name[name]["error_message"]

    printed = capsys.readouterr().out
    assert "11 items: 11 scanned now" in printed and "failures: 4" in printed


def test_scan_records_match_the_classifier(messy_folder, tiny_bundle, tmp_path):
    summary = scan([str(messy_folder)], [tmp_path / "r.jsonl"], model=str(tiny_bundle), workers=2, batch_size=4)
    rows = {r["path"]: r for r in jsonl(tmp_path / "r.jsonl")}
    classifier = Classifier.from_path(tiny_bundle)
    photos = sorted(messy_folder.glob("0*.jpg"))
    for expected in classifier.predict_files(photos):
        row = rows[str(expected.path)]
        assert row["sha256"] == expected.sha256 and row["pdq"] == expected.pdq
        assert (row["label"], row["flagged"]) == (expected.label, expected.flagged)
        assert row["score"] == pytest.approx(expected.score, abs=1e-6)
        assert {k: row[f"score_{k}"] for k in classifier.labels} == pytest.approx(expected.scores, abs=1e-6)
        assert row["model_sha256"] == sha256_file(tiny_bundle)
    assert summary.new == 11 and summary.info.failures.total() == 4


def test_identical_bytes_are_scored_once_and_linked_to_every_path(messy_folder, tiny_bundle, tmp_path):
    db = tmp_path / "scan.db"
    scan([str(messy_folder)], [tmp_path / "r.jsonl"], db=db, model=str(tiny_bundle), workers=2, batch_size=4)
    rows = {Path(r["path"]).name: r for r in jsonl(tmp_path / "r.jsonl")}
    original, copy = rows["00_ivory_carving.jpg"], rows["same_bytes.jpg"]
    assert original["sha256"] == copy["sha256"]
    assert without_time([original])[0] | {"path": None, "item_id": None} == without_time([copy])[0] | {
        "path": None,
        "item_id": None,
    }
    digest = original["sha256"]
    assert db_rows(db, "SELECT COUNT(*) FROM results WHERE sha256 = ?", digest) == [(1,)]
    linked = db_rows(db, "SELECT path FROM items WHERE sha256 = ? ORDER BY path", digest)
    assert [Path(p).name for (p,) in linked] == ["00_ivory_carving.jpg", "same_bytes.jpg"]
    # every path is an item; every item with bytes links to exactly one result
    assert db_rows(db, "SELECT COUNT(*) FROM items") == [(11,)]
    assert db_rows(
        db,
        "SELECT COUNT(*) FROM items i LEFT JOIN results r ON r.sha256 = i.sha256 "
        "WHERE i.sha256 IS NOT NULL AND r.sha256 IS NULL",
    ) == [(0,)]


def test_rerun_scans_only_new_files_and_rewrites_the_same_rows(messy_folder, tiny_bundle, tmp_path, photo):
    out = tmp_path / "r.jsonl"
    first = scan([str(messy_folder)], [out], model=str(tiny_bundle))
    before = jsonl(out)
    again = scan([str(messy_folder)], [out], model=str(tiny_bundle))
    assert (first.new, again.new, again.done_before) == (11, 0, 11)
    assert jsonl(out) == before  # same rows, same times: nothing was scored again

    shutil.copy(photo("orchid"), messy_folder / "sub" / "new.jpg")
    third = scan([str(messy_folder)], [out], model=str(tiny_bundle))
    assert (third.new, third.done_before) == (1, 11)
    assert len(jsonl(out)) == 12


def test_thresholds_apply_to_stored_scores_without_rescoring(messy_folder, tiny_bundle, tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    scan([str(messy_folder)], [out], model=str(tiny_bundle))
    default = {r["path"]: r for r in jsonl(out)}
    summary = scan([str(messy_folder)], [out], model=str(tiny_bundle), thresholds=["ivory=0.0"])
    lowered = {r["path"]: r for r in jsonl(out)}
    assert summary.new == 0
    ok = [p for p, r in lowered.items() if not r["error_reason"]]
    assert all(lowered[p]["flagged"] and lowered[p]["label"] in ("ivory", "reef_coral") for p in ok)
    assert sum(r["flagged"] for r in default.values()) < len(ok)
    assert all(lowered[p]["score_ivory"] == default[p]["score_ivory"] for p in ok)

    bad = main(["scan", str(messy_folder), "--out", str(out), "--model", str(tiny_bundle), "--threshold", "tiger=0.5"])
    assert bad == 1 and "no category 'tiger'" in capsys.readouterr().err


def test_a_new_preprocessing_on_the_same_onnx_rescores_every_photo(messy_folder, tiny_bundle, tmp_path):
    """Stored scores are keyed on what decides them: the same ONNX file with another resize
    in its bundle JSON must not reuse the old scores, as thresholds may."""
    out = tmp_path / "r.jsonl"
    first = scan([str(messy_folder)], [out], model=str(tiny_bundle))
    json_path = tiny_bundle.with_suffix(".json")
    config = json.loads(json_path.read_text())
    config["preprocess"]["interpolation"] = "linear"
    json_path.write_text(json.dumps(config))
    second = scan([str(messy_folder)], [out], model=str(tiny_bundle))
    assert first.new > 0 and (second.new, second.done_before) == (first.new, 0)
    third = scan([str(messy_folder)], [out], model=str(tiny_bundle))
    assert (third.new, third.done_before) == (0, first.new)


# --- inputs and outputs ------------------------------------------------------------------


def _ads(folder: Path) -> list[dict]:
    photos = sorted(folder.glob("0*.jpg")) + [folder / "truncated.jpg"]
    return [
        {
            "path": str(p.relative_to(folder)),
            "url": f"https://market.example/ad/{i}",
            "title": f"carving {i}",
            "price": 10.5 * (i + 1),
            "seller": f"seller{i % 2}",
            "platform": "marketA" if i < 3 else "marketB",
            "captured_at": f"2025-05-0{i + 1}T10:00:00Z",
            "label": f"crawler-label-{i}",
        }
        for i, p in enumerate(photos)
    ]


def _write_manifest(rows: list[dict], path: Path) -> Path:
    if path.suffix == ".csv":
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.mark.parametrize("manifest_format", ["csv", "jsonl", "parquet"])
@pytest.mark.parametrize("out_format", ["jsonl", "csv", "parquet"])
def test_manifest_metadata_reaches_every_output_row(messy_folder, tiny_bundle, tmp_path, manifest_format, out_format):
    ads = _ads(messy_folder)
    manifest = _write_manifest(ads, messy_folder / f"ads.{manifest_format}")
    out = tmp_path / f"results.{out_format}"
    scan([str(manifest)], [out], model=str(tiny_bundle), workers=1)
    rows = list(read_rows(out))
    assert len(rows) == len(ads)
    for ad, row in zip(ads, rows):
        assert row["item_id"].endswith(f"ads.{manifest_format}#{ads.index(ad) + 1}")
        assert row["path"] == str((messy_folder / ad["path"]).resolve())
        for key in METADATA:
            assert str(row[key]) == str(ad[key])
        assert row["meta_label"] == ad["label"]  # a manifest column named like a record field is kept, renamed
    assert rows[-1]["error_reason"] == "truncated"
    assert rows[0]["label"] and str(rows[0]["cluster_size"]) == "1"


@pytest.mark.parametrize("encoding", ["parquet-binary", "jsonl-base64", "csv-base64"])
def test_manifest_with_image_bytes(messy_folder, tiny_bundle, tmp_path, encoding):
    photos = [messy_folder / "00_ivory_carving.jpg", messy_folder / "01_reef_coral_live.jpg", messy_folder / "text.jpg"]
    raw = encoding == "parquet-binary"
    rows = [
        {"image": p.read_bytes() if raw else base64.b64encode(p.read_bytes()).decode(), "seller": f"s{i}"}
        for i, p in enumerate(photos)
    ]
    rows.append({"image": "" if not raw else b"", "seller": "s-empty"})
    suffix = encoding.split("-")[0]
    manifest = _write_manifest(rows, tmp_path / f"bytes.{suffix}")
    scan([str(manifest)], [tmp_path / "r.jsonl"], model=str(tiny_bundle), workers=1)
    out = jsonl(tmp_path / "r.jsonl")
    assert [r["seller"] for r in out] == ["s0", "s1", "s2", "s-empty"]
    assert [r["sha256"] for r in out[:2]] == [sha256_file(p) for p in photos[:2]]
    assert [r["error_reason"] for r in out] == [None, None, "not_an_image", "empty"]
    assert "image" not in out[0]


def test_path_list_and_bad_inputs(messy_folder, tiny_bundle, tmp_path, capsys):
    listing = messy_folder / "list.txt"
    listing.write_text("# crawl of 2025-05-01\n00_ivory_carving.jpg\n\nsub/same_bytes.jpg\nmissing.jpg\n")
    items = list(iter_items([listing, messy_folder / "00_ivory_carving.jpg"]))
    assert [Path(i.path).name for i in items] == [
        "00_ivory_carving.jpg",
        "same_bytes.jpg",
        "missing.jpg",
        "00_ivory_carving.jpg",
    ]
    summary = scan(
        [str(listing), str(messy_folder / "00_ivory_carving.jpg")],
        [tmp_path / "r.jsonl"],
        model=str(tiny_bundle),
        workers=1,
    )
    rows = jsonl(tmp_path / "r.jsonl")
    assert len(rows) == 3 and summary.info.total == 3  # the file reached twice is one record
    assert rows[2]["error_reason"] == "unreadable"

    with pytest.raises(InputError, match="no image column"):
        list(iter_items([_write_manifest([{"url": "x", "seller": "y"}], tmp_path / "noimg.csv")]))
    assert (
        main(["scan", str(tmp_path / "nothing.xlsx"), "--out", str(tmp_path / "x.jsonl"), "--model", str(tiny_bundle)])
        == 1
    )
    assert "input not found" in capsys.readouterr().err
    assert main(["scan", str(messy_folder), "--out", str(tmp_path / "x.xlsx"), "--model", str(tiny_bundle)]) == 1


def test_outputs_are_written_atomically(messy_folder, tiny_bundle, tmp_path):
    out = tmp_path / "r.parquet"
    out.write_text("previous results")
    scan([str(messy_folder)], [out], model=str(tiny_bundle), workers=1)
    assert len(list(read_rows(out))) == 11
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary left


# --- the real kill -------------------------------------------------------------------------


def test_sigkill_mid_scan_then_resume_equals_an_uninterrupted_scan(tmp_path, tiny_bundle, shared_data, manifest):
    folder = tmp_path / "many"
    folder.mkdir()
    for i, row in enumerate(manifest[::40][:320]):
        shutil.copy(shared_data / row["path"], folder / f"{i:03d}.jpg")
    shutil.copy(folder / "000.jpg", folder / "000_again.jpg")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    total = 322

    reference = tmp_path / "reference.jsonl"
    scan([str(folder)], [reference], db=tmp_path / "reference.db", model=str(tiny_bundle), workers=2, batch_size=8)

    out, db = tmp_path / "resumed.jsonl", tmp_path / "resumed.db"
    command = [
        sys.executable,
        "-m",
        "vision.cli",
        "scan",
        str(folder),
        "--out",
        str(out),
        "--db",
        str(db),
        "--model",
        str(tiny_bundle),
        "--workers",
        "1",
        "--batch-size",
        "8",
        "--quiet",
    ]
    proc = subprocess.Popen(command, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    committed = _wait_for_rows(db, proc, at_least=1)
    os.killpg(proc.pid, signal.SIGKILL)  # the scan and its worker processes, without warning
    proc.wait()
    at_kill = _count(db)
    assert committed >= 1 and 0 < at_kill < total, f"the kill did not land mid-scan ({at_kill} of {total})"
    assert not out.exists()

    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"{total - at_kill} scanned now, {at_kill} done before" in done.stdout

    assert without_time(jsonl(out)) == without_time(jsonl(reference))
    assert db_rows(db, "SELECT COUNT(*), COUNT(DISTINCT item_id) FROM items") == [(total, total)]
    assert db_rows(db, "SELECT COUNT(*) FROM results") == db_rows(
        db, "SELECT COUNT(DISTINCT sha256) FROM items WHERE sha256 IS NOT NULL"
    )


def test_killing_the_scan_kills_its_workers(tmp_path, tiny_bundle, shared_data, manifest):
    folder = tmp_path / "many"
    folder.mkdir()
    for i, row in enumerate(manifest[::40][:320]):
        shutil.copy(shared_data / row["path"], folder / f"{i:03d}.jpg")
    db = tmp_path / "scan.db"
    out = tmp_path / "r.jsonl"
    command = [sys.executable, "-m", "vision.cli", "scan", str(folder), "--out", str(out), "--db", str(db),
               "--model", str(tiny_bundle), "--workers", "2", "--batch-size", "4", "--quiet"]  # fmt: skip
    proc = subprocess.Popen(command, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait_for_rows(db, proc, at_least=1)
    assert _group_alive(proc.pid)
    proc.kill()  # the main process only, without warning: its workers must not live on
    proc.wait()
    deadline = time.monotonic() + 10
    while _group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _group_alive(proc.pid), "worker processes outlived the killed scan"


def test_sigterm_stops_the_scan_says_what_is_saved_and_a_rerun_finishes_it(
    tmp_path, tiny_bundle, shared_data, manifest
):
    folder = tmp_path / "many"
    folder.mkdir()
    for i, row in enumerate(manifest[::40][:320]):
        shutil.copy(shared_data / row["path"], folder / f"{i:03d}.jpg")
    db, out = tmp_path / "scan.db", tmp_path / "r.jsonl"
    command = [sys.executable, "-m", "vision.cli", "scan", str(folder), "--out", str(out), "--db", str(db),
               "--model", str(tiny_bundle), "--workers", "1", "--batch-size", "4", "--quiet"]  # fmt: skip
    proc = subprocess.Popen(command, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait_for_rows(db, proc, at_least=8)
    proc.terminate()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err.decode()
    assert f"terminated; every result so far is saved in {db}" in err.decode()
    saved = _count(db)
    assert 8 <= saved < 320 and not out.exists()
    assert subprocess.run(command, capture_output=True, timeout=300).returncode == 0
    rows = jsonl(out)
    assert len(rows) == 320 and len({r["item_id"] for r in rows}) == 320


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _count(db: Path) -> int:
    try:
        return db_rows(db, "SELECT COUNT(*) FROM items")[0][0]
    except sqlite3.OperationalError:  # not created yet
        return 0


def _wait_for_rows(db: Path, proc: subprocess.Popen, at_least: int, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the scan ended before it could be killed: {proc.stderr.read().decode()[-2000:]}")
        if db.exists() and (n := _count(db)) >= at_least:
            return n
        time.sleep(0.005)
    pytest.fail("no rows committed in time")


# --- a worker that dies --------------------------------------------------------------------


def crash_on_marker(items):
    """Worker task for the test below: dies like a segfaulting decoder on a marked file."""
    if any("CRASH" in item.path for item in items):
        os._exit(11)
    return local.run_chunk(items)


def test_a_crashing_worker_costs_one_failure_record_not_the_run(messy_folder, tiny_bundle, tmp_path):
    shutil.copy(messy_folder / "03_snake_live.jpg", messy_folder / "CRASH.jpg")
    items = list(iter_items([messy_folder]))
    sha = sha256_file(tiny_bundle)
    with ScanStore(tmp_path / "s.db", sha) as store:
        total, _ = store.register(items)
        engine = local.LocalEngine(tiny_bundle, workers=2, batch_size=4, chunk_fn=crash_on_marker)
        engine.run(store.pending(items), store, Progress(total, quiet=True))
        records = {Path(r.path).name: r.record for r in store.records()}
    assert len(records) == total == 12
    assert records["CRASH.jpg"]["error"]["reason"] == "worker_crashed"
    assert records["03_snake_live.jpg"]["label"] is not None  # same bytes, other path: scored fine
    assert sum(1 for r in records.values() if r["error"]) == 5


# --- clusters and report ----------------------------------------------------------------------


def test_resized_reencoded_copy_joins_the_cluster_of_its_original(messy_folder, tmp_path):
    # PDQ is computed on the (DCT-reduced) decode the model needs: a 224-px model, as shipped,
    # keeps enough detail; the 32-px tiny bundle would not.
    from tiny_model import make_tiny_bundle

    bundle = make_tiny_bundle(tmp_path / "models224", name="tiny224.test", size=224)
    original = messy_folder / "01_reef_coral_live.jpg"
    with Image.open(original) as im:
        smaller = im.convert("RGB").resize((im.width * 2 // 3, im.height * 2 // 3), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    smaller.save(buffer, "JPEG", quality=60)
    (messy_folder / "sub" / "reposted.jpg").write_bytes(buffer.getvalue())
    scan([str(messy_folder)], [tmp_path / "r.jsonl"], model=str(bundle))
    rows = {Path(r["path"]).name: r for r in jsonl(tmp_path / "r.jsonl")}
    assert rows["reposted.jpg"]["sha256"] != rows["01_reef_coral_live.jpg"]["sha256"]
    assert rows["reposted.jpg"]["cluster_id"] == rows["01_reef_coral_live.jpg"]["cluster_id"]
    assert rows["reposted.jpg"]["cluster_size"] == 2
    assert rows["00_ivory_carving.jpg"]["cluster_id"] == rows["same_bytes.jpg"]["cluster_id"]
    others = {rows[n]["cluster_id"] for n in ("02_ceramic_lookalike.jpg", "03_snake_live.jpg", "04_product_photo.jpg")}
    assert len(others) == 3 and rows["01_reef_coral_live.jpg"]["cluster_id"] not in others
    assert rows["empty.jpg"]["cluster_id"] is None


def _flip_bits(hex_hash: str, n: int, rng) -> str:
    bits = np.unpackbits(np.frombuffer(bytes.fromhex(hex_hash), dtype=np.uint8))
    bits[rng.choice(256, n, replace=False)] ^= 1
    return np.packbits(bits).tobytes().hex()


def test_clusters_are_exact_up_to_the_pdq_threshold():
    rng = np.random.default_rng(7)
    base = [rng.integers(0, 256, 32, dtype=np.uint8).tobytes().hex() for _ in range(200)]
    hashes = list(base)
    for b in base[:100]:
        hashes.append(_flip_bits(b, 31, rng))  # the farthest copy that must still match
    for b in base[100:]:
        hashes.append(_flip_bits(b, 32, rng))  # the nearest that must not
    labels = cluster_labels(hashes + [None])
    assert labels[-1] is None
    assert all(labels[i] == labels[200 + i] for i in range(100))
    assert all(labels[i] != labels[200 + i] for i in range(100, 200))
    assert len(set(labels[:200])) == 200 and labels[:3] == [1, 2, 3]


def test_report_summarises_flagged_items_by_category_seller_platform_and_clusters(
    messy_folder, tiny_bundle, tmp_path, capsys
):
    ads = _ads(messy_folder)
    ads.append({**ads[0], "url": "https://other.example/ad/9", "seller": "reposter", "platform": "marketC"})
    manifest = _write_manifest(ads, messy_folder / "ads.csv")
    out = tmp_path / "r.csv"
    assert (
        main(
            [
                "scan",
                str(manifest),
                "--out",
                str(out),
                "--model",
                str(tiny_bundle),
                "--quiet",
                "--threshold",
                "ivory=0.0",
                "--threshold",
                "reef_coral=1.0",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"{len(ads)} records, {len(ads) - 1} flagged, 1 failures" in text
    assert f"{len(ads) - 1}  Elephant ivory (carving or object) [ivory]" in text.split("Flagged by category:")[1]
    seller_section = text.split("Flagged by seller")[1].split("Flagged by platform")[0]
    assert "seller0" in seller_section and "reposter" in seller_section
    assert "marketC" in text.split("Flagged by platform")[1]
    cluster_section = text.split("Largest near-duplicate clusters")[1]
    assert "2 photos, 2 flagged" in cluster_section and "2 sellers, 2 platforms" in cluster_section


def test_scan_modules_never_import_torch():
    code = (
        "import sys; import serving.scan.commands, serving.scan.local, serving.scan.ray_engine, "
        "serving.scan.outputs, serving.scan.report; print('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_pending_matches_items_by_id_when_the_folder_changes_between_walks(tmp_path):
    """A file that appears between register() and pending() must not hide the files after it."""
    from serving.scan.inputs import ScanItem

    first_walk = [ScanItem(item_id=f"id{i}", path=f"p{i}.jpg") for i in range(5)]
    second_walk = [ScanItem(item_id="new", path="new.jpg")] + first_walk + [first_walk[2]]  # + a repeat
    with ScanStore(tmp_path / "s.db", "0" * 64) as store:
        assert store.register(first_walk) == (5, 0)
        pending = [item.item_id for item in store.pending(second_walk)]
    assert pending == [f"id{i}" for i in range(5)]


def test_csv_output_never_carries_a_spreadsheet_formula(messy_folder, tiny_bundle, tmp_path):
    """Crawled fields are untrusted: a title such as =HYPERLINK(...) must reach the CSV as text."""
    hostile = [
        '=HYPERLINK("http://evil.example","click")',
        "+1+cmd|' /C calc'!A0",
        "-2+3",
        "@SUM(A1:A9)",
        "\tindented",
        "\rreturn",
    ]
    ads = [{**ad, "title": hostile[i % len(hostile)], "seller": "=1+1"} for i, ad in enumerate(_ads(messy_folder))]
    manifest = _write_manifest(ads, messy_folder / "hostile.jsonl")
    out = tmp_path / "results.csv"
    scan([str(manifest)], [out], model=str(tiny_bundle), workers=1)
    with open(out, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["title"] for r in rows] == ["'" + ad["title"] for ad in ads]
    assert all(r["seller"] == "'=1+1" for r in rows)
    for row in rows:  # nothing else in the file starts like a formula either
        assert not any(str(v).startswith(("=", "+", "@", "\t", "\r")) for v in row.values()), row


def test_report_reads_classify_output_and_counts_its_failures(tiny_bundle, photo, tmp_path, capsys):
    from vision.cli import main

    bad = tmp_path / "cut.jpg"
    bad.write_bytes(photo("ivory_carving").read_bytes()[:1500])
    main(["classify", str(photo("ivory_carving")), str(bad), str(tmp_path / "gone.jpg"), "--model", str(tiny_bundle)])
    out = tmp_path / "classified.jsonl"
    out.write_text(capsys.readouterr().out)
    assert main(["report", str(out)]) == 0
    text = capsys.readouterr().out
    assert "3 records, 0 flagged, 2 failures" in text and "failures: truncated 1, unreadable 1" in text


def test_files_skipped_as_not_images_are_counted_and_named_on_request(messy_folder, tiny_bundle, tmp_path, capsys):
    out = str(tmp_path / "r.jsonl")
    assert main(["scan", str(messy_folder), "--out", out, "--model", str(tiny_bundle), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "skipped 1 file(s) in the folders whose names are not images" in err and "notes.txt" not in err
    assert (
        main(["scan", str(messy_folder), "--out", out, "--model", str(tiny_bundle), "--quiet", "--list-skipped"]) == 0
    )
    assert f"  skipped: {messy_folder / 'notes.txt'}" in capsys.readouterr().err
    assert main(["classify", str(messy_folder), "--model", str(tiny_bundle), "--list-skipped"]) == 1  # bad files
    err = capsys.readouterr().err
    assert "wildscan classify: skipped 1 file(s)" in err and str(messy_folder / "notes.txt") in err
