"""One record everywhere: the same photos through ``wildscan classify``, the API and a scan
give the same keys, nesting and values (each surface only adds its own fields on top), and
``wildscan report`` counts every one of them the same way."""

from __future__ import annotations

import json
import shutil

import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.scan.api import scan
from serving.scan.outputs import SCAN_FIELDS
from serving.settings import Settings
from serving.store import Store
from vision.cli import main

API_FIELDS = {"result_id", "received_at", "source_url", "case_id", "note", "lang"}


def comparable(record: dict, own_fields) -> dict:
    """The record without the surface's own fields and the path (each names the file its way)."""
    return {k: v for k, v in record.items() if k not in set(own_fields) | {"path"}}


def assert_same(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for key in a:
        if key in ("score", "scores"):
            assert a[key] == pytest.approx(b[key], abs=1e-6)
        else:
            assert a[key] == b[key], key


def test_classify_the_api_and_a_scan_write_the_same_record(tiny_bundle, photo, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, label in enumerate(("ivory_carving", "reef_coral_live", "ceramic_lookalike")):
        shutil.copy(photo(label), folder / f"{i}.jpg")
    (folder / "3.jpg").write_bytes((folder / "0.jpg").read_bytes()[:1000])  # a truncated download
    paths = sorted(folder.glob("*.jpg"))

    assert main(["classify", *map(str, paths), "--model", str(tiny_bundle)]) == 1  # one file failed
    cli = [json.loads(line) for line in capsys.readouterr().out.splitlines()]

    settings = Settings(model=str(tiny_bundle), data_dir=tmp_path / "var")
    with Store(settings.db_path) as store:
        key = store.add_key("officer")
    files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in paths]
    with TestClient(create_app(settings)) as client:
        response = client.post("/v1/classify", files=files, headers={"Authorization": f"Bearer {key}"})
    api = response.json()["results"]

    scan([str(folder)], [tmp_path / "scan.jsonl"], model=str(tiny_bundle), workers=1)
    scanned = {r["path"]: r for r in map(json.loads, (tmp_path / "scan.jsonl").read_text().splitlines())}
    scanned_in_order = [scanned[str(p.resolve())] for p in paths]

    assert len(cli) == len(api) == len(scanned_in_order) == 4
    for c, a, s in zip(cli, api, scanned_in_order):
        assert_same(comparable(a, API_FIELDS), comparable(c, ()))
        assert_same(comparable(s, SCAN_FIELDS), comparable(c, ()))
        assert isinstance(s["metadata"], dict) and s["item_id"]
    assert cli[3]["error"]["reason"] == "truncated" and cli[3]["label_name"] is None
    assert cli[0]["label_name"] and cli[0]["legal_note"]  # words for the label, in English, everywhere

    # report counts the failures of all three the same way (the API's records saved as JSONL)
    api_file = tmp_path / "api.jsonl"
    api_file.write_text("".join(json.dumps(r) + "\n" for r in api))
    cli_file = tmp_path / "cli.jsonl"
    cli_file.write_text("".join(json.dumps(r) + "\n" for r in cli))
    for results in (api_file, cli_file, tmp_path / "scan.jsonl"):
        assert main(["report", str(results)]) == 0
        first = capsys.readouterr().out.splitlines()[0]
        assert first.startswith("4 records") and first.endswith("1 failures"), (results.name, first)
