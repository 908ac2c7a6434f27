"""``wildscan export RUN``: a training run -> a verified ONNX model bundle in ``models/``.

Steps, each of which can stop the export:

1. rebuild the network (pretrained trunk + the run's fine-tuned top) in torch;
2. export to ONNX (opset 17, dynamic batch, outputs ``logits`` and ``embedding``) and
   run ``onnx.checker``;
3. parity: torch and onnxruntime on real test photos, preprocessed by ``vision``, must
   agree within ``PARITY_TOLERANCE`` (max absolute difference of logits and embeddings);
4. write the bundle JSON (labels, preprocessing, temperature, thresholds, data summary);
5. int8: static QDQ quantisation (per-channel, calibrated on training photos); it becomes
   the default bundle only if test macro-F1 drops by at most ``INT8_MAX_F1_DROP`` and it is at
   least ``INT8_MIN_SPEEDUP`` times faster than fp32, both measured in this run. The fp32
   file is always kept for parity checks;
6. evaluation of the shipped bundle on the test split, clean and ad-style, saved beside it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from vision.bundle import EMBEDDING, INPUT, LOGITS, BundleConfig, load_bundle, save_bundle_config
from vision.preprocess import PreprocessConfig, load_for_model
from vision.runtime import Classifier

from . import data
from .errors import TrainingError
from .evaluate import bundle_summary
from .features import ViewSpec, render
from .headfit import first_linear
from .model import build
from .train import FROZEN_TRUNK, TrainConfig, fine_tuned_part

PARITY_TOLERANCE = 1e-3
# Decision-rule settings a run may choose (``calibration.json``) besides temperature and thresholds.
RULE_KEYS = ("score_mode", "object_labels", "crops_from", "possible_ratio")
INT8_MAX_F1_DROP = 0.005
INT8_MIN_SPEEDUP = 1.5


def load_run(run_dir: Path) -> tuple[TrainConfig, dict, torch.nn.Module]:
    """The run's config, calibration and the assembled network (eval mode)."""
    cfg = TrainConfig.from_file(run_dir / "config.json")
    calibration = json.loads((run_dir / "calibration.json").read_text())
    net = build(
        cfg.arch, len(calibration["labels"]), cfg.cut, pretrained=True, dropout=cfg.dropout, cut_layer=cfg.cut_layer
    )
    recipe = json.loads((run_dir / "config.json").read_text())
    if recipe.get("hidden"):  # model 2 recipe: an MLP head (training.heads)
        from .headfit import make_head

        n, ensemble = len(calibration["labels"]), recipe.get("ensemble", 1)
        net.top.classifier = make_head(net.top.classifier.in_features, n, recipe["hidden"], ensemble=ensemble)
    state = torch.load(run_dir / "top.pt", map_location="cpu", weights_only=True)
    if recipe.get("neighbours_k"):  # the ivory logit fused with a neighbour score (training.neighbours)
        from .neighbours import FusedHead

        index = calibration["labels"].index("ivory")
        net.top.classifier = FusedHead.wrap(net.top.classifier, state, "classifier.", index)
    net.top.load_state_dict(state)
    if (run_dir / "trunk.pt").exists():  # end-to-end runs fine-tune the trunk too
        net.trunk.load_state_dict(torch.load(run_dir / "trunk.pt", map_location="cpu", weights_only=True))
    return cfg, calibration, net.eval()


def export_onnx(net: torch.nn.Module, size: int, path: Path) -> Path:
    """Export with a batch-2 example and a dynamic batch axis; then ``onnx.checker``."""
    import onnx

    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(2, 3, size, size)
    torch.onnx.export(
        net,
        (example,),
        str(path),
        input_names=[INPUT],
        output_names=[LOGITS, EMBEDDING],
        dynamic_axes={INPUT: {0: "batch"}, LOGITS: {0: "batch"}, EMBEDDING: {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    from .neighbours import store_gallery_half

    store_gallery_half(net, path)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    return path


def parity_photos(limit_per_class: int = 2) -> list[data.Example]:
    """A few real test photos of every class."""
    seen: Counter = Counter()
    out = []
    for ex in data.load_split("test"):
        if seen[ex.cls] < limit_per_class:
            seen[ex.cls] += 1
            out.append(ex)
    return out


def check_parity(
    net: torch.nn.Module,
    onnx_path: Path,
    pre: PreprocessConfig,
    examples: list[data.Example],
    tolerance: float = PARITY_TOLERANCE,
) -> dict:
    """Max |torch - onnxruntime| over real photos; raises RuntimeError beyond ``tolerance``."""
    import onnxruntime as ort

    batch = np.stack([load_for_model(ex.file().read_bytes(), pre)[0] for ex in examples])
    batch = batch.reshape(-1, *batch.shape[-3:])  # whole photos and their crops alike
    with torch.no_grad():
        t_logits, t_emb = (v.numpy() for v in net(torch.from_numpy(batch)))
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    o_logits, o_emb = session.run([LOGITS, EMBEDDING], {INPUT: batch})
    report = {
        "photos": len(examples),
        "max_abs_logit_diff": float(np.abs(t_logits - o_logits).max()),
        "max_abs_embedding_diff": float(np.abs(t_emb - o_emb).max()),
        "top1_agreement": float((t_logits.argmax(1) == o_logits.argmax(1)).mean()),
        "tolerance": tolerance,
    }
    if max(report["max_abs_logit_diff"], report["max_abs_embedding_diff"]) > tolerance:
        raise TrainingError(f"ONNX export differs from torch beyond {tolerance}: {report}", "export_failed")
    return report


def quantize_int8(fp32_path: Path, out_path: Path, pre: PreprocessConfig, photos: list[data.Example]) -> Path:
    """Static QDQ int8 (per-channel weights), calibrated on ``photos`` as the model is trained
    on them: each photo clean and as a seeded training view (70 % ad-style). Calibrating
    on clean photos alone clipped the activations of ad-style photos (model 1.2.0: −2.9
    wildlife macro-F1 points on the ad-style view, double the false flags)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            views = [(ex, view) for ex in photos for view in (ViewSpec("clean"), ViewSpec("train", 1))]
            self._batches = iter(
                {INPUT: np.stack([render(ex.file(), ex.sha256, view, pre) for ex, view in views[i : i + 16]])}
                for i in range(0, len(views), 16)
            )

        def get_next(self):
            return next(self._batches, None)

    prepped = out_path.with_suffix(".prep.onnx")
    quant_pre_process(str(fp32_path), str(prepped), skip_symbolic_shape=True)
    quantize_static(
        str(prepped),
        str(out_path),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    prepped.unlink(missing_ok=True)
    return out_path


def images_per_second(paths: dict[str, Path], batch: np.ndarray, rounds: int = 7, repeats: int = 3) -> dict[str, float]:
    """Single-thread inference rate of each model (inputs already preprocessed): the median
    over ``rounds`` rounds that take turns between the models, so that a slow spell of the
    machine hits all of them alike rather than deciding a comparison."""
    classifiers = {
        kind: Classifier(load_bundle(path, intra_threads=1, runtime="onnxruntime"), max_batch=16)
        for kind, path in paths.items()
    }
    for classifier in classifiers.values():
        classifier.run(batch[:16])
    rates: dict[str, list[float]] = {kind: [] for kind in classifiers}
    for _ in range(rounds):
        for kind, classifier in classifiers.items():
            start = time.perf_counter()
            for _ in range(repeats):
                classifier.run(batch)
            rates[kind].append(repeats * len(batch) / (time.perf_counter() - start))
    return {kind: float(np.median(values)) for kind, values in rates.items()}


def training_data_summary(run_cfg: TrainConfig, calibration: dict, head: torch.nn.Module | None = None) -> dict:
    examples = data.load_split()
    splits_file = data.DATASET_DIR / "splits.csv"
    sources = Counter(ex.source for ex in examples if ex.split == "train")
    return {
        "dataset": "wildtrade-v1",
        "splits_sha256": hashlib.sha256(splits_file.read_bytes()).hexdigest(),
        "photos": dict(Counter(ex.split for ex in examples)),
        "train_views_per_photo": 1 + run_cfg.train_views,
        "fine_tuned": heads_in_words(head) or fine_tuned_part(run_cfg),
        "sources": dict(sources.most_common()),
        "card": "datasets/wildtrade-v1/CARD.md",
        **{
            key: calibration[key]
            for key in ("ivory_floor", "val_crop_fraction", "dev_ads_crop_fraction", "neighbours", "officers_photos")
            if key in calibration
        },
    }


def export_run(
    run_dir: Path, out_dir: Path, *, version: str = "1.0.0", int8: bool = True, progress: bool = True
) -> dict:
    """Export, verify, quantise, evaluate, write the model card; returns a report (also saved
    beside the bundle)."""
    from .evaluate import evaluate_split, write_report

    run_cfg, calibration, net = load_run(run_dir)
    pre = PreprocessConfig.from_dict(run_cfg.preprocess)
    name = run_cfg.name
    out_dir.mkdir(parents=True, exist_ok=True)
    work = run_dir / "export"
    work.mkdir(exist_ok=True)

    static = static_same_padding(net, pre.input_size)  # same outputs, a graph onnxruntime can fold
    fp32 = export_onnx(net, pre.input_size, work / f"{name}-fp32.onnx")
    parity = {**check_parity(net, fp32, pre, parity_photos()), "static_padding_convs": static}
    config = bundle_config(run_cfg, calibration, net, pre, version)
    save_bundle_config(fp32, config)
    report: dict = {"parity": parity}

    candidates = {"fp32": fp32}
    if int8:
        calib = [ex for i, ex in enumerate(data.load_split("train")) if i % 40 == 0][:256]
        q = quantize_int8(fp32, work / f"{name}-int8.onnx", pre, calib)
        save_bundle_config(q, config)
        candidates["int8"] = q

    bench = np.stack(
        [load_for_model(ex.file().read_bytes(), replace(pre, crops=()))[0] for ex in parity_photos(1)][:32]
    )
    evaluations = {}
    speed = images_per_second(candidates, bench)
    for kind, path in candidates.items():
        clf = Classifier(load_bundle(path, intra_threads=2, runtime="onnxruntime"))  # the reference runtime
        evaluations[kind] = evaluate_split(clf, "test", progress=progress)
        report[kind] = {
            "images_per_second_1_thread": round(speed[kind], 1),
            "macro_f1_wildlife_clean": evaluations[kind]["clean"]["macro_f1_wildlife"],
            "macro_f1_all_clean": evaluations[kind]["clean"]["macro_f1_all"],
            "macro_f1_wildlife_ad": evaluations[kind]["ad"]["macro_f1_wildlife"],
            "macro_f1_all_ad": evaluations[kind]["ad"]["macro_f1_all"],
            "size_mb": round(path.stat().st_size / 1e6, 2),
        }
    chosen = report["shipped"] = choose_precision(report)
    final = ship(out_dir, name, candidates, config, evaluations, report)
    evaluations[chosen]["model"] = final.model_info()
    write_report(evaluations[chosen], out_dir / f"{name}.eval")
    from . import devads  # the real sale posts: the model card's headline figures

    devads.write_report(devads.evaluate(Classifier(final, max_batch=16)), out_dir / f"{name}.eval")
    report["bundle"] = final.model_info()
    (out_dir / f"{name}.eval" / "export_report.json").write_text(json.dumps(report, indent=2) + "\n")
    from .card import write_model_card  # every number in it comes from the files just written
    from .negatives import write_negative_list  # the galleries' default negative pool, from training data

    report["negatives"] = str(write_negative_list(final.onnx_path))

    report["card"] = str(write_model_card(final.onnx_path))
    return report


def bundle_config(run_cfg, calibration: dict, net, pre: PreprocessConfig, version: str) -> BundleConfig:
    """The bundle's JSON contract from a run: labels, preprocessing, calibration, decision rule."""
    return BundleConfig(
        name=run_cfg.name,
        version=version,
        labels=calibration["labels"],
        preprocess=pre,
        architecture=run_cfg.arch,
        temperature=calibration["temperature"],
        thresholds=calibration["thresholds"],
        default_threshold=run_cfg.default_threshold,
        uncertain_below=run_cfg.uncertain_below,
        **{key: calibration[key] for key in RULE_KEYS if key in calibration},
        embedding_dim=int(first_linear(net.top.classifier).in_features),
        training_data=training_data_summary(run_cfg, calibration, net.top.classifier),
        created=dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
    )


def heads_in_words(head: torch.nn.Module | None) -> str | None:
    """What was trained, in words, for a model 2 head made of several heads or fused with the
    ivory neighbour score (``training.headfit``, ``training.neighbours``); ``None`` otherwise."""
    from .headfit import MeanOfHeads
    from .neighbours import FusedHead

    fused = head if isinstance(head, FusedHead) else None
    inner = fused.head if fused else head
    if fused is None and not isinstance(inner, MeanOfHeads):
        return None
    count = len(inner.heads) if isinstance(inner, MeanOfHeads) else 1
    words = f"{count} one-vs-rest heads (one hidden layer each) averaged" if count > 1 else "a new one-vs-rest head"
    if fused is not None:
        gallery = fused.neighbours
        words += (
            f", the ivory logit averaged with a {gallery.k}-nearest-neighbour score over "
            f"{len(gallery.positives) + len(gallery.negatives):,} training views ({len(gallery.positives):,} ivory)"
        )
    return f"{words}, {FROZEN_TRUNK}"


def choose_precision(report: dict) -> str:
    """``int8`` when it keeps macro-F1 on both views within ``INT8_MAX_F1_DROP`` and is at
    least ``INT8_MIN_SPEEDUP`` faster, else ``fp32``; the evidence goes into ``report``."""
    if "int8" not in report:
        return "fp32"
    speedup = report["int8"]["images_per_second_1_thread"] / report["fp32"]["images_per_second_1_thread"]
    # the product is judged on ad photos: int8 must keep macro-F1 on both views
    drops = {
        view: report["fp32"][f"macro_f1_all_{view}"] - report["int8"][f"macro_f1_all_{view}"]
        for view in ("clean", "ad")
    }
    report["int8_decision"] = {
        "speedup": round(speedup, 2),
        "macro_f1_drop": round(drops["clean"], 4),
        "macro_f1_drop_ad": round(drops["ad"], 4),
        "max_drop": INT8_MAX_F1_DROP,
        "min_speedup": INT8_MIN_SPEEDUP,
    }
    return "int8" if max(drops.values()) <= INT8_MAX_F1_DROP and speedup >= INT8_MIN_SPEEDUP else "fp32"


def ship(out_dir: Path, name: str, candidates: dict[str, Path], config: BundleConfig, evaluations: dict, report: dict):
    """Copy the chosen file into ``out_dir`` with its final JSON (metrics included), keep the
    fp32 one beside it when int8 ships; returns the reloaded, checked bundle."""
    chosen = report["shipped"]
    final_config = BundleConfig.from_dict(
        {
            **config.to_dict(),
            "metrics": bundle_summary(evaluations[chosen], chosen, report[chosen]["images_per_second_1_thread"]),
        }
    )
    fp32 = candidates["fp32"]
    shipped = out_dir / f"{name}.onnx"
    shutil.copyfile(candidates[chosen], shipped)
    save_bundle_config(shipped, final_config)
    kept_fp32 = out_dir / f"{name}-fp32.onnx"
    if chosen != "fp32":
        shutil.copyfile(fp32, kept_fp32)
        save_bundle_config(
            kept_fp32,
            BundleConfig.from_dict(
                {
                    **config.to_dict(),
                    "name": f"{name}-fp32",
                    "metrics": bundle_summary(
                        evaluations["fp32"], "fp32", report["fp32"]["images_per_second_1_thread"]
                    ),
                }
            ),
        )
    else:  # the shipped file is the fp32 one: no copy, and none left from an earlier export
        for stale in (kept_fp32, kept_fp32.with_suffix(".json")):
            stale.unlink(missing_ok=True)
    return load_bundle(shipped, runtime="onnxruntime")  # reload: checks JSON against graph, hashes the shipped file


def static_same_padding(net: torch.nn.Module, size: int) -> int:
    """Replace timm's dynamic TF-"same" convolutions (``Conv2dSame``: the pad is computed from
    the input shape at run time, a Shape -> Pad subgraph onnxruntime cannot fold) by a fixed
    ``ZeroPad2d`` + ``Conv2d`` for inputs of ``size`` x ``size``. The outputs are the same; the
    exported graph has constant padding. Returns how many convolutions were replaced."""
    from timm.layers import Conv2dSame, get_same_padding

    shapes: dict[str, tuple[int, int]] = {}
    hooks = [
        module.register_forward_pre_hook(lambda m, args, name=name: shapes.__setitem__(name, tuple(args[0].shape[-2:])))
        for name, module in net.named_modules()
        if isinstance(module, Conv2dSame)
    ]
    with torch.no_grad():
        net.eval()(torch.zeros(1, 3, size, size))
    for hook in hooks:
        hook.remove()
    for name, (height, width) in shapes.items():
        old = net.get_submodule(name)
        kh, kw = old.kernel_size
        ph = get_same_padding(height, kh, old.stride[0], old.dilation[0])
        pw = get_same_padding(width, kw, old.stride[1], old.dilation[1])
        conv = torch.nn.Conv2d(old.in_channels, old.out_channels, old.kernel_size, old.stride, 0, old.dilation,
                               old.groups, old.bias is not None)  # fmt: skip
        conv.load_state_dict(old.state_dict())
        padded = torch.nn.Sequential(torch.nn.ZeroPad2d((pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)), conv)
        parent, _, child = name.rpartition(".")
        setattr(net.get_submodule(parent) if parent else net, child, padded)
    return len(shapes)
