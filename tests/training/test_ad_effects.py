"""training.ad_effects: each ad-style effect alone, seeded per photo, through the bundle's own
preprocessing; the CLI prints one row per view."""

from __future__ import annotations

import numpy as np
import pytest

from training import ad_effects, data
from vision.runtime import Classifier


def test_each_effect_changes_the_photo_the_same_way_every_time(shipped_model_dir):
    classifier = Classifier.from_path(shipped_model_dir / "efficientnet_lite0.wildtrade_v1.onnx", galleries=None)
    ex = data.load_split("val")[0]
    raw = ex.file().read_bytes()
    clean = ad_effects.view_inputs(classifier, raw, ex.sha256, "clean")
    assert clean.shape == classifier.preprocess.input_shape()
    for effect in ["eval_ad", *ad_effects.EFFECTS]:
        once = ad_effects.view_inputs(classifier, raw, ex.sha256, effect)
        assert once.shape == clean.shape and np.abs(once - clean).mean() > 0.01, effect
        assert np.array_equal(once, ad_effects.view_inputs(classifier, raw, ex.sha256, effect)), effect


def test_cli_scores_the_views_asked_for(capsys):
    assert ad_effects.main(["--effects", "clean,border", "--limit-per-class", "1"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert rows[0].startswith(f"| view (val, {len(data.classes())} photos)")
    assert [row.split(" | ")[0] for row in rows[1:]] == ["| clean photo", "| smaller, on cloth"]
    assert all(0 <= float(value) <= 1 for row in rows[1:] for value in row.split(" | ")[1:4])


def test_cli_refuses_an_unknown_effect_before_scoring(capsys):
    with pytest.raises(SystemExit) as exit_:
        ad_effects.main(["--effects", "clean,blurr"])
    assert exit_.value.code == 2 and "unknown effect blurr" in capsys.readouterr().err
