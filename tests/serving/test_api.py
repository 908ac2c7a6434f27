"""The officers' API: FastAPI TestClient against the tiny real ONNX bundle and real photos."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import sqlite3
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from serving.app import create_app
from serving.batcher import MicroBatcher
from serving.explain import explain, grid_region
from serving.settings import Settings, SettingsError
from serving.store import Store
from vision.preprocess import PreprocessConfig
from vision.registry import create_model

PHOTOS = ("ivory_carving", "reef_coral_live", "snake_live", "ceramic_lookalike")
TINY_LABELS = {"ivory", "reef_coral", "ceramic_porcelain", "goods_other", "uncertain"}


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def upload(*items: tuple[str, bytes]) -> list:
    return [("files", (name, data, "image/jpeg")) for name, data in items]


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` but holds almost no data (a pixel bomb)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def metric(client: TestClient, name: str, **labels) -> float:
    """The value of one Prometheus sample (0 when absent), read with an admin key."""
    store = client.app.state.wildscan.store
    admin = store.add_key(f"metrics-{len(store.list_keys())}", role="admin")
    for family in text_string_to_metric_families(client.get("/metrics", headers=bearer(admin)).text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


@pytest.fixture()
def settings(tiny_bundle, tmp_path) -> Settings:
    return Settings(model=str(tiny_bundle), data_dir=tmp_path / "var")


@pytest.fixture()
def api_key(settings) -> str:
    with Store(settings.db_path) as store:
        return store.add_key("officer-1")


@pytest.fixture()
def client(settings, api_key):
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture()
def photo_bytes(photo):
    def read(label: str, index: int = 0) -> tuple[str, bytes]:
        path = photo(label, index)
        return path.name, path.read_bytes()

    return read


@pytest.fixture()
def reference(tiny_bundle):
    """The in-process classifier: what the API must agree with."""
    return create_model(tiny_bundle)


def assert_same_result(record: dict, expected) -> None:
    assert record["sha256"] == expected.sha256
    assert record["pdq"] == expected.pdq
    assert record["label"] == expected.label
    assert record["flagged"] == expected.flagged
    assert record["score"] == pytest.approx(expected.score, abs=1e-5)
    assert record["scores"] == pytest.approx(expected.scores, abs=1e-5)


# --- classify ----------------------------------------------------------------------------


def test_classify_one_photo_in_french(client, api_key, photo_bytes, reference):
    name, data = photo_bytes("ivory_carving")
    response = client.post(
        "/v1/classify",
        files=upload((name, data)),
        headers=bearer(api_key),
        data={"lang": "fr", "case_id": "FR-2025-7", "source_url": "https://ads.example/1"},
    )
    assert response.status_code == 200, response.text
    [record] = response.json()["results"]
    assert_same_result(record, reference.predict([(name, data)])[0])
    assert record["sha256"] == hashlib.sha256(data).hexdigest()
    assert record["model"]["name"] == "tiny.test" and len(record["model"]["sha256"]) == 64
    assert record["received_at"].endswith("Z") and len(record["result_id"]) == 32
    assert record["case_id"] == "FR-2025-7" and record["source_url"] == "https://ads.example/1"
    assert record["label"] in TINY_LABELS
    french = {
        "ivory": "Ivoire",
        "reef_coral": "Corail",
        "ceramic_porcelain": "céramique",
        "goods_other": "Autres",
        "uncertain": "Incertain",
    }
    assert french[record["label"]] in record["label_name"]
    assert record["legal_note"] and record["lang"] == "fr"


def test_classify_several_photos_keeps_order(client, api_key, photo_bytes, reference):
    items = [photo_bytes(label) for label in PHOTOS]
    response = client.post("/v1/classify", files=upload(*items), headers=bearer(api_key))
    assert response.status_code == 200
    records = response.json()["results"]
    assert [r["path"] for r in records] == [name for name, _ in items]
    for record, expected in zip(records, reference.predict(items)):
        assert_same_result(record, expected)
    assert len({r["result_id"] for r in records}) == len(items)


def test_one_bad_file_among_good_ones_becomes_an_error_record(client, api_key, photo_bytes):
    good = photo_bytes("snake_live")
    response = client.post(
        "/v1/classify", files=upload(good, ("broken.jpg", good[1][: len(good[1]) // 2])), headers=bearer(api_key)
    )
    assert response.status_code == 200
    ok, bad = response.json()["results"]
    assert ok["error"] is None and ok["label"] in TINY_LABELS
    assert bad["error"]["reason"] == "truncated" and bad["label"] is None


# --- authentication ----------------------------------------------------------------------


@pytest.mark.parametrize("style", ["bearer", "x-api-key"])
def test_valid_key_in_either_header_is_accepted(client, api_key, photo_bytes, style):
    headers = bearer(api_key) if style == "bearer" else {"X-API-Key": api_key}
    response = client.post("/v1/classify", files=upload(photo_bytes("orchid")), headers=headers)
    assert response.status_code == 200


def test_missing_wrong_or_revoked_key_is_401(client, settings, api_key, photo_bytes):
    files = upload(photo_bytes("orchid"))
    missing = client.post("/v1/classify", files=files)
    assert missing.status_code == 401 and missing.json()["detail"]["reason"] == "unauthorized"
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = api_key[:-4] + ("aaaa" if not api_key.endswith("aaaa") else "bbbb")
    assert client.post("/v1/classify", files=files, headers=bearer(wrong)).status_code == 401
    assert client.get("/v1/results?sha256=" + "0" * 64).status_code == 401
    with Store(settings.db_path) as store:
        store.revoke_key("officer-1")
    assert client.post("/v1/classify", files=files, headers=bearer(api_key)).status_code == 401


def test_me_names_the_key_and_the_openapi_declares_both_key_schemes(client, api_key):
    assert client.get("/v1/me", headers=bearer(api_key)).json() == {"name": "officer-1", "role": "user"}
    assert client.get("/v1/me", headers={"X-API-Key": api_key}).json()["name"] == "officer-1"
    assert client.get("/v1/me", headers=bearer("wsk_0000000000000000_wrong")).status_code == 401
    assert client.get("/v1/me").status_code == 401
    schemes = client.get("/openapi.json").json()["components"]["securitySchemes"]
    assert sorted((s["type"], s.get("scheme") or s.get("name")) for s in schemes.values()) == [
        ("apiKey", "X-API-Key"),
        ("http", "bearer"),
    ]


def test_the_default_server_folder_does_not_depend_on_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("WILDSCAN_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    here = Settings.from_env({})
    assert here.data_dir.is_absolute() and here.db_path == here.data_dir / "wildscan.db"
    assert not str(here.data_dir).startswith(str(tmp_path))


def test_the_openapi_documents_the_error_bodies_and_statuses_the_api_really_sends(client, api_key, photo_bytes):
    schema = client.get("/openapi.json").json()
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    reasons = schema["components"]["schemas"]["Error"]["properties"]["detail"]["properties"]["reason"]["enum"]
    assert {"truncated", "no_filter", "unauthorized", "unknown_category"} <= set(reasons)
    body = schema["paths"]["/v1/classify"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert body["properties"]["files"]["minItems"] == 1
    admin = Store(client.app.state.wildscan.settings.db_path).add_key("admin-1", role="admin")
    sent = [  # (method, documented path, response)
        ("post", "/v1/classify", client.post("/v1/classify", files=upload(("a.jpg", b"")), headers=bearer(api_key))),
        ("post", "/v1/classify", client.post("/v1/classify", files=upload(photo_bytes("orchid")))),
        ("get", "/v1/results", client.get("/v1/results", headers=bearer(api_key))),
        ("get", "/v1/results/{result_id}", client.get("/v1/results/" + "0" * 32, headers=bearer(api_key))),
        ("get", "/v1/galleries/{category}", client.get("/v1/galleries/unicorn", headers=bearer(admin))),
        ("get", "/v1/galleries", client.get("/v1/galleries", headers=bearer(api_key))),
        ("get", "/v1/me", client.get("/v1/me")),
    ]
    for method, path, response in sent:
        assert response.status_code >= 400, (path, response.status_code)
        documented = schema["paths"][path][method]["responses"]
        assert str(response.status_code) in documented, (method, path, response.status_code)
        assert documented[str(response.status_code)]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Error"
        }
        assert set(response.json()["detail"]) >= {"reason", "message"}


def test_metrics_need_an_admin_key(client, api_key):
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=bearer(api_key)).status_code == 403  # a user key
    assert metric(client, "wildscan_requests_total", method="GET", route="/metrics", status="403") == 1


def test_anonymous_demo_mode_needs_no_key(tiny_bundle, tmp_path, photo_bytes):
    settings = Settings(model=str(tiny_bundle), data_dir=tmp_path, allow_anonymous=True)
    app = create_app(settings)
    with TestClient(app, client=("127.0.0.1", 50000)) as client:
        response = client.post("/v1/classify", files=upload(photo_bytes("orchid")))
        assert response.status_code == 200
        assert client.get("/readyz").json()["auth_required"] is False
        relayed = client.post(
            "/v1/classify", files=upload(photo_bytes("orchid")), headers={"X-Forwarded-For": "10.1.2.3"}
        )
        assert relayed.status_code == 403 and relayed.json()["detail"]["reason"] == "forbidden"
    with TestClient(app, client=("192.0.2.7", 50000)) as client:  # however the app was started
        response = client.post("/v1/classify", files=upload(photo_bytes("orchid")))
        assert response.status_code == 403 and "this machine" in response.json()["detail"]["message"]


def test_keys_and_keyless_mode_cannot_both_be_asked_for(tmp_path):
    with pytest.raises(SettingsError, match="choose one"):
        Settings.from_env({"WILDSCAN_AUTH": "1", "WILDSCAN_ALLOW_ANONYMOUS": "1", "WILDSCAN_DATA_DIR": str(tmp_path)})
    with pytest.raises(SettingsError, match="ALLOW_ANONYMOUS=1"):
        Settings.from_env({"WILDSCAN_AUTH": "0", "WILDSCAN_DATA_DIR": str(tmp_path)})
    assert Settings.from_env({"WILDSCAN_AUTH": "1", "WILDSCAN_DATA_DIR": str(tmp_path)}).requires_key
    assert Settings(allow_anonymous=True).requires_key is False and Settings().requires_key is True


def test_keys_from_the_environment_are_accepted(tiny_bundle, tmp_path, photo_bytes):
    settings = Settings.from_env(
        {
            "WILDSCAN_MODEL": str(tiny_bundle),
            "WILDSCAN_DATA_DIR": str(tmp_path),
            "WILDSCAN_API_KEYS": "crawler=0123456789abcdef-secret",
        }
    )
    with TestClient(create_app(settings)) as client:
        ok = client.post(
            "/v1/classify", files=upload(photo_bytes("orchid")), headers={"X-API-Key": "0123456789abcdef-secret"}
        )
        assert ok.status_code == 200
    with sqlite3.connect(settings.db_path) as db:
        assert db.execute("SELECT key_name FROM results").fetchall() == [("crawler",)]


def test_app_refuses_to_start_without_any_key(settings):
    with pytest.raises(SettingsError, match="wildscan keys add"), TestClient(create_app(settings)):
        pass


@pytest.mark.parametrize(
    "env, message",
    [
        ({"WILDSCAN_AUTH": "0"}, "WILDSCAN_ALLOW_ANONYMOUS"),
        ({"WILDSCAN_ALLOW_ANONYMOUS": "1", "WILDSCAN_HOST": "0.0.0.0"}, "loopback"),
        ({"WILDSCAN_API_KEYS": "bob=short"}, "shorter than"),
        ({"WILDSCAN_MAX_FILES": "0"}, "MAX_FILES"),
        ({"WILDSCAN_BATCH_MAX_SIZE": "many"}, "WILDSCAN_BATCH_MAX_SIZE"),
        ({"WILDSCAN_KEEP_EVIDENCE": "perhaps"}, "WILDSCAN_KEEP_EVIDENCE"),
    ],
)
def test_settings_refuse_unsafe_or_malformed_values(env, message):
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def test_settings_defaults_are_safe(tmp_path):
    settings = Settings.from_env({"WILDSCAN_DATA_DIR": str(tmp_path)})
    assert settings.requires_key and not settings.keep_evidence and settings.host == "127.0.0.1"
    assert settings.db_path == tmp_path / "wildscan.db"


# --- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case, status, reason",
    [
        ("zero_bytes", 422, "empty"),
        ("truncated", 422, "truncated"),
        ("corrupt", 422, "corrupt"),
        ("text_as_jpg", 415, "not_an_image"),
        ("pdf", 415, "unsupported_format"),
        ("pixel_bomb", 413, "too_many_pixels"),
    ],
)
def test_bad_uploads_get_a_clear_4xx(client, api_key, photo_bytes, case, status, reason):
    _, jpeg = photo_bytes("ivory_carving")
    data = {
        "zero_bytes": b"",
        "truncated": jpeg[: len(jpeg) // 2],
        "corrupt": jpeg[:600] + bytes(range(256)) * 20 + jpeg[600 + 5120 :],
        "text_as_jpg": b"this is a text file, not a photo\n" * 20,
        "pdf": b"%PDF-1.4\n" + b"0" * 100,
        "pixel_bomb": png_claiming(20000, 20000),
    }[case]
    response = client.post("/v1/classify", files=upload((f"{case}.jpg", data)), headers=bearer(api_key))
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert detail["reason"] == reason
    assert detail["message"] and detail["file"] == f"{case}.jpg"
    assert metric(client, "wildscan_image_errors_total", reason=reason) == 1
    if data:  # refused, and audited all the same: the record of what was sent and why it failed
        found = client.get(f"/v1/results?sha256={hashlib.sha256(data).hexdigest()}", headers=bearer(api_key))
        [record] = found.json()["results"]
        assert record["error"]["reason"] == reason and record["path"] == f"{case}.jpg"


def test_file_over_the_byte_limit_is_413(tiny_bundle, tmp_path, photo_bytes):
    name, data = photo_bytes("ivory_carving")
    settings = Settings(model=str(tiny_bundle), data_dir=tmp_path, max_upload_bytes=len(data) - 1)
    key = Store(settings.db_path).add_key("a")
    with TestClient(create_app(settings)) as client:
        response = client.post("/v1/classify", files=upload((name, data)), headers=bearer(key))
        assert response.status_code == 413
        assert response.json()["detail"]["reason"] == "too_large"
        just_fits = client.post("/v1/classify", files=upload((name, data[:-1])), headers=bearer(key))
        assert just_fits.status_code != 413


def test_request_body_over_the_limit_is_refused_before_parsing(tiny_bundle, tmp_path):
    settings = Settings(model=str(tiny_bundle), data_dir=tmp_path, max_upload_bytes=1000, max_files=1)
    key = Store(settings.db_path).add_key("a")
    with TestClient(create_app(settings)) as client:
        big = b"\xff\xd8\xff" + b"\0" * (settings.max_request_bytes + 10)
        response = client.post("/v1/classify", files=upload(("big.jpg", big)), headers=bearer(key))
        assert response.status_code == 413
        assert response.json()["detail"]["reason"] == "request_too_large"


def test_too_many_files_is_413(tiny_bundle, tmp_path, photo_bytes):
    settings = Settings(model=str(tiny_bundle), data_dir=tmp_path, max_files=2)
    key = Store(settings.db_path).add_key("a")
    with TestClient(create_app(settings)) as client:
        item = photo_bytes("orchid")
        response = client.post("/v1/classify", files=upload(item, item, item), headers=bearer(key))
        assert response.status_code == 413 and response.json()["detail"]["reason"] == "too_many_files"


def test_form_without_files_or_with_bad_fields_is_422(client, api_key, photo_bytes):
    no_files = client.post("/v1/classify", data={"case_id": "x"}, headers=bearer(api_key))
    assert no_files.status_code == 422 and no_files.json()["detail"]["reason"] == "no_files"
    bad_lang = client.post(
        "/v1/classify", files=upload(photo_bytes("orchid")), data={"lang": "xx"}, headers=bearer(api_key)
    )
    assert bad_lang.status_code == 422 and bad_lang.json()["detail"]["reason"] == "bad_language"


# --- audit store and lookups -------------------------------------------------------------


def test_results_survive_in_the_sqlite_file(settings, api_key, photo_bytes):
    name, data = photo_bytes("reef_coral_live")
    with TestClient(create_app(settings)) as client:
        record = client.post(
            "/v1/classify",
            files=upload((name, data)),
            headers=bearer(api_key),
            data={"case_id": "NL-1", "note": "seller says 'fake'"},
        ).json()["results"][0]
    db = sqlite3.connect(settings.db_path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        row = db.execute(
            "SELECT key_name, sha256, pdq, model_name, model_sha256, label, score, flagged, case_id, note, record "
            "FROM results WHERE result_id = ?",
            (record["result_id"],),
        ).fetchone()
    finally:
        db.close()
    assert row[:10] == (
        "officer-1",
        hashlib.sha256(data).hexdigest(),
        record["pdq"],
        "tiny.test",
        record["model"]["sha256"],
        record["label"],
        record["score"],
        int(record["flagged"]),
        "NL-1",
        "seller says 'fake'",
    )
    assert '"result_id": "{}"'.format(record["result_id"]) in row[10]
    assert data not in Path(settings.db_path).read_bytes()  # never the image itself


def test_lookup_by_result_id_and_sha256(client, settings, api_key, photo_bytes):
    name, data = photo_bytes("snake_live")
    first = client.post("/v1/classify", files=upload((name, data)), headers=bearer(api_key)).json()["results"][0]
    second = client.post("/v1/classify", files=upload((name, data)), headers=bearer(api_key)).json()["results"][0]

    by_id = client.get(f"/v1/results/{first['result_id']}", headers=bearer(api_key))
    assert by_id.status_code == 200 and by_id.json() == {**first, "feedback": []}
    in_dutch = client.get(f"/v1/results/{first['result_id']}?lang=nl", headers=bearer(api_key)).json()
    assert in_dutch["lang"] == "nl" and in_dutch["label"] == first["label"]

    sha = hashlib.sha256(data).hexdigest()
    found = client.get(f"/v1/results?sha256={sha.upper()}", headers=bearer(api_key)).json()["results"]
    assert [r["result_id"] for r in found] == [second["result_id"], first["result_id"]]

    assert client.get("/v1/results/" + "0" * 32, headers=bearer(api_key)).status_code == 404
    assert client.get("/v1/results?sha256=nothex", headers=bearer(api_key)).status_code == 422


def test_user_keys_see_only_their_own_results_admins_see_all(client, settings, api_key, photo_bytes):
    record = client.post("/v1/classify", files=upload(photo_bytes("orchid")), headers=bearer(api_key)).json()
    result_id = record["results"][0]["result_id"]
    with Store(settings.db_path) as store:
        other, admin = store.add_key("officer-2"), store.add_key("lead", role="admin")
    assert client.get(f"/v1/results/{result_id}", headers=bearer(other)).status_code == 404
    assert client.get(f"/v1/results/{result_id}", headers=bearer(admin)).status_code == 200


# --- catalogue, model, health, metrics ---------------------------------------------------


def test_labels_have_four_languages(client):
    body = client.get("/v1/labels").json()
    assert body["languages"] == ["en", "fr", "de", "nl"]
    assert body["model_labels"] == ["ivory", "reef_coral", "ceramic_porcelain", "goods_other"]
    ivory = next(c for c in body["categories"] if c["id"] == "ivory")
    assert set(ivory["names"]) == set(ivory["legal_notes"]) == {"en", "fr", "de", "nl"}
    assert ivory["names"]["de"].startswith("Elfenbein") and ivory["risk"] == "high" and ivory["in_model"]
    assert set(body["uncertain"]["names"]) == {"en", "fr", "de", "nl"}


def test_model_health_and_readiness(client):
    model = client.get("/v1/model").json()
    assert model["name"] == "tiny.test" and len(model["sha256"]) == 64
    assert model["thresholds"]["ivory"] == 0.6 and model["preprocess"]["input_size"] == 32
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True


def test_not_ready_before_start_up(settings):
    client = TestClient(create_app(settings))  # no context manager: the lifespan has not run
    assert client.get("/readyz").status_code == 503
    assert client.get("/healthz").status_code == 200


def test_metrics_count_requests_images_flags_and_batches(client, api_key, photo_bytes):
    items = [photo_bytes(label) for label in PHOTOS]
    records = client.post("/v1/classify", files=upload(*items), headers=bearer(api_key)).json()["results"]
    client.post("/v1/classify", files=upload(("x.jpg", b"")), headers=bearer(api_key))
    assert metric(client, "wildscan_images_total") == len(items) + 1  # the refused empty file was received too
    for label in {r["label"] for r in records if r["flagged"]}:
        assert metric(client, "wildscan_flagged_total", label=label) == sum(r["label"] == label for r in records)
    assert metric(client, "wildscan_image_errors_total", reason="empty") == 1
    assert metric(client, "wildscan_requests_total", method="POST", route="/v1/classify", status="200") == 1
    assert metric(client, "wildscan_requests_total", method="POST", route="/v1/classify", status="422") == 1
    assert metric(client, "wildscan_request_seconds_count", route="/v1/classify") == 2
    assert metric(client, "wildscan_batch_size_sum") == len(items)


# --- micro-batching ----------------------------------------------------------------------


def test_concurrent_requests_are_batched_and_each_gets_its_own_result(tiny_bundle, tmp_path, photo_bytes, reference):
    settings = Settings(model=str(tiny_bundle), data_dir=tmp_path, batch_max_wait_ms=200, batch_max_size=8)
    key = Store(settings.db_path).add_key("a")
    items = [photo_bytes(label, i) for label in PHOTOS for i in range(2)]
    expected = {name: reference.predict([(name, data)])[0] for name, data in items}
    app = create_app(settings)
    answers: dict[str, dict] = {}
    barrier = threading.Barrier(len(items))

    def post(item):
        barrier.wait()
        response = client.post("/v1/classify", files=upload(item), headers=bearer(key))
        answers[item[0]] = response.json()["results"][0]

    with TestClient(app) as client:
        threads = [threading.Thread(target=post, args=(item,)) for item in items]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        stats = app.state.wildscan.batcher.stats
    assert stats.images == len(items)
    assert stats.max_size > 1 and stats.batches < len(items)
    assert set(answers) == set(expected)
    for name, record in answers.items():
        assert_same_result(record, expected[name])


def test_batcher_routes_rows_back_and_respects_the_size_limit():
    calls = []

    def run(batch):
        calls.append(len(batch))
        return batch.reshape(len(batch), -1)[:, :2] * 2

    batcher = MicroBatcher(run, max_batch=3, max_wait_ms=50)

    async def main():
        tensors = [np.full((1, 2, 1), i, np.float32) for i in range(10)]
        return await asyncio.gather(*(batcher.submit([t]) for t in tensors))

    try:
        rows = asyncio.run(main())
    finally:
        batcher.close()
    assert [float(r[0, 0]) for r in rows] == [2.0 * i for i in range(10)]
    assert max(calls) <= 3 and sum(calls) == 10 and len(calls) < 10
    assert batcher.stats.images == 10 and not batcher.alive


# --- explanations ------------------------------------------------------------------------


def test_explain_returns_a_heatmap(client, api_key, photo_bytes):
    response = client.post(
        "/v1/classify", files=upload(photo_bytes("ivory_carving")), data={"explain": "true"}, headers=bearer(api_key)
    )
    record = response.json()["results"][0]
    heat = record["explanation"]
    assert np.array(heat["grid"]).shape == (7, 7)
    assert max(max(row) for row in heat["grid"]) == 1.0 and min(min(row) for row in heat["grid"]) >= 0
    assert heat["region"] == [0.0, 0.0, 1.0, 1.0]
    assert heat["label"] == record["label"] or record["label"] == "uncertain"
    png = base64.b64decode(heat["overlay_png"].split(",", 1)[1])
    assert Image.open(io.BytesIO(png)).mode == "RGBA"


def test_occlusion_points_at_the_part_that_matters(tiny_bundle):
    classifier = create_model(tiny_bundle)
    tensor = np.full((3, 32, 32), -1.0, np.float32)  # black photo ...
    tensor[:, 18:, 18:] = 1.0  # ... with a white (ivory-like for the tiny model) bottom-right corner
    heat = explain(classifier, tensor, "ivory", width=32, height=32, grid=4)
    grid = np.array(heat.grid)
    assert np.unravel_index(grid.argmax(), grid.shape) == (3, 3)
    assert grid[:2, :2].max() == 0.0  # hiding black cells never lowers the ivory score


def test_grid_region_follows_the_resize_mode():
    assert grid_region(PreprocessConfig(resize_mode="squash"), 400, 200) == (0.0, 0.0, 1.0, 1.0)
    assert grid_region(PreprocessConfig(resize_mode="center_crop"), 400, 200) == (0.25, 0.0, 0.75, 1.0)
    assert grid_region(PreprocessConfig(resize_mode="letterbox"), 400, 200) == (0.0, -0.5, 1.0, 1.5)


# --- disk hygiene, evidence, CLI, imports ------------------------------------------------


def test_client_file_names_never_touch_the_disk(tiny_bundle, tmp_path, photo_bytes):
    settings = Settings(model=str(tiny_bundle), data_dir=tmp_path / "var", keep_evidence=True)
    key = Store(settings.db_path).add_key("a")
    _, data = photo_bytes("ivory_carving")
    with TestClient(create_app(settings)) as client:
        record = client.post("/v1/classify", files=upload(("../../evil-name.jpg", data)), headers=bearer(key)).json()[
            "results"
        ][0]
    assert record["path"] == "evil-name.jpg"
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert not any("evil" in str(p) for p in written)
    sha = hashlib.sha256(data).hexdigest()
    copy = settings.evidence_dir / sha[:2] / f"{sha}.jpg"
    assert copy.read_bytes() == data


def test_keys_command_adds_lists_and_revokes(tmp_path, monkeypatch, capsys):
    from vision.cli import main

    monkeypatch.setenv("WILDSCAN_DATA_DIR", str(tmp_path))
    assert main(["keys", "add", "customs-hh", "--admin"]) == 0
    key = capsys.readouterr().out.strip()
    with Store(tmp_path / "wildscan.db") as store:
        assert store.verify_key(key).role == "admin"
    assert main(["keys", "list"]) == 0
    listing = capsys.readouterr().out
    assert "customs-hh\tadmin" in listing and key not in listing
    assert main(["keys", "revoke", "customs-hh"]) == 0
    with Store(tmp_path / "wildscan.db") as store:
        assert store.verify_key(key) is None
    assert main(["keys", "revoke", "customs-hh"]) == 1  # nothing left to revoke: a clear error


def test_serving_never_imports_torch():
    code = (
        "import sys, serving.app, serving.commands, serving.explain, serving.batcher; "
        "from vision.cli import build_parser; build_parser(); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert out.stdout.strip() == "False"


def test_api_docs_work_without_a_cdn(client):
    page = client.get("/docs")
    assert page.status_code == 200
    assert "/docs-static/swagger-ui-bundle.js" in page.text and "cdn." not in page.text
    assert client.get("/docs-static/swagger-ui-bundle.js").status_code == 200
    schema = client.get("/openapi.json").json()
    assert "/v1/classify" in schema["paths"]


def test_a_wrong_method_gets_405_with_every_allowed_method(client, api_key):
    response = client.patch("/v1/galleries/ivory", headers=bearer(api_key))
    assert response.status_code == 405 and response.json()["detail"]["reason"] == "method_not_allowed"
    assert response.headers["allow"] == "DELETE, GET, HEAD, POST"  # three routes share the path
    assert client.delete("/v1/classify", headers=bearer(api_key)).headers["allow"] == "POST"
    assert client.get("/v1/galleries/import", headers=bearer(api_key)).status_code != 405  # a gallery named so
    assert client.patch("/v1/galleries/import", headers=bearer(api_key)).headers["allow"] == "POST"  # literal path
