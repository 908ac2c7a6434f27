"""Runtimes behind one interface (vision.engines): the automatic choice, and OpenVINO giving
the same answers as onnxruntime on real photos (fp32 everywhere; bf16 where the CPU has it)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from vision import engines
from vision.bundle import INPUT, LOGITS, bundle_paths
from vision.errors import BundleError
from vision.preprocess import load_for_model
from vision.runtime import Classifier

PASSED = {engines.PARITY_KEY: {"passed": True}}
FAILED = {engines.PARITY_KEY: {"passed": False}}


@pytest.mark.parametrize(
    "setting, parity, bf16, installed, expected",
    [
        ("auto", PASSED, True, True, ("openvino", "bf16")),
        ("auto", FAILED, True, True, ("onnxruntime", "fp32")),  # bf16 not proven on this model
        ("auto", {}, True, True, ("onnxruntime", "fp32")),
        ("auto", PASSED, False, True, ("onnxruntime", "fp32")),  # bf16 would be emulated: slow
        ("auto", PASSED, True, False, ("onnxruntime", "fp32")),  # not installed
        ("onnxruntime", PASSED, True, True, ("onnxruntime", "fp32")),
        ("openvino", PASSED, True, True, ("openvino", "bf16")),
        ("openvino", FAILED, True, True, ("openvino", "fp32")),  # asked for: fp32 unless bf16 passed
        ("openvino", PASSED, False, True, ("openvino", "fp32")),
        ("openvino-bf16", {}, True, True, ("openvino", "bf16")),  # forced (the parity check itself)
        ("openvino-fp32", PASSED, True, True, ("openvino", "fp32")),
    ],
)
def test_the_runtime_is_chosen_by_setting_cpu_and_recorded_parity(
    monkeypatch, setting, parity, bf16, installed, expected
):
    monkeypatch.setattr(engines, "native_bf16", lambda: bf16)
    monkeypatch.setattr(engines, "openvino_installed", lambda: installed)
    assert engines.choose(setting, parity) == expected


def test_a_runtime_that_cannot_be_had_is_refused(monkeypatch):
    monkeypatch.setattr(engines, "openvino_installed", lambda: False)
    with pytest.raises(BundleError, match="not installed"):
        engines.choose("openvino", PASSED)
    with pytest.raises(BundleError, match="WILDSCAN_RUNTIME"):
        engines.choose("tensorrt", {})


def test_a_parity_record_counts_only_for_its_onnx_file_and_preprocessing(tiny_bundle, monkeypatch):
    import json

    from vision import bundle
    from vision.hashing import sha256_file

    monkeypatch.setattr(engines, "native_bf16", lambda: True)
    monkeypatch.setattr(engines, "openvino_installed", lambda: True)
    opened = []
    real_open = bundle.open_engine
    monkeypatch.setattr(
        bundle,
        "open_engine",
        lambda path, *how, **kw: opened.append(how) or real_open(path, "onnxruntime", "fp32", **kw),
    )
    onnx_path, json_path = bundle_paths(tiny_bundle)
    config = json.loads(json_path.read_text())
    record = {
        "passed": True,
        "model_sha256": sha256_file(onnx_path),
        "scoring": bundle.BundleConfig.from_dict(config).scoring_digest(),
    }
    for changed, expected in [
        ({}, ("openvino", "bf16")),
        ({"record": {"model_sha256": "0" * 64}}, ("onnxruntime", "fp32")),  # measured on another ONNX file
        ({"preprocess": {"interpolation": "linear"}}, ("onnxruntime", "fp32")),  # measured with another resize
        ({"thresholds": {"ivory": 0.9}}, ("openvino", "bf16")),  # thresholds do not change the scores
    ]:
        current = {**config, "runtime_parity": {engines.PARITY_KEY: {**record, **changed.get("record", {})}}}
        current["preprocess"] = {**config["preprocess"], **changed.get("preprocess", {})}
        current["thresholds"] = {**config["thresholds"], **changed.get("thresholds", {})}
        json_path.write_text(json.dumps(current))
        bundle.load_bundle(tiny_bundle, runtime="auto")
        assert opened.pop() == expected, changed


def real_batch(classifier: Classifier, photo) -> np.ndarray:
    labels = ("ivory_carving", "reef_coral_live", "ceramic_lookalike", "snake_live", "product_photo", "bird_wild")
    return np.stack([load_for_model(photo(label).read_bytes(), classifier.preprocess)[0] for label in labels])


def test_openvino_fp32_gives_the_onnxruntime_answers_on_real_photos(tiny_bundle, photo, monkeypatch):
    pytest.importorskip("openvino")
    reference = Classifier.from_path(tiny_bundle, galleries=None, runtime="onnxruntime")
    monkeypatch.setenv("WILDSCAN_RUNTIME", "openvino")
    monkeypatch.setattr(engines, "native_bf16", lambda: False)
    other = Classifier.from_path(tiny_bundle, galleries=None)  # the setting chooses
    assert other.model_info()["runtime"] == "openvino" and other.model_info()["precision"] == "fp32"
    batch = real_batch(reference, photo)
    expected, found = reference.run(batch)[0], other.run(batch)[0]
    assert np.abs(expected - found).max() < 1e-3
    names = [p.name for p in photo("ivory_carving").parent.glob("*.jpg")][:0]  # noqa: F841
    results = other.predict_files([photo("ivory_carving"), photo("snake_live")])
    assert [r.label for r in results] == [
        r.label for r in reference.predict_files([photo("ivory_carving"), photo("snake_live")])
    ]
    assert results[0].model["runtime"] == "openvino"  # every record says what ran it


def test_openvino_requests_are_per_thread(tiny_bundle, photo):
    pytest.importorskip("openvino")
    engine = engines.open_engine(bundle_paths(tiny_bundle)[0], "openvino", "fp32")
    batch = real_batch(Classifier.from_path(tiny_bundle, galleries=None), photo)
    expected = [engine.run([LOGITS], {INPUT: batch[i : i + 1]})[0] for i in range(len(batch))]
    found: dict[int, list] = {}

    def work(k: int) -> None:
        found[k] = [engine.run([LOGITS], {INPUT: batch[i : i + 1]})[0] for i in range(len(batch)) for _ in range(20)]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(4):
        for j, out in enumerate(found[k]):
            assert np.array_equal(out, expected[j // 20])


def test_bf16_keeps_the_top_label_on_real_photos_where_the_cpu_has_it(tiny_bundle, photo):
    pytest.importorskip("openvino")
    if not engines.native_bf16():
        pytest.skip("this CPU has no native bf16 (AVX512_BF16 or AMX)")
    reference = Classifier.from_path(tiny_bundle, galleries=None, runtime="onnxruntime")
    engine = engines.open_engine(bundle_paths(tiny_bundle)[0], "openvino", "bf16")
    assert engine.precision == "bf16"
    batch = real_batch(reference, photo)
    expected = reference.run(batch)[0]
    found = engine.run([LOGITS], {INPUT: batch})[0]
    assert (found.argmax(1) == expected.argmax(1)).all()
    assert np.abs(found - expected).max() < 0.1 * np.abs(expected).max()  # bf16 rounding, not another model


def test_a_scan_runs_its_workers_on_the_runtime_it_keys_its_results_on(tiny_bundle, photo, tmp_path, monkeypatch):
    pytest.importorskip("openvino")
    import sqlite3

    from serving.scan.api import scan
    from serving.scan.outputs import read_rows

    folder = tmp_path / "photos"
    folder.mkdir()
    for i, label in enumerate(("ivory_carving", "snake_live")):
        (folder / f"{i}.jpg").write_bytes(photo(label).read_bytes())
    monkeypatch.setenv("WILDSCAN_RUNTIME", "openvino-fp32")
    scan([str(folder)], [tmp_path / "r.csv"], db=tmp_path / "r.db", model=str(tiny_bundle), workers=1)
    rows = list(read_rows(tmp_path / "r.csv"))
    assert {(r["model_runtime"], r["model_precision"]) for r in rows} == {("openvino", "fp32")}  # every worker
    scorers = {s for (s,) in sqlite3.connect(tmp_path / "r.db").execute("SELECT DISTINCT scorer FROM results")}
    assert len(scorers) == 1 and scorers.pop().endswith("+openvino-fp32")  # kept apart from onnxruntime results
