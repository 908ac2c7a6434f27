"""Inference contenders of the shipped ONNX on this CPU, against onnxruntime fp32 of the same
bundle (and of an older bundle as shipped), with their accuracy deltas.

    .venv/bin/python benchmarks/bench_infer.py [--rounds 5] [--photos 200] [--baseline OLD.onnx]

Contenders (``vision.engines``, one thread each): onnxruntime fp32, OpenVINO fp32 and, on
CPUs with native bf16 (AVX512_BF16 or AMX), OpenVINO bf16; at batch 1, 4 (the scan's and the
API's default) and 16, on real test photos (whole-photo view). ``--baseline`` adds an older
bundle's ONNX in onnxruntime fp32 as it shipped (the speed issue's yardstick: 1.2.0 at batch
16). Rounds alternate between all contenders; the median ms per image is printed with the
speed-up over onnxruntime fp32 of the shipped bundle at the same batch size, and over the
baseline at batch 16.

Accuracy: each engine's agreement with onnxruntime fp32 on ``--photos`` test photos (largest
logit difference, same top label), then the whole-split deltas the bundle's parity record
holds (``python -m training.parity``: wildlife macro-F1 of the clean, ad-style and
listing-scene test views and the dev-ads ivory F1), with whether it passed the rule.

Not a test: numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

BATCHES = (1, 4, 16)
REFERENCE = "onnxruntime fp32"


def engines_here(onnx_path: Path, baseline: Path | None) -> dict:
    from vision.engines import native_bf16, open_engine, openvino_installed

    engines = {REFERENCE: open_engine(onnx_path, "onnxruntime", "fp32")}
    if openvino_installed():
        engines["openvino fp32"] = open_engine(onnx_path, "openvino", "fp32")
        if native_bf16():
            engines["openvino bf16"] = open_engine(onnx_path, "openvino", "bf16")
    if baseline:
        engines["baseline onnxruntime fp32"] = open_engine(baseline, "onnxruntime", "fp32")
    return engines


def timings(engines: dict, images: np.ndarray, rounds: int, seconds: float) -> dict[tuple[str, int], float]:
    """Median ms per image of each engine and batch size over alternating rounds."""
    from vision.bundle import INPUT, LOGITS

    times: dict[tuple[str, int], list[float]] = {(name, b): [] for name in engines for b in BATCHES}
    for _ in range(rounds):
        for (name, batch_size), found in times.items():
            batch = images[:batch_size]
            engines[name].run([LOGITS], {INPUT: batch})  # warm
            start, n = time.perf_counter(), 0
            while time.perf_counter() - start < seconds:
                engines[name].run([LOGITS], {INPUT: batch})
                n += batch_size
            found.append((time.perf_counter() - start) / n * 1000)
    return {key: statistics.median(found) for key, found in times.items()}


def print_speed(ms: dict[tuple[str, int], float], names: list[str], rounds: int) -> None:
    baseline = ms.get(("baseline onnxruntime fp32", 16))
    print(f"\nms per image, median of {rounds} alternating rounds (1 thread):")
    for batch_size in BATCHES:
        ref = ms[(REFERENCE, batch_size)]
        for name in names:
            m = ms[(name, batch_size)]
            versus = f"   {baseline / m:4.2f}x baseline at batch 16" if baseline else ""
            print(f"  batch {batch_size:>2}  {name:<26} {m:7.2f} ms   {ref / m:4.2f}x {REFERENCE}{versus}")


def print_agreement(engines: dict, images: np.ndarray) -> None:
    from vision.bundle import INPUT, LOGITS

    def logits(engine) -> np.ndarray:
        return np.concatenate([engine.run([LOGITS], {INPUT: images[i : i + 16]})[0] for i in range(0, len(images), 16)])

    reference = logits(engines[REFERENCE])
    print(f"\nagreement with {REFERENCE} on {len(images)} test photos (whole photo):")
    for name, engine in engines.items():
        if name.startswith("baseline"):
            continue  # another network: agreement says nothing about the runtime
        found = logits(engine)
        same = float((found.argmax(1) == reference.argmax(1)).mean())
        print(f"  {name:<17} max |logit difference| {np.abs(found - reference).max():.4f}   same top label {same:.1%}")


def print_parity(config, sha256: str) -> None:
    from vision.bundle import current_parity

    print("\nwhole-split accuracy deltas (the bundle's parity records, python -m training.parity):")
    records = current_parity(config, sha256)
    if not records:
        print("  none for this ONNX file and preprocessing: run python -m training.parity")
    for key, rec in records.items():
        rows = [(f"test {view}", m) for view, m in rec["wildlife_macro_f1"].items()]
        rows.append(("dev-ads ivory F1", rec["dev_ads_ivory_f1"]))
        for what, m in rows:
            ref, new = m["onnxruntime_fp32"], m["openvino_bf16"]
            print(f"  {key}: {what:<18} {ref:.4f} -> {new:.4f} ({(new - ref) * 100:+.2f} points)")
        verdict = "passed" if rec["passed"] else "not passed"
        print(f"  {key}: {verdict} ({rec['rule']}; measured {rec['measured']})")


def main(argv: list[str] | None = None) -> int:
    from training import data
    from vision.bundle import BundleConfig, bundle_paths
    from vision.engines import cpu_flags
    from vision.preprocess import load_for_model
    from vision.registry import create_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--photos", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=2.0, help="per engine, batch size and round")
    parser.add_argument("--baseline", type=Path, default=None, help="an older bundle's ONNX (e.g. 1.2.0) as shipped")
    args = parser.parse_args(argv)

    classifier = create_model(galleries=None, runtime="onnxruntime")
    onnx_path, json_path = bundle_paths(classifier.bundle.onnx_path)
    examples = data.load_split("test")[:: max(1, 2576 // args.photos)][: args.photos]
    images = np.stack(
        [load_for_model(ex.file().read_bytes(), classifier.preprocess, whole_only=True)[0] for ex in examples]
    )
    engines = engines_here(onnx_path, args.baseline)
    flags = sorted(f for f in cpu_flags() if f.startswith(("avx512_bf16", "amx", "avx512_vnni", "avx512f", "avx2")))
    print(f"CPU flags: {' '.join(flags) or 'unknown'}; engines: {', '.join(engines)}")
    print_speed(timings(engines, images, args.rounds, args.seconds), list(engines), args.rounds)
    print_agreement(engines, images)
    print_parity(BundleConfig.from_dict(json.loads(json_path.read_text())), classifier.model_info()["sha256"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
