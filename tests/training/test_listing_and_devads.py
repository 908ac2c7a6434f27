"""Listing scenes for training, and the real-ad evaluation's cross-validated thresholds."""

import dataclasses

import numpy as np
import pytest
from PIL import Image

from training import data, devads, metrics
from training.listing import balanced_listing, cutout, cuttable, listing_view, matte
from vision.preprocess import load_image


def test_a_studio_object_is_cut_out_tightly_and_a_field_photo_is_not(photo):
    studio = load_image(photo("ivory_carving").read_bytes()).image
    found = [matte(load_image(photo("ivory_carving", i).read_bytes()).image) for i in range(12)]
    assert sum(f is not None for f in found) >= 3  # plain museum backdrops are cut out
    alpha, (left, top, right, bottom) = next(f for f in found if f is not None)
    a = np.asarray(alpha) / 255.0
    assert 0.2 < a.mean() < 0.98 and a.shape == (bottom - top, right - left)
    assert a[a.shape[0] // 2, a.shape[1] // 2] > 0.5 or a.mean() > 0.4  # the object, not the backdrop
    rgba = cutout(studio)
    assert rgba is None or rgba.mode == "RGBA"
    field = load_image(photo("snake_live").read_bytes()).image  # a snake in leaves has no plain backdrop
    assert matte(field) is None


def test_listing_views_are_deterministic_and_put_the_photo_in_a_listing_scene(photo):
    img = load_image(photo("ivory_carving", 3).read_bytes()).image
    a, how_a = listing_view(img, "key", 1)
    b, _ = listing_view(img, "key", 1)
    c, _ = listing_view(img, "key", 2)
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))
    assert how_a in ("pasted", "collage")
    small = np.asarray(img.resize((32, 32), Image.Resampling.BILINEAR), dtype=float)
    assert np.abs(np.asarray(a.resize((32, 32), Image.Resampling.BILINEAR), dtype=float) - small).mean() > 10


def test_balanced_listing_lends_cut_outs_within_a_class(photo, shared_data, tmp_path, monkeypatch):
    # museum ivory is mostly on plain backdrops, figurines mostly not: plain listing
    # scenes would paste ivory far more often; balanced rows lend cut-outs within a class
    def examples(label, cls):
        paths = [photo(label, i) for i in range(10)]
        return [
            data.Example(f"{label}{i}", str(p.relative_to(shared_data)), label, cls, "train", 0, "", "")
            for i, p in enumerate(paths)
        ]

    ivory, figurines = examples("ivory_carving", "ivory"), examples("figurine_lookalike", "figurine")
    photos = ivory + figurines
    can_cut = cuttable(photos, tmp_path / "cuttable.json", workers=1)
    for ex in photos:
        assert (ex.sha256 in can_cut) == (matte(load_image(ex.file().read_bytes()).image) is not None)
    monkeypatch.setattr("training.listing._can_cut", lambda path: pytest.fail("recomputed"))
    assert cuttable(photos, tmp_path / "cuttable.json", workers=1) == can_cut  # read back, not recomputed
    donors = [ex for ex in figurines if ex.sha256 in can_cut]
    takers = [ex for ex in figurines if ex.sha256 not in can_cut]
    assert donors and takers, "the test needs figurines of both kinds"

    rows = balanced_listing(photos, [1, 2], can_cut, rate=0.8, reuse=2)
    assert rows == balanced_listing(photos, [1, 2], can_cut, rate=0.8, reuse=2)
    assert len(rows) == 2 * len(photos)
    for (ex, kind, seed), own in zip(rows, photos + photos):
        assert ex.cls == own.cls  # the row keeps its label
        if kind == "pasted":
            assert ex.sha256 in can_cut and own.sha256 not in can_cut and seed >= 1000
        else:
            assert ex is own and kind == "listing" and seed in (1, 2)
    lent = [ex for ex, kind, _ in rows[: len(photos)] if kind == "pasted" and ex.cls == "figurine"]
    assert len(lent) == min(round(0.8 * len(takers)), 2 * len(donors)) > 0
    assert max(lent.count(d) for d in donors) <= 2
    # one photo in two classes (an officer's relabel): each row still gets a donor of its own class
    twice = photos + [dataclasses.replace(takers[0], cls="ivory")]
    for (ex, _, _), own in zip(balanced_listing(twice, [1], can_cut, rate=1.0), twice):
        assert ex.cls == own.cls
    donor, _, seed = next(r for r in rows if r[1] == "pasted")
    assert (
        listing_view(load_image(donor.file().read_bytes()).image, donor.sha256, seed, always_paste=True)[1] == "pasted"
    )


def test_cross_validation_never_judges_a_photo_with_its_own_threshold():
    groups = [f"g{i}" for i in range(200)]
    folds = np.array([devads.fold_of(g) for g in groups])
    positives = np.arange(200) % 2 == 0
    # fold 0's positives score low: a threshold fitted with them would flag them, one from
    # the other folds (where positives score 0.9) must not
    scores = np.where(positives, np.where(folds == 0, 0.3, 0.9), 0.1)
    flags, thresholds = devads.cross_validated_flags(scores, positives, groups)
    assert not flags[(folds == 0) & positives].any()
    assert flags[(folds != 0) & positives].all() and not flags[~positives].any()
    assert len(thresholds) == devads.FOLDS
    assert devads.best_threshold(scores, positives) == pytest.approx(0.3)  # in-sample: all positives in


def test_groups_keep_to_one_fold_and_best_threshold_respects_the_precision_floor():
    assert devads.fold_of("abc") == devads.fold_of("abc")
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    positives = np.array([True, True, False, True, False, True])
    # F1 is best at 0.4 (P 4/6) but precision >= 0.85 only holds down to 0.8
    assert devads.best_threshold(scores, positives, min_precision=0.85) == pytest.approx(0.8)
    assert devads.best_threshold(scores, positives, min_precision=0.0) == pytest.approx(0.4)


def test_roc_auc_counts_ties_half():
    assert metrics.roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == pytest.approx(0.75)
    assert metrics.roc_auc(np.array([0.5, 0.5]), np.array([0, 1])) == pytest.approx(0.5)


def test_intervals_resample_whole_posts_and_contain_the_figure():
    rng = np.random.default_rng(1)
    posts = 60
    post_pos = rng.random(posts) < 0.4
    post_flag = np.where(post_pos, rng.random(posts) < 0.7, rng.random(posts) < 0.1)
    # three photos per post, all alike: a post's photos rise and fall together
    positives, flags = np.repeat(post_pos, 3), np.repeat(post_flag, 3)
    score = np.repeat(np.where(post_pos, 0.6, 0.3) + 0.3 * rng.random(posts), 3)
    by_post = [f"post{i // 3}" for i in range(3 * posts)]
    by_photo = [f"photo{i}" for i in range(3 * posts)]

    ci = devads.group_intervals(by_post, positives, {"rule": flags}, flags, score, replicates=500)
    assert ci == devads.group_intervals(by_post, positives, {"rule": flags}, flags, score, replicates=500)
    assert ci["groups"] == posts and ci["method"] == "post-group bootstrap"
    point = devads.prf(flags, positives)
    for key in ("precision", "recall", "f1"):
        lo, hi = ci["rule"][key]
        assert lo <= point[key] <= hi and hi - lo > 0.05
    lo, hi = ci["false_flag_rate_not_ivory"]
    assert lo <= flags[~positives].mean() <= hi
    lo, hi = ci["ivory_auc"]
    assert lo <= metrics.roc_auc(score, positives) <= hi
    # treating the three photos of a post as independent claims more certainty than there is
    naive = devads.group_intervals(by_photo, positives, {"rule": flags}, flags, score, replicates=500)
    width = lambda c: c["rule"]["f1"][1] - c["rule"]["f1"][0]
    assert width(naive) < 0.75 * width(ci)
    perfect = devads.group_intervals(by_post, positives, {"rule": positives}, positives, score, replicates=200)
    assert perfect["rule"]["precision"] == [1.0, 1.0] and perfect["false_flag_rate_not_ivory"] == [0.0, 0.0]


def test_paired_difference_sees_a_real_gain_and_no_gain_in_identical_flags():
    rng = np.random.default_rng(2)
    positives = rng.random(240) < 0.4
    groups = [f"post{i // 2}" for i in range(240)]
    a = positives & (rng.random(240) < 0.6)
    b = a | (positives & (rng.random(240) < 0.5))  # b finds every ivory photo a finds, and more
    same = devads.f1_difference(groups, positives, a, a, replicates=300)
    assert same["difference"] == 0.0 and same["interval"] == [0.0, 0.0]
    gain = devads.f1_difference(groups, positives, a, b, replicates=300)
    assert gain["difference"] == pytest.approx(
        devads.prf(b, positives)["f1"] - devads.prf(a, positives)["f1"], abs=1e-4
    )
    assert 0 < gain["interval"][0] <= gain["difference"] <= gain["interval"][1]
    # one photo more or less: the interval spans zero
    c = a.copy()
    c[np.flatnonzero(positives & ~a)[0]] = True
    assert devads.f1_difference(groups, positives, a, c, replicates=300)["interval"][0] <= 0
