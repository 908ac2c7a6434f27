"""Cost per photo of a model's shipped path (decode, preprocess, views, inference, decision)
against a baseline bundle, measured in one run with alternating rounds.

    .venv/bin/python benchmarks/bench_cost.py --baseline /path/to/old/bundle.onnx [--model NAME]

Also measured in the same rounds: the shipped bundle restricted to one view (its JSON with
no crops, same ONNX file), so the cascade's cost is a ratio to a single view of this model;
and, on CPUs with native bf16 where OpenVINO is installed, the shipped path in OpenVINO bf16.

Photos: the real sale posts of ``dev-ads`` and an equal number of test-split photos (every
class), so both listing photos and catalogue photos are in the mix. One onnxruntime
thread, batches of 16, galleries off. Prints ms per photo for each bundle (median of the
rounds), their ratio, and the share of photos for which the crop cascade ran.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training import data, devads
from vision.engines import native_bf16, openvino_installed
from vision.registry import create_model


def photo_mix() -> list[tuple[str, bytes]]:
    ads = [a.path for a in devads.load()]
    test = data.load_split("test")
    step = max(1, len(test) // len(ads))
    paths = ads + [ex.file() for ex in test[::step][: len(ads)]]
    return [(str(p), Path(p).read_bytes()) for p in paths]


def timed(classifier, items, batch: int = 16) -> float:
    start = time.perf_counter()
    for i in range(0, len(items), batch):
        classifier.predict(items[i : i + batch])
    return (time.perf_counter() - start) / len(items) * 1000


def crop_share(classifier, items) -> float:
    """Share of photos for which the cascade ran the crops (0 for a bundle without crops)."""
    if not classifier.preprocess.crops:
        return 0.0
    prepared = [classifier.prepare(name, raw) for name, raw in items]
    logits, _ = classifier.run_prepared([p for p in prepared if hasattr(p, "tensor")])
    return float((~np.isnan(logits[:, 1:, 0]).all(axis=1)).mean())


def single_view(onnx_path: Path, folder: Path):
    """The same model with the whole photo only: a copy of the bundle whose JSON has no crops."""
    onnx = folder / onnx_path.name
    shutil.copyfile(onnx_path, onnx)
    config = json.loads(onnx_path.with_suffix(".json").read_text())
    config["preprocess"]["crops"] = []
    onnx.with_suffix(".json").write_text(json.dumps(config))
    return create_model(onnx, galleries=None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", required=True, help="the bundle to compare with (e.g. model 1.2.0)")
    parser.add_argument("--model", default=None, help="bundle name or path (default: the shipped model)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    shipped = create_model(args.model, galleries=None, runtime="onnxruntime")
    models = {
        "shipped": shipped,
        "one view": single_view(shipped.bundle.onnx_path, Path(tempfile.mkdtemp())),
        "baseline": create_model(args.baseline, galleries=None, runtime="onnxruntime"),
    }
    if native_bf16() and openvino_installed():  # the same path in OpenVINO bf16 (vision.engines)
        models["bf16"] = create_model(args.model, galleries=None, runtime="openvino-bf16")
    items = photo_mix()
    for clf in models.values():
        timed(clf, items[:16])  # warm-up
    times: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(args.rounds):
        for kind, clf in models.items():
            times[kind].append(timed(clf, items))
    med = {k: statistics.median(v) for k, v in times.items()}
    for kind, clf in models.items():
        info = clf.model_info()
        print(
            f"{kind:9s} {info['name']} {info['version']} ({info['runtime']} {info['precision']}): "
            f"{med[kind]:.1f} ms per photo "
            f"(views {clf.preprocess.views}, crops run for {crop_share(clf, items):.0%} of the photos)"
        )
    print(
        f"photos: {len(items)} ({len(items) // 2} dev-ads, {len(items) - len(items) // 2} test split); "
        f"{args.rounds} alternating rounds, 1 thread, batch 16"
    )
    print(f"shipped / baseline cost per photo: {med['shipped'] / med['baseline']:.2f}x")
    print(f"shipped / one view of the same model: {med['shipped'] / med['one view']:.2f}x")
    if "bf16" in med:
        print(f"shipped path, onnxruntime fp32 / OpenVINO bf16: {med['shipped'] / med['bf16']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
