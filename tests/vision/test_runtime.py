"""The ONNX runtime, bundle checks, decision rule and result record, on a tiny real ONNX model."""

import json

import numpy as np
import pytest
from tiny_model import TINY_LABELS, make_tiny_bundle, tiny_logits

from vision.bundle import load_bundle
from vision.errors import BundleError
from vision.hashing import sha256_file
from vision.preprocess import load_for_model
from vision.registry import create_model, list_models
from vision.runtime import Classifier

RECORD_FIELDS = {
    "path",
    "sha256",
    "pdq",
    "width",
    "height",
    "label",
    "score",
    "flagged",
    "possible",
    "scores",
    "model",
    "error",
    "matched_by",
    "gallery",
    "references",
    "head",
}  # the last four: reference galleries


@pytest.fixture()
def clf(tiny_bundle) -> Classifier:
    return create_model(tiny_bundle, max_batch=2)


@pytest.fixture()
def photos(photo):
    return [
        photo("ivory_carving"),
        photo("reef_coral_live"),
        photo("snake_live"),
        photo("marketplace_photo"),
        photo("orchid"),
    ]


def test_logits_equal_the_numpy_oracle(clf, photos):
    batch = np.stack([load_for_model(p.read_bytes(), clf.preprocess)[0] for p in photos])
    logits, embedding = clf.run(batch)
    np.testing.assert_allclose(logits, tiny_logits(batch), rtol=1e-4, atol=1e-5)
    assert embedding.shape == (len(photos), 3)


def test_records_carry_evidence(clf, photos, tiny_bundle):
    results = clf.predict_files(photos)
    assert [r.path for r in results] == [str(p) for p in photos]
    for r, p in zip(results, photos):
        d = r.to_dict()
        assert set(d) == RECORD_FIELDS
        assert d["error"] is None
        assert d["sha256"] == sha256_file(p)
        assert len(d["pdq"]) == 64
        assert d["model"] == {
            "name": "tiny.test",
            "version": "0.0.1",
            "sha256": sha256_file(tiny_bundle),
            "runtime": "onnxruntime",  # the tiny bundle has no bf16 parity record: never OpenVINO by default
            "precision": "fp32",
        }
        assert set(d["scores"]) == set(TINY_LABELS)
        assert abs(sum(d["scores"].values()) - 1) < 1e-4
        assert json.loads(json.dumps(d)) == d


def test_batching_does_not_change_results(clf, photos, tiny_bundle):
    together = clf.predict_files(photos)  # max_batch=2: three onnxruntime calls
    one_by_one = [create_model(tiny_bundle, max_batch=1).predict_files([p])[0] for p in photos]
    for a, b in zip(together, one_by_one):
        assert a.label == b.label
        assert a.scores == pytest.approx(b.scores, abs=1e-5)


def test_bad_inputs_become_error_records_in_place(clf, photos, tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo")
    missing = tmp_path / "missing.jpg"
    results = clf.predict_files([photos[0], empty, text, missing, photos[1]])
    assert [r.error["reason"] if r.error else None for r in results] == [
        None,
        "empty",
        "not_an_image",
        "unreadable",
        None,
    ]
    assert results[2].sha256 == sha256_file(text)  # the evidence hash is kept even for failures
    assert all(r.model["name"] == "tiny.test" for r in results)


def test_temperature_flattens_probabilities(tiny_bundle, photos):
    sharp = create_model(tiny_bundle)
    folder = tiny_bundle.parent.parent / "hot"
    hot = Classifier.from_path(make_tiny_bundle(folder, temperature=4.0))
    a, b = sharp.predict_files(photos[:1])[0], hot.predict_files(photos[:1])[0]
    assert max(b.scores.values()) < max(a.scores.values())
    assert max(a.scores, key=a.scores.get) == max(b.scores, key=b.scores.get)


def test_decision_rule(clf):
    _ivory, _coral, _ceramic, _goods = range(4)
    p = np.array([0.65, 0.05, 0.2, 0.1], np.float32)
    assert clf.decide(p) == ("ivory", pytest.approx(0.65), True)  # wildlife over its 0.6 threshold
    p = np.array([0.55, 0.05, 0.3, 0.1], np.float32)
    assert clf.decide(p)[1:] == (pytest.approx(0.55), False)  # top is ivory but under threshold
    p = np.array([0.2, 0.1, 0.35, 0.35], np.float32)
    assert clf.decide(p)[0] == "uncertain"  # nothing clears uncertain_below
    p = np.array([0.05, 0.05, 0.1, 0.8], np.float32)
    assert clf.decide(p) == ("goods_other", pytest.approx(0.8), False)


def test_bundle_json_is_checked_against_the_graph(tiny_bundle):
    meta = json.loads(tiny_bundle.with_suffix(".json").read_text())
    for change, words in [
        ({"labels": TINY_LABELS[:3]}, "logits"),
        ({"labels": ["ivory", "reef_coral", "ceramic_porcelain", "unicorn_horn"]}, "unknown category"),
        ({"preprocess": {**meta["preprocess"], "input_size": 64}}, "input shape"),
        ({"thresholds": {"orchid": 0.5}}, "thresholds"),
    ]:
        tiny_bundle.with_suffix(".json").write_text(json.dumps({**meta, **change}))
        with pytest.raises(BundleError, match=words):
            load_bundle(tiny_bundle)
    tiny_bundle.with_suffix(".json").unlink()
    with pytest.raises(BundleError, match="not found"):
        load_bundle(tiny_bundle)


def test_registry_lists_and_creates_by_name(tiny_bundle, monkeypatch):
    monkeypatch.setenv("WILDSCAN_MODELS_DIR", str(tiny_bundle.parent))
    assert list_models() == ["tiny.test"]
    assert create_model("tiny.test").bundle.name == "tiny.test"
    with pytest.raises(BundleError, match=r"unknown model 'nope'.*tiny\.test"):
        create_model("nope")
