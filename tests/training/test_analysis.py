"""training.analysis: known answers on synthetic logits, the logit cache, real photos, and a
real (tiny-model) scan read back in every output format."""

from __future__ import annotations

import json

import numpy as np
import pytest

from training import analysis, error_cases
from training.data import Example, load_split
from training.evaluate import evaluate_split, metrics_from_logits
from vision import tables
from vision.runtime import Classifier

# Tiny model labels: ivory, reef_coral (wildlife; thresholds 0.6), ceramic_porcelain, goods_other.
# Calibrated probabilities per photo, and the true class.
CASES = [
    ("ivory", [0.90, 0.04, 0.04, 0.02]),  # 0 right, flagged
    ("ivory", [0.70, 0.10, 0.15, 0.05]),  # 1 right, flagged
    ("ivory", [0.30, 0.05, 0.60, 0.05]),  # 2 called ceramic, missed
    ("ivory", [0.45, 0.05, 0.10, 0.40]),  # 3 right but below threshold: missed
    ("ceramic_porcelain", [0.80, 0.05, 0.10, 0.05]),  # 4 called ivory, flagged
    ("ceramic_porcelain", [0.62, 0.03, 0.33, 0.02]),  # 5 called ivory, flagged
    ("ceramic_porcelain", [0.10, 0.05, 0.80, 0.05]),  # 6 right
    ("ceramic_porcelain", [0.35, 0.05, 0.30, 0.30]),  # 7 called ivory, 'uncertain', not flagged
    ("reef_coral", [0.05, 0.85, 0.05, 0.05]),  # 8 right, flagged
    ("reef_coral", [0.05, 0.20, 0.05, 0.70]),  # 9 called goods, missed
    ("goods_other", [0.05, 0.05, 0.10, 0.80]),  # 10 right
    ("goods_other", [0.05, 0.65, 0.05, 0.25]),  # 11 called reef coral, flagged
]
TEMPERATURE = 2.0


@pytest.fixture()
def classifier(tmp_path) -> Classifier:
    from tiny_model import make_tiny_bundle

    return Classifier.from_path(make_tiny_bundle(tmp_path / "models", temperature=TEMPERATURE), galleries=None)


@pytest.fixture()
def ev(classifier) -> analysis.Evaluation:
    """An evaluation whose calibrated probabilities are exactly ``CASES`` in both views."""
    labels = classifier.labels
    examples = [
        Example(f"{i:064x}", f"synthetic/{i}.jpg", cls, cls, "test", i, "0" * 64, "synthetic")
        for i, (cls, _) in enumerate(CASES)
    ]
    targets = np.array([labels.index(cls) for cls, _ in CASES])
    logits = TEMPERATURE * np.log(np.array([p for _, p in CASES]))
    by_view = {"clean": logits, "ad": logits[:, ::-1].copy()}
    return analysis.Evaluation(
        classifier, "test", examples, targets, by_view, metrics_from_logits(classifier, "test", by_view, targets)
    )


def indices(cases: list[error_cases.Case]) -> list[int]:
    return [int(c.example.path.split("/")[1].split(".")[0]) for c in cases]


# --- evaluation tables and curves ---------------------------------------------------------------


def test_decisions_follow_the_rule(ev):
    labels = [d[0] for d in ev.decisions("clean")]
    assert labels[3] == "ivory" and labels[7] == "uncertain"
    assert np.flatnonzero(ev.flagged("clean")).tolist() == [0, 1, 4, 5, 8, 11]


def test_per_class_and_summary_tables_show_the_metrics(ev):
    table = analysis.per_class_table(ev.metrics)
    ivory = table.records()[0]
    assert ivory["class"] == "ivory" and ivory["support"] == 4 and ivory["threshold"] == 0.6
    assert ivory["P clean"] == pytest.approx(3 / 6) and ivory["R clean"] == pytest.approx(3 / 4)
    summary = {r["metric"]: r for r in analysis.summary_table(ev.metrics).records()}
    flag = summary["flag precision (wildlife vs not)"]
    assert flag["clean"] == pytest.approx(3 / 6)  # flagged 0, 1, 4, 5, 8, 11; wildlife among them 0, 1, 8
    assert summary["flag recall"]["clean"] == pytest.approx(3 / 6)  # of 0, 1, 2, 3, 8, 9


# The kind of each case (the manifest's fine label), for the flags by kind.
KINDS = ["ivory_carving"] * 4 + ["ceramic_lookalike"] * 2 + ["porcelain_figurine"] * 2
KINDS += ["reef_coral_live"] * 2 + ["marketplace_photo"] * 2


def test_flags_by_kind_known_answers(tmp_path, ev):
    from tiny_model import make_tiny_bundle

    classifier = Classifier.from_path(
        make_tiny_bundle(tmp_path / "possible", temperature=TEMPERATURE, possible_ratio=0.5),
        galleries=None,
    )
    m = metrics_from_logits(classifier, "test", ev.logits, ev.targets, KINDS)
    clean = m["clean"]["by_kind"]
    assert clean["ivory_carving"] == {
        "class": "ivory",
        "photos": 4,
        "flagged": 2,
        "possible": 2,
        "flagged_as": {"ivory": 2},
    }
    assert clean["ceramic_lookalike"]["flagged_as"] == {"ivory": 2}  # cases 4 and 5
    assert clean["porcelain_figurine"] == {  # case 7: ivory 0.35 is at least half its threshold 0.6
        "class": "ceramic_porcelain",
        "photos": 2,
        "flagged": 0,
        "possible": 1,
        "flagged_as": {},
    }
    assert clean["marketplace_photo"]["flagged_as"] == {"reef_coral": 1}  # case 11
    rows = analysis.kind_table(m).records()
    # ordinary and look-alike kinds first, most flagged first; then wildlife, least flagged first
    assert [r["kind"] for r in rows] == [
        "ceramic_lookalike",
        "marketplace_photo",
        "porcelain_figurine",
        "ivory_carving",
        "reef_coral_live",
    ]
    assert (
        rows[0]["flagged clean"] == 1.0 and rows[1]["flagged clean"] == 0.5 and rows[3]["possible match clean"] == 0.5
    )
    assert "by_kind" not in ev.metrics["clean"]  # only when kinds are given
    from training.card import proxy_rows

    home = next(line for line in proxy_rows(m) if line.startswith("| home & garden"))
    assert "| 2 `marketplace_photo` | 50.0% / " in home and home.endswith("| no |")  # case 11 flagged in clean
    assert not any(line.startswith("| backyard snakes") for line in proxy_rows(m))  # no snake photos


def test_confusion_matrix_rows_sum_to_one(ev):
    cm = analysis.confusion_matrix(ev.metrics, "clean")
    assert np.allclose(cm.sum(1), 1.0)
    assert cm[2, 0] == pytest.approx(3 / 4)  # three of four ceramics called ivory
    assert analysis.confusion_matrix(ev.metrics, "clean", normalize=False)[2, 0] == 3


def test_threshold_tradeoff_known_answers(ev):
    rows = {r["class"]: r for r in analysis.threshold_tradeoff(ev, "clean").records()}
    ivory = rows["ivory"]
    # p(ivory) descending: .90+ .80- .70+ .62- .45+ ...: only the top photo keeps precision >= 0.9
    assert ivory["recall at P≥0.90"] == pytest.approx(0.25) and ivory["threshold at P≥0.90"] == pytest.approx(0.9)
    assert ivory["P at threshold"] == pytest.approx(0.5) and ivory["R at threshold"] == pytest.approx(0.5)
    assert rows["reef_coral"]["recall at P≥0.99"] == pytest.approx(0.5)
    assert rows["any wildlife (flag score)"]["recall at P≥0.95"] == pytest.approx(2 / 6)
    for lab, by_target in ev.metrics["clean"]["recall_at_precision"].items():
        for t, recall in by_target.items():
            assert rows[lab][f"recall at P≥{float(t):.2f}"] == recall


def test_curves_and_reliability_match_the_metrics(ev):
    flag = analysis.flag_curve(ev, "clean")
    assert flag.positives == 6
    assert flag.average_precision == pytest.approx(ev.metrics["clean"]["binary"]["average_precision"])
    assert analysis.flag_operating_point(ev, "clean") == (
        ev.metrics["clean"]["flag"]["precision"],
        ev.metrics["clean"]["flag"]["recall"],
    )
    curves = analysis.pr_curves(ev, "clean")
    assert set(curves) == {"ivory", "reef_coral"} and curves["ivory"].recall[-1] == 1.0
    rel = analysis.reliability_data(ev, "clean")
    assert rel["ece_before"] == ev.metrics["clean"]["ece_before_temperature"]
    assert rel["ece_after"] == ev.metrics["clean"]["ece_after_temperature"]
    assert rel["ece_before"] != pytest.approx(rel["ece_after"])  # temperature 2 changes confidences
    assert sum(rel["after"]["count"]) == len(CASES)


def test_compare_metrics_finds_every_difference(ev):
    m = {**ev.metrics, "_logits": ev.logits}
    reference = json.loads(json.dumps(ev.metrics))
    assert analysis.compare_metrics(m, reference) == []
    reference["clean"]["macro_f1_all"] += 1e-12
    assert analysis.compare_metrics(m, reference) == []
    reference["clean"]["macro_f1_all"] += 1e-6
    reference["ad"]["per_class"]["ivory"]["support"] = 5
    del reference["temperature"]
    reference["labels"] = reference["labels"][:3]
    problems = analysis.compare_metrics(m, reference)
    assert [p.split(":")[0] for p in problems] == [
        "ad.per_class.ivory.support",
        "clean.macro_f1_all",
        "labels",
        "temperature",
    ]
    assert "only in the computed" in problems[-1]


def test_check_reference(ev, tmp_path):
    assert analysis.check_reference(ev, None).startswith("not checked")
    path = analysis.reference_metrics_path(ev.classifier)
    assert path.name == "metrics.json" and path.parent.name == "tiny.test.eval"
    with pytest.raises(FileNotFoundError, match="set the reference to None"):
        analysis.check_reference(ev)
    path.parent.mkdir()
    path.write_text(json.dumps(ev.metrics))
    assert analysis.check_reference(ev).startswith("every number equals")
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**ev.metrics, "split": "val"}))
    with pytest.raises(analysis.MetricsMismatch, match="1 numbers differ"):
        analysis.check_reference(ev, other)
    path.write_text(json.dumps({**ev.metrics, "split": "val"}))
    assert "is for split 'val'" in analysis.check_reference(ev)  # the card covers another split


# --- errors ------------------------------------------------------------------------------------


def test_class_errors_are_worst_first(ev):
    assert indices(error_cases.class_errors(ev, "ivory", "fp")) == [4, 5, 7]
    assert indices(error_cases.class_errors(ev, "ivory", "fn")) == [2]
    assert indices(error_cases.class_errors(ev, "ceramic_porcelain", "fn")) == [4, 7, 5]
    assert indices(error_cases.class_errors(ev, "ivory", "fp", limit=1)) == [4]
    case = error_cases.class_errors(ev, "ivory", "fp")[0]
    assert (case.true, case.predicted, case.flagged, case.decision) == ("ceramic_porcelain", "ivory", True, "ivory")
    assert case.score == pytest.approx(0.8) and case.true_score == pytest.approx(0.1)
    assert "FLAGGED" in case.caption() and not case.correct
    with pytest.raises(ValueError, match="no class 'rhino_horn'"):
        error_cases.class_errors(ev, "rhino_horn")
    with pytest.raises(ValueError, match="'fp' or 'fn'"):
        error_cases.class_errors(ev, "ivory", "both")


def test_flag_errors(ev):
    assert indices(error_cases.flag_errors(ev, "false_flag")) == [4, 11, 5]
    assert indices(error_cases.flag_errors(ev, "missed")) == [9, 2, 3]  # wildlife score .25, .35, .50


def test_error_table(ev):
    rows = {r["class"]: r for r in error_cases.error_table(ev).records()}
    assert rows["ivory"]["false negatives"] == 1 and rows["ivory"]["called instead"] == "ceramic_porcelain 1"
    assert rows["ivory"]["false positives"] == 3 and rows["ivory"]["true class of those"] == "ceramic_porcelain 3"


def test_lookalike_confusions(ev):
    table = error_cases.lookalike_confusions(ev, "clean")
    assert table.rows == [["ceramic_porcelain", "ivory", 4, 3, 2, 4, 1]]  # reef coral never confused with ceramic
    iv = ev.metrics["clean"]["ivory_vs_ceramic"]
    assert (iv["ceramic_called_ivory"], iv["ivory_called_ceramic"]) == (3, 1)
    summary = error_cases.lookalike_summary(ev, "clean").records()
    assert summary == [
        {"look-alike": "ceramic_porcelain", "photos": 4, "called wildlife": 3, "flagged": 2, "flag rate": 0.5}
    ]
    assert summary[0]["flagged"] == iv["ceramic_flagged"]
    cases = error_cases.lookalike_cases(ev, "ceramic_porcelain", "ivory")
    assert indices(cases["lookalike_as_wildlife"]) == [4, 5, 7]
    assert indices(cases["wildlife_as_lookalike"]) == [2]
    assert indices(error_cases.lookalike_cases(ev, "ceramic_porcelain", ["reef_coral"])["lookalike_as_wildlife"]) == []


# --- tables ------------------------------------------------------------------------------------


def test_table_renders():
    t = tables.Table(["name", "value", "none"], [["<a>", 0.12345, None], ["b", float("nan"), 2]], "title")
    assert t.to_markdown().splitlines()[2:] == [
        "| name | value | none |",
        "|---|---|---|",
        "| <a> | 0.123 |  |",
        "| b | – | 2 |",
    ]
    assert "&lt;a&gt;" in t._repr_html_() and "<caption>title</caption>" in t._repr_html_()
    assert t.column("none") == [None, 2]
    with pytest.raises(KeyError, match="columns are name, value, none"):
        t.column("missing")


# --- real photos: the views, and the cache ----------------------------------------------------------


def test_view_image_shows_what_the_model_saw(shared_data):
    example = next(ex for ex in load_split("test") if ex.cls == "ivory")
    clean = error_cases.view_image(example, "clean")
    ad = error_cases.view_image(example, "ad")
    assert clean.mode == "RGB" and ad.mode == "RGB"
    assert ad.tobytes() == error_cases.view_image(example, "ad").tobytes()  # seeded per photo
    assert ad.size != clean.size or ad.tobytes() != clean.tobytes()
    assert max(error_cases.view_image(example, "clean", size=64).size) <= 64
    with pytest.raises(ValueError, match="unknown view"):
        error_cases.view_image(example, "night")


def test_ad_view_does_not_depend_on_global_random_state(shared_data, monkeypatch):
    """The published ad-style numbers are reproducible only if the view is: Pillow's
    effect_noise draws from C rand(), which libzmq reseeds inside every Jupyter kernel."""
    import random

    from PIL import Image

    from training.augment import eval_ad_view

    img = error_cases.view_image(next(ex for ex in load_split("test") if ex.cls == "ivory"), "clean")
    keys = [f"k{i}" for i in range(24)]
    before = [eval_ad_view(img, k).tobytes() for k in keys]
    random.seed(1), np.random.seed(1), Image.effect_noise((16, 16), 30)  # disturb every global generator

    def forbidden(*args):
        raise AssertionError("Image.effect_noise is not seeded by the view's key")

    monkeypatch.setattr(Image, "effect_noise", forbidden)
    assert [eval_ad_view(img, k).tobytes() for k in keys] == before


def test_evaluate_caches_logits_and_equals_evaluate_split(classifier, tmp_path, monkeypatch):
    first = analysis.evaluate(classifier, "test", limit_per_class=2, cache_dir=tmp_path)
    assert len(first.examples) == 8 and {ex.cls for ex in first.examples} == set(classifier.labels)
    assert len(list(tmp_path.glob("*.npz"))) == 1
    direct = evaluate_split(classifier, "test", limit_per_class=2)
    assert analysis.compare_metrics(first.metrics, json.loads(json.dumps(direct)), tol=0) == []

    def no_inference(*args, **kwargs):
        raise AssertionError("logits were recomputed despite the cache")

    monkeypatch.setattr(analysis, "predict_logits", no_inference)
    again = analysis.evaluate(classifier, "test", limit_per_class=2, cache_dir=tmp_path)
    assert all(np.array_equal(again.logits[v], first.logits[v]) for v in first.logits)
    assert again.metrics == first.metrics
    with pytest.raises(AssertionError, match="recomputed"):  # another subset: another key
        analysis.evaluate(classifier, "test", limit_per_class=1, cache_dir=tmp_path)
    with pytest.raises(AssertionError, match="recomputed"):
        analysis.evaluate(classifier, "test", limit_per_class=2, cache_dir=tmp_path, refresh=True)


def test_cached_logits_for_other_photos_are_ignored(classifier, tmp_path):
    examples, _ = analysis.split_examples(classifier, "test", 1)
    path = analysis.write_logits(tmp_path / "x.npz", {view: np.zeros((4, 4)) for view in analysis.VIEWS}, examples)
    assert analysis.read_logits(path, examples, classifier.labels) is not None
    assert analysis.read_logits(path, examples[::-1], classifier.labels) is None
    assert analysis.read_logits(path, examples, classifier.labels[:3]) is None


# --- scan results ---------------------------------------------------------------------------------
