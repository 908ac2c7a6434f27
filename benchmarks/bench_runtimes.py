"""Inference speed of the shipped ONNX in each runtime this machine has, and their agreement.

    .venv/bin/python benchmarks/bench_runtimes.py [--rounds 5] [--photos 200]

Engines (``vision.engines``, one thread each): onnxruntime fp32, OpenVINO fp32 and, on CPUs
with native bf16 (AVX512_BF16 or AMX), OpenVINO bf16. Batches of 1 and 16 real test photos
(whole-photo view). Rounds alternate between the engines; the median ms per image and the
speed-up over onnxruntime fp32 at the same batch size are printed, then each engine's
agreement with onnxruntime fp32 on ``--photos`` test photos: the largest logit difference
and the share of photos with the same top label. Accuracy parity on whole splits is
``python -m training.parity``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str] | None = None) -> int:
    from training import data
    from vision.bundle import INPUT, LOGITS, bundle_paths
    from vision.engines import cpu_flags, native_bf16, open_engine, openvino_installed
    from vision.preprocess import load_for_model
    from vision.registry import create_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--photos", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=2.0, help="per engine, batch size and round")
    args = parser.parse_args(argv)

    classifier = create_model(galleries=None, runtime="onnxruntime")
    onnx_path, _ = bundle_paths(classifier.bundle.onnx_path)
    examples = data.load_split("test")[:: max(1, 2576 // args.photos)][: args.photos]
    images = np.stack(
        [load_for_model(ex.file().read_bytes(), classifier.preprocess, whole_only=True)[0] for ex in examples]
    )
    engines = {"onnxruntime fp32": open_engine(onnx_path, "onnxruntime", "fp32")}
    if openvino_installed():
        engines["openvino fp32"] = open_engine(onnx_path, "openvino", "fp32")
        if native_bf16():
            engines["openvino bf16"] = open_engine(onnx_path, "openvino", "bf16")
    flags = sorted(f for f in cpu_flags() if f.startswith(("avx512_bf16", "amx", "avx512_vnni", "avx512f", "avx2")))
    print(f"CPU flags: {' '.join(flags) or 'unknown'}; engines: {', '.join(engines)}")

    times: dict[tuple[str, int], list[float]] = {(name, b): [] for name in engines for b in (1, 16)}
    for _ in range(args.rounds):
        for (name, batch_size), found in times.items():
            batch = images[:batch_size]
            engines[name].run([LOGITS], {INPUT: batch})  # warm
            start, n = time.perf_counter(), 0
            while time.perf_counter() - start < args.seconds:
                engines[name].run([LOGITS], {INPUT: batch})
                n += batch_size
            found.append((time.perf_counter() - start) / n * 1000)
    print(f"\nms per image, median of {args.rounds} alternating rounds (1 thread):")
    for batch_size in (1, 16):
        base = statistics.median(times[("onnxruntime fp32", batch_size)])
        for name in engines:
            ms = statistics.median(times[(name, batch_size)])
            print(f"  batch {batch_size:>2}  {name:<17} {ms:7.2f} ms   {base / ms:4.2f}x onnxruntime fp32")

    reference = np.concatenate([engines["onnxruntime fp32"].run([LOGITS], {INPUT: images[i : i + 16]})[0]
                                for i in range(0, len(images), 16)])  # fmt: skip
    print(f"\nagreement with onnxruntime fp32 on {len(images)} test photos (whole photo):")
    for name, engine in engines.items():
        logits = np.concatenate(
            [engine.run([LOGITS], {INPUT: images[i : i + 16]})[0] for i in range(0, len(images), 16)]
        )
        same = float((logits.argmax(1) == reference.argmax(1)).mean())
        print(f"  {name:<17} max |logit difference| {np.abs(logits - reference).max():.4f}   same top label {same:.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
