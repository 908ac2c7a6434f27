"""Officers' feedback: stored with who and when, checked, exported as labelled data that the
training pipeline reads (real photos through the real API and a real SQLite file)."""

from __future__ import annotations

import csv
import hashlib
import io
import sqlite3

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from serving.app import create_app
from serving.settings import Settings
from serving.store import Store
from training.data import load_feedback
from training.errors import TrainingError


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture()
def server(tiny_bundle, tmp_path):
    settings = Settings(model=str(tiny_bundle), data_dir=tmp_path / "var", keep_evidence=True)
    with Store(settings.db_path) as store:
        keys = {name: store.add_key(name) for name in ("officer-1", "officer-2")}
    with TestClient(create_app(settings)) as client:
        yield client, keys, settings


def classify(client, key: str, *paths, case_id: str = "NL-2026-7") -> list[dict]:
    files = [("files", (p.name, p.read_bytes(), "application/octet-stream")) for p in paths]
    response = client.post("/v1/classify", files=files, data={"case_id": case_id}, headers=bearer(key))
    assert response.status_code == 200, response.text
    return response.json()["results"]


def feedback(client, key: str, result_id: str, **body):
    return client.post(f"/v1/results/{result_id}/feedback", json=body, headers=bearer(key))


def test_feedback_is_checked_stored_and_exported_as_training_data(server, photo, tmp_path, monkeypatch):
    client, keys, settings = server
    carving, coral = photo("ivory_carving"), photo("reef_coral_live")
    first, second = classify(client, keys["officer-1"], carving, coral)

    confirmed = feedback(client, keys["officer-1"], first["result_id"], verdict="correct")
    assert confirmed.status_code == 201, confirmed.text
    assert confirmed.json()["label"] == first["label"] and confirmed.json()["given_by"] == "officer-1"
    wrong_label = "ceramic_porcelain" if second["label"] != "ceramic_porcelain" else "reef_coral"
    corrected = feedback(
        client, keys["officer-1"], second["result_id"], verdict="wrong", label=wrong_label, note="resin"
    )
    assert corrected.status_code == 201, corrected.text

    # refusals: another user's result, unknown category, "wrong" without a new category, no body
    other = feedback(client, keys["officer-2"], first["result_id"], verdict="correct")
    assert other.status_code == 404
    unknown = feedback(client, keys["officer-1"], first["result_id"], verdict="wrong", label="dragon")
    assert (unknown.status_code, unknown.json()["detail"]["reason"]) == (422, "bad_feedback")
    same = feedback(client, keys["officer-1"], first["result_id"], verdict="wrong", label=first["label"])
    assert (same.status_code, same.json()["detail"]["reason"]) == (422, "bad_feedback")
    missing = feedback(client, keys["officer-1"], first["result_id"], verdict="wrong")
    assert missing.status_code == 422
    assert feedback(client, keys["officer-1"], first["result_id"], verdict="maybe").status_code == 422

    # a file that could not be read has no prediction to judge
    files = [
        ("files", ("a.jpg", carving.read_bytes(), "image/jpeg")),
        ("files", ("b.jpg", b"\xff\xd8junk", "image/jpeg")),
    ]
    failed = client.post("/v1/classify", files=files, headers=bearer(keys["officer-1"])).json()["results"][1]
    refused = feedback(client, keys["officer-1"], failed["result_id"], verdict="correct")
    assert (refused.status_code, refused.json()["detail"]["reason"]) == (409, "no_prediction")

    # the record shows its feedback, oldest first; the latest verdict is the one exported
    assert feedback(client, keys["officer-1"], first["result_id"], verdict="wrong", label="figurine").status_code == 201
    record = client.get(f"/v1/results/{first['result_id']}", headers=bearer(keys["officer-1"])).json()
    assert [f["verdict"] for f in record["feedback"]] == ["correct", "wrong"]
    assert record["feedback"][1]["given_at"] >= record["feedback"][0]["given_at"]

    from vision.cli import main

    monkeypatch.setenv("WILDSCAN_DATA_DIR", str(settings.data_dir))
    out = tmp_path / "export"
    assert main(["feedback", "export", str(out)]) == 0
    with open(out / "feedback.csv", newline="", encoding="utf-8") as f:
        rows = {r["result_id"]: r for r in csv.DictReader(f)}
    assert set(rows) == {first["result_id"], second["result_id"]}
    assert (rows[first["result_id"]]["verdict"], rows[first["result_id"]]["label"]) == ("wrong", "figurine")
    assert rows[second["result_id"]]["note"] == "resin" and rows[second["result_id"]]["given_by"] == "officer-1"
    assert rows[second["result_id"]]["model_label"] == second["label"]
    assert rows[second["result_id"]]["case_id"] == "NL-2026-7"

    # a correct verdict confirms the result's own category, never another one
    other = "ceramic_porcelain" if first["label"] != "ceramic_porcelain" else "reef_coral"
    assert feedback(client, keys["officer-1"], first["result_id"], verdict="correct", label=other).status_code == 422

    examples = {ex.sha256: ex for ex in load_feedback(out)}
    assert {ex.cls for ex in examples.values()} == {"figurine", wrong_label}
    for source in (carving, coral):
        sha = hashlib.sha256(source.read_bytes()).hexdigest()
        assert examples[sha].file().read_bytes() == source.read_bytes()  # the photo itself, copied
    assert len({ex.group for ex in examples.values()}) == 1  # one case: one group

    # a dev set: the model scored on the officers' photos of the classes it knows
    from training.evaluate import evaluate_split, markdown_report
    from vision.registry import create_model

    metrics = evaluate_split(
        create_model(settings.model), "feedback", examples=list(examples.values()), views=("clean",)
    )
    known = [ex for ex in examples.values() if ex.cls in metrics["labels"]]
    assert metrics["clean"]["n"] == len(known) >= 1 and "ad" not in metrics
    assert "split `feedback`" in markdown_report(metrics)


def test_export_without_evidence_copies_gives_hashes_and_labels_only(tiny_bundle, photo, tmp_path):
    settings = Settings(model=str(tiny_bundle), data_dir=tmp_path / "var")
    with Store(settings.db_path) as store:
        key = store.add_key("officer")
    with TestClient(create_app(settings)) as client:
        (result,) = classify(client, key, photo("reef_coral_live"))
        assert feedback(client, key, result["result_id"], verdict="correct").status_code == 201
    from serving.feedback import export_feedback

    with Store(settings.db_path) as store:
        done = export_feedback(store, tmp_path / "out", settings.evidence_dir)
    assert (done.rows, done.photos) == (1, 0)
    assert load_feedback(tmp_path / "out") == []  # no photo: nothing to train on
    with pytest.raises(TrainingError, match="feedback export"):
        load_feedback(tmp_path / "nowhere")


def test_an_older_audit_file_gains_the_feedback_table(tmp_path):
    path = tmp_path / "old.db"
    with Store(path):
        pass
    db = sqlite3.connect(path)
    db.executescript("DROP TABLE feedback; PRAGMA user_version = 0;")
    db.close()
    with Store(path) as store:
        assert store.feedback_for("0" * 32) == []
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 1


def test_officers_photos_never_bring_held_out_or_unusable_photos_into_training(tmp_path):
    from training import data
    from training.heads import HeadsConfig, officers_photos

    held_out, fresh = data.load_split("test")[0], data.load_split("train")[0]
    folder = tmp_path / "export"
    (folder / "photos").mkdir(parents=True)
    # a validation photo as an officer might meet it again: resized and re-saved (other bytes)
    shown = Image.open(data.load_split("val")[0].file()).convert("RGB")
    buffer = io.BytesIO()
    shown.resize((shown.width * 9 // 10, shown.height * 9 // 10)).save(buffer, "JPEG", quality=70)
    copy = buffer.getvalue()
    truncated = data.load_split("train")[1].file().read_bytes()[:2000]  # a real JPEG cut short
    rows = []
    for ex, raw in ((held_out, None), (fresh, None), (data.load_split("val")[0], copy), (fresh, truncated)):
        raw = raw or ex.file().read_bytes()
        sha = hashlib.sha256(raw).hexdigest()
        name = f"photos/{sha}.jpg"
        (folder / name).write_bytes(raw)
        rows.append({"path": name, "sha256": sha, "pdq": ex.pdq, "label": ex.cls, "verdict": "correct",
                     "result_id": sha[:32], "case_id": "c1"})  # fmt: skip
    changed = data.load_split("train")[2]
    (folder / "photos/changed.jpg").write_bytes(changed.file().read_bytes())
    rows.append({**rows[1], "path": "photos/changed.jpg", "sha256": "0" * 64, "result_id": "f" * 32})
    with open(folder / "feedback.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    labels = data.classes()
    assert len({ex.sha256 for ex in load_feedback(folder)} - {held_out.sha256, fresh.sha256}) == 3
    kept, skipped = officers_photos(HeadsConfig(extra_train=[str(folder)]), labels)
    assert [ex.sha256 for ex in kept] == [fresh.sha256]  # the test photo and the copy stay out of training
    # the truncated photo and the one whose bytes changed since the export: skipped, with a reason
    assert sorted(r["reason"] for r in skipped) == ["changed", "truncated"]
    # named as the export's feedback.csv names them, not by the trainer's own folders
    assert {r["path"] for r in skipped} == {f"photos/{hashlib.sha256(truncated).hexdigest()}.jpg", "photos/changed.jpg"}
    assert all(r["message"] for r in skipped)
