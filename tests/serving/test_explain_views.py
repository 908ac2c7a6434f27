"""The heatmap explains the model input that gave the result its score: for a label read at
its best view, the crop the cascade ran (tiny model, a real photo in one corner of a frame)."""

import numpy as np
import pytest
from tiny_model import CASCADE_CROPS, TINY_LABELS, framed_photo, make_cascade_bundle, tiny_logits

from serving.explain import explain
from vision.preprocess import load_for_model
from vision.runtime import Classifier, prepare_image

CROPS = CASCADE_CROPS
IVORY = TINY_LABELS.index("ivory")


@pytest.mark.parametrize("crops_from", [0.0, 0.9999])
def test_a_label_read_at_its_best_view_is_explained_on_that_view(tmp_path, photo, crops_from):
    classifier = Classifier.from_path(make_cascade_bundle(tmp_path, crops_from), galleries=None)
    data = framed_photo(photo("ivory_carving"), 240, (120, 120), (25, 25, 25))  # bottom-right quarter
    scores = 1 / (1 + np.exp(-tiny_logits(load_for_model(data, classifier.preprocess)[0])))  # V x C oracle
    crops_run = crops_from == 0.0
    expected = int(np.argmax(scores[:, IVORY])) if crops_run else 0
    assert (expected != 0) == crops_run  # the crop holding the carving scores it higher than the whole

    prepared = prepare_image("frame.png", data, classifier.preprocess)  # whole photo now, crops lazily
    heat = explain(classifier, prepared.tensor, "ivory", width=240, height=240, grid=4, source=prepared.source)
    assert heat.view == expected
    assert heat.region == (CROPS[expected - 1] if expected else (0.0, 0.0, 1.0, 1.0))
    [result] = classifier.predict([("frame.png", data)])
    assert heat.base_score == pytest.approx(result.scores["ivory"], abs=1e-5)  # the score the officer sees
    eager = explain(classifier, load_for_model(data, classifier.preprocess)[0], "ivory", width=240, height=240, grid=4)
    assert (eager.view, eager.grid) == (heat.view, heat.grid)
