"""Model 2's decision rule: one-vs-rest scores, whole photo + crops with a cascade, the
"possible match" band. Checked against a numpy oracle of the tiny model on real pixels."""

import numpy as np
import pytest
from tiny_model import (
    CASCADE_CROPS,
    TINY_LABELS,
    framed_photo,
    make_cascade_bundle,
    make_tiny_bundle,
    tiny_logits,
)

from vision.bundle import BundleConfig
from vision.errors import BundleError
from vision.preprocess import PreprocessConfig, load_for_model, to_model_views
from vision.runtime import Classifier

CROPS = CASCADE_CROPS
IVORY, CORAL = TINY_LABELS.index("ivory"), TINY_LABELS.index("reef_coral")


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def corner_photo(photo) -> bytes:
    """A dark listing-like frame with a real ivory photo in its top-left quarter."""
    return framed_photo(photo("ivory_carving"), 256, (0, 0), (20, 20, 30))


def test_views_are_the_whole_photo_and_each_crop(photo):
    cfg = PreprocessConfig(input_size=32, crops=CROPS)
    tensor, decoded = load_for_model(corner_photo(photo), cfg)
    assert tensor.shape == (3, 3, 32, 32) == cfg.input_shape()
    img = decoded.image
    expected = to_model_views(img.crop((0, 0, img.width // 2, img.height // 2)), PreprocessConfig(input_size=32))
    assert np.allclose(tensor[1], expected, atol=1e-6)
    assert tensor[1].mean() > tensor[0].mean() > tensor[2].mean()  # the bright object is in crop 1 only
    assert cfg.decode_size == 64  # a half-size crop still gets the model's resolution
    with pytest.raises(ValueError, match="crop"):
        PreprocessConfig(crops=((0.5, 0.0, 0.4, 1.0),))


@pytest.mark.parametrize("crops_from, crops_run", [(0.0, True), (0.9999, False)])
def test_object_scores_take_the_best_view_when_the_cascade_runs_crops(tmp_path, photo, crops_from, crops_run):
    clf = Classifier.from_path(make_cascade_bundle(tmp_path, crops_from), galleries=None)
    data = corner_photo(photo)
    tensor = load_for_model(data, clf.preprocess)[0]
    [result] = clf.predict([("corner.png", data)])
    views = sigmoid(tiny_logits(tensor))  # V x C, the oracle
    ivory = views[:, IVORY].max() if crops_run else views[0, IVORY]
    assert result.scores["ivory"] == pytest.approx(ivory, abs=1e-5)
    assert result.scores["reef_coral"] == pytest.approx(views[0, CORAL], abs=1e-5)  # not an object: whole photo
    logits, _ = clf.run(tensor[None])
    assert np.isnan(logits[0, 1:]).all() != crops_run  # crops not needed are never computed


@pytest.mark.parametrize("triggers, crops_run", [(["reef_coral"], True), (["ivory"], False)])
def test_crop_triggers_start_the_cascade_for_every_best_view_label(tmp_path, photo, triggers, crops_run):
    """A label can take its best view without starting the cascade (``crop_triggers``): here
    both labels read their best view, and only the trigger label's whole-photo score decides
    whether the crops run."""
    data = corner_photo(photo)
    tensor = load_for_model(data, PreprocessConfig(input_size=32, crops=CROPS))[0]
    views = sigmoid(tiny_logits(tensor))  # V x C, the oracle
    # the cascade starts between the two whole-photo scores: coral reaches it, ivory does not
    crops_from = float(views[0, IVORY] + views[0, CORAL]) / 2
    assert views[0, IVORY] < crops_from <= views[0, CORAL]
    path = make_cascade_bundle(tmp_path, crops_from, object_labels=["ivory", "reef_coral"], crop_triggers=triggers)
    [result] = Classifier.from_path(path, galleries=None).predict([("corner.png", data)])
    best = views.max(0) if crops_run else views[0]
    assert result.scores["ivory"] == pytest.approx(best[IVORY], abs=1e-5)
    assert result.scores["reef_coral"] == pytest.approx(best[CORAL], abs=1e-5)
    assert views[1:, IVORY].max() > views[0, IVORY]  # the crops would change the ivory score


def test_possible_match_band_below_the_threshold(tmp_path, photo):
    data = corner_photo(photo)
    base = make_tiny_bundle(tmp_path / "a", score_mode="sigmoid", possible_ratio=0.5)
    score = Classifier.from_path(base, galleries=None).predict([("p", data)])[0].scores["ivory"]
    band = make_tiny_bundle(
        tmp_path / "b",
        score_mode="sigmoid",
        possible_ratio=0.5,
        thresholds={"ivory": min(0.99, score / 0.75), "reef_coral": 0.99},
    )
    [result] = Classifier.from_path(band, galleries=None).predict([("p", data)])
    assert not result.flagged and result.possible == "ivory"
    none = make_tiny_bundle(
        tmp_path / "c",
        score_mode="sigmoid",
        possible_ratio=0.5,
        thresholds={"ivory": min(0.999, score / 0.4), "reef_coral": 0.99},
    )
    assert Classifier.from_path(none, galleries=None).predict([("p", data)])[0].possible is None


def test_bundle_refuses_a_bad_rule():
    with pytest.raises(BundleError, match="score_mode"):
        BundleConfig(name="x", version="1", labels=["ivory"], score_mode="tanh")
    with pytest.raises(BundleError, match="object_labels"):
        BundleConfig(name="x", version="1", labels=["ivory"], object_labels=["snake"])
    with pytest.raises(BundleError, match="crop_triggers"):
        BundleConfig(name="x", version="1", labels=["ivory"], crop_triggers=["snake"])


def test_lazy_crops_give_exactly_the_eager_cascade_on_real_sale_posts(shared_data):
    """Crops made only for the photos the cascade picks are the same numbers as crops made
    for every photo up front (the shipped model, real listing photos)."""
    from vision.registry import create_model
    from vision.runtime import prepare_image

    classifier = create_model(galleries=None)
    assert classifier.preprocess.crops
    paths = sorted((shared_data / "dev-ads").rglob("*.jpg"))[:48]
    items = [(str(p), p.read_bytes()) for p in paths]
    lazy = [prepare_image(name, data, classifier.preprocess) for name, data in items]
    eager = [prepare_image(name, data, classifier.preprocess, lazy_crops=False) for name, data in items]
    assert lazy[0].tensor.ndim == 3 and lazy[0].source is not None and eager[0].tensor.ndim == 4
    lazy_logits, lazy_emb = classifier.run_prepared(lazy)
    eager_logits, eager_emb = classifier.run(np.stack([p.tensor for p in eager]))
    np.testing.assert_array_equal(lazy_logits, eager_logits)  # NaN where the crops were not run
    np.testing.assert_array_equal(lazy_emb, eager_emb)
    ran = ~np.isnan(lazy_logits[:, 1:, 0]).all(axis=1)
    assert 0 < ran.sum() < len(items)  # the cascade ran crops for some photos, not all
    assert [r.to_dict() for r in classifier.classify_prepared(lazy)] == [
        r.to_dict() for r in classifier.assemble(eager, eager_logits, eager_emb)
    ]
