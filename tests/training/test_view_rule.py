"""training.view_rule: the declared selection rule on known rows, and a rule chosen on the
shipped ONNX file's views of real photos is exactly what the runtime applies once written."""

from __future__ import annotations

import numpy as np
import pytest

from training import view_rule
from training.card import view_rule_section
from training.rule import ovr_thresholds
from vision.bundle import bundle_paths
from vision.registry import create_model, resolve_model
from vision.runtime import Classifier
from vision.taxonomy import get_category


def row(name: str, f1: float, not_ivory: float, recall: float, false: float = 0.05, listing_false=None) -> dict:
    views = {v: {"flag_recall": recall, "false_flag_rate": false} for v in ("clean", "ad", "listing")}
    views["listing"]["false_flag_rate"] = false if listing_false is None else listing_false
    measured = {"dev_ads_cv": {"f1": f1}, "dev_ads_not_ivory_flagged": not_ivory, **views}
    return {"rule": {"variant": name}, "measured": measured}


def test_select_follows_the_declared_rule():
    rows = [
        row("shipped", 0.80, 0.04, 0.50),
        row("more recall, too many false flags on dev-ads", 0.85, 0.06, 0.90),
        row("more recall, lower dev-ads F1", 0.79, 0.04, 0.80),
        row("more recall, validation false flags up a point", 0.82, 0.04, 0.70, false=0.06),
        row("more recall, listing-scene false flags up a point", 0.82, 0.04, 0.65, listing_false=0.06),
        row("more recall within every limit", 0.80, 0.05, 0.60, false=0.055),
        row("less recall within every limit", 0.81, 0.03, 0.55),
    ]
    assert view_rule.select(rows)["rule"]["variant"] == "more recall within every limit"
    assert view_rule.select(rows[:5])["rule"]["variant"] == "shipped"  # none beats it within the limits
    rows[0]["measured"]["dev_ads_not_ivory_flagged"] = 0.09
    assert view_rule.select(rows[:1])["rule"]["variant"] == "shipped"  # the shipped rule is kept unless beaten


def test_a_shared_group_counts_any_of_its_photos_a_hit():
    labels = ["ivory", "snake", "lizard", "goods_other"]
    targets = np.array([0, 1, 2, 3])
    y = view_rule.hits(targets, labels, ("snake", "lizard"))
    assert y.tolist() == [[1, 0, 0, 0], [0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 1]]
    assert view_rule.hits(targets, labels).tolist() == np.eye(4).tolist()
    for bad in (("snake",), ("snake", "goods_other"), ("snake", "snek")):  # one label, not wildlife, unknown
        with pytest.raises(ValueError):
            view_rule.hits(targets, labels, bad)

    # ranked by the snake score: snake, lizard, lizard, snake, other goods, lizard
    targets = np.array([1, 2, 2, 1, 3, 2])
    probs = np.zeros((6, 4))
    probs[:, 1] = [0.95, 0.9, 0.85, 0.8, 0.3, 0.2]
    wildlife = np.array([True, True, True, False])
    alone = ovr_thresholds(probs, view_rule.hits(targets, labels), labels, wildlife, target_precision=0.9)
    grouped = ovr_thresholds(
        probs, view_rule.hits(targets, labels, ("snake", "lizard")), labels, wildlife, target_precision=0.9
    )
    assert alone["snake"] == 0.95  # below it the lizards count against the snake label
    assert grouped["snake"] == 0.8  # as a reptile flag every photo down to the last snake is right


@pytest.fixture(scope="module")
def evidence():
    """A quick evidence set: 2 validation photos per class in every view, 40 real sale posts."""
    return view_rule.gather(create_model(galleries=None), limit_per_class=2, ads_limit=40, cache=None)


def test_thresholds_hold_under_the_cascade_they_ship_with(evidence):
    """Chosen again on the scores the final rule's cascade gives, the best-view thresholds come
    out the same (the fixed point), and the crops stay within the cost budget."""
    variant = view_rule.SHIPPED
    rule = view_rule.choose(evidence, variant)
    assert rule["converged"]
    labels = evidence.labels
    wildlife, best, triggers = view_rule.masks(labels, variant)
    thr = view_rule.threshold_array(labels, rule["thresholds"])
    pv = np.concatenate([evidence.val[v] for v in ("clean", "ad", "listing")])
    y = np.tile(view_rule.hits(evidence.val_targets, labels, variant.shared), (3, 1))
    scores, run = view_rule.scores_of(pv, best, wildlife, triggers, thr, rule["crops_from"])
    again = ovr_thresholds(scores, y, labels, wildlife)
    for lab in ("snake", "lizard", "crocodilian", "turtle_tortoise"):
        assert rule["thresholds"][lab] == again[lab], lab
    assert run.mean() == rule["val_crop_fraction"] <= 0.2
    assert rule["crops_from"] >= variant.crops_from_min


def test_the_written_rule_is_what_the_runtime_applies(evidence, tmp_path, shared_data):
    shipped_onnx, shipped_json = bundle_paths(resolve_model(None))
    onnx = tmp_path / shipped_onnx.name
    onnx.symlink_to(shipped_onnx)
    onnx.with_suffix(".json").write_text(shipped_json.read_text())
    rows = []
    for variant in (view_rule.OBJECTS_ONLY, view_rule.REPTILES_AT_BEST):  # the second: reptiles at their best crop
        rule = view_rule.choose(evidence, variant)
        rows.append({"rule": rule, "measured": view_rule.measure(evidence, rule)})
    assert "snake" in rows[1]["rule"]["object_labels"] and "crocodilian" not in rows[1]["rule"]["crop_triggers"]
    view_rule.write(onnx, rows, "9.9.9", chosen=rows[1])  # on so few photos either may be selected

    written = Classifier.from_path(onnx, galleries=None)
    rule = rows[1]["rule"]
    assert written.config.version == "9.9.9" and written.config.object_labels == rule["object_labels"]
    assert written.config.crop_triggers == rule["crop_triggers"] and written.config.thresholds == rule["thresholds"]
    assert written.config.training_data["view_rule"]["chosen"] == rule["variant"]
    # the JSON and the card say when the declared rule did not choose
    for chosen, by_hand in ((None, False), (next(r for r in rows if r is not view_rule.select(rows)), True)):
        view_rule.write(onnx, rows, "9.9.9", chosen=chosen)
        record = Classifier.from_path(onnx, galleries=None).config.training_data["view_rule"]
        assert record["chosen"] == (chosen or view_rule.select(rows))["rule"]["variant"]
        assert ("by hand" in record["how"]) == by_hand
        assert record["shared"] == (chosen or view_rule.select(rows))["rule"]["shared"]
        assert ("by hand with `--variant`" in "\n".join(view_rule_section(record))) == by_hand
    view_rule.write(onnx, rows, "9.9.9", chosen=rows[1])
    written = Classifier.from_path(onnx, galleries=None)

    # the real sale posts through the runtime (decode, cascade, best view) score as the rule was judged
    ads = [ex for ex in view_rule.devads.examples() if ex.cls in ("ivory", "not_ivory")][:40]
    results = written.predict_files([ex.file() for ex in ads])
    got = np.array([[r.scores[lab] for lab in written.labels] for r in results])
    wildlife = np.array([get_category(lab).is_wildlife for lab in written.labels])
    best = np.array([lab in written.config.object_labels for lab in written.labels])
    triggers = np.array([lab in written.config.crop_triggers for lab in written.labels])
    thr = view_rule.threshold_array(written.labels, written.config.thresholds)
    expected, run = view_rule.scores_of(evidence.ads, best, wildlife, triggers, thr, rule["crops_from"])
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert 0 < run.sum() < len(ads)  # the cascade ran crops for some posts, not all
    assert [r.flagged for r in results] == list((wildlife & (expected >= thr)).any(1))
