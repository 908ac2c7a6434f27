"""The shipped model: known real test photos get their known labels, through every path."""

import json

import pytest

from vision.bundle import load_bundle
from vision.cli import main
from vision.hashing import sha256_file
from vision.registry import DEFAULT_MODEL, create_model, list_models
from vision.taxonomy import get_category

# Test-split photos (never trained on), chosen across wildlife classes and their
# look-alikes; fine label and index into the manifest rows of that label.
EXPECTED = json.loads((__import__("pathlib").Path(__file__).parent / "shipped_expectations.json").read_text())


@pytest.fixture(scope="module")
def shipped():
    assert DEFAULT_MODEL in list_models(), "the shipped bundle is missing from models/"
    return create_model(galleries=None)


def test_bundle_is_consistent_and_documented(shipped, shipped_model_dir):
    bundle = load_bundle(shipped_model_dir / DEFAULT_MODEL)
    assert bundle.sha256 == sha256_file(shipped_model_dir / f"{DEFAULT_MODEL}.onnx")
    cfg = bundle.config
    assert cfg.metrics["macro_f1_wildlife"]["clean"] > 0.85
    assert set(cfg.thresholds) == {lab for lab in cfg.labels if get_category(lab).is_wildlife}
    card = (shipped_model_dir / "MODEL_CARD.md").read_text()
    assert bundle.sha256 in card and cfg.version in card
    from training.evaluate import markdown_report

    metrics = json.loads((shipped_model_dir / f"{DEFAULT_MODEL}.eval" / "metrics.json").read_text())
    assert metrics["model"]["sha256"] == bundle.sha256
    from training.card import proxy_rows

    assert markdown_report(metrics) in card  # the card's numbers are the evaluation's
    assert "\n".join(proxy_rows(metrics)) in card and "by_kind" in metrics["listing"]


def test_known_photos_get_their_known_labels(shipped, shared_data):
    paths = [shared_data / row["path"] for row in EXPECTED]
    results = shipped.predict_files(paths)
    wrong = [
        (row["path"], row["label"], r.label, r.score) for row, r in zip(EXPECTED, results) if r.label != row["label"]
    ]
    assert not wrong
    for row, r in zip(EXPECTED, results):
        # wildlife is flagged, or (model 2) at least shown as a possible match of its own class
        assert (r.flagged or r.possible == row["label"]) == get_category(row["label"]).is_wildlife, row
        assert r.sha256 == row["sha256"]
    assert sum(r.flagged for r in results) >= sum(get_category(row["label"]).is_wildlife for row in EXPECTED) - 1


def test_lookalikes_are_not_flagged(shipped, shared_data):
    lookalikes = [row for row in EXPECTED if get_category(row["label"]).group != "wildlife"]
    assert len(lookalikes) >= 4
    results = shipped.predict_files([shared_data / row["path"] for row in lookalikes])
    assert not any(r.flagged for r in results)


def test_readme_classify_command_prints_a_valid_record(shared_data, capsys):
    row = EXPECTED[0]
    assert main(["classify", str(shared_data / row["path"]), "--no-galleries"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["label"] == row["label"] and record["model"]["name"] == DEFAULT_MODEL
    assert record["model"]["sha256"] and record["error"] is None


def test_the_card_is_what_the_bundle_and_the_notes_generate(tmp_path, shipped_model_dir):
    """MODEL_CARD.md is written by training.card from the bundle JSON, its evaluation and
    training/model_card_notes.md: a hand edit, or a JSON changed without the card, fails here."""
    import shutil

    from training.card import write_model_card

    onnx = tmp_path / f"{DEFAULT_MODEL}.onnx"
    onnx.symlink_to(shipped_model_dir / onnx.name)
    shutil.copy(shipped_model_dir / f"{DEFAULT_MODEL}.json", tmp_path)
    shutil.copytree(shipped_model_dir / f"{DEFAULT_MODEL}.eval", tmp_path / f"{DEFAULT_MODEL}.eval")
    if (shipped_model_dir / "GALLERY_EVAL.md").exists():
        shutil.copy(shipped_model_dir / "GALLERY_EVAL.md", tmp_path)
    assert write_model_card(onnx).read_text() == (shipped_model_dir / "MODEL_CARD.md").read_text()
