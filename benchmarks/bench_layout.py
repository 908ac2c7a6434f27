"""Worker layout, measured: processes x threads x batch for inference on this machine (not a test).

    .venv/bin/python benchmarks/bench_layout.py [--seconds 3] [--rounds 3]

For the shipped model (whole-photo view of real test photos) and each runtime this machine
offers (onnxruntime fp32; OpenVINO bf16 where the CPU has native bf16), every layout of
P processes x T threads per process (P x T = the cores this process may use) and batch
sizes 1, 2, 4, 8, 16 is run for ``--seconds``; all P processes run at once and their images
are summed. Rounds alternate between layouts; the median images/s is printed with its ratio
to the scan's default (processes = cores, 1 thread, batch 16) and to the API's (1 process,
1 thread). Inference only: decoding is the same in every layout.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _images(n: int = 32):
    import numpy as np

    from training import data
    from vision.preprocess import load_for_model
    from vision.registry import create_model

    cfg = create_model(galleries=None, runtime="onnxruntime").preprocess
    examples = data.load_split("test")[::80][:n]
    return np.stack([load_for_model(ex.file().read_bytes(), cfg, whole_only=True)[0] for ex in examples])


def _worker(setting: str, threads: int, batch: int, seconds: float, start, queue) -> None:
    from vision.bundle import INPUT, LOGITS
    from vision.registry import create_model

    classifier = create_model(galleries=None, runtime=setting, intra_threads=threads)
    engine = classifier.bundle.session
    images = _images()[:batch]
    engine.run([LOGITS], {INPUT: images})  # warm
    start.wait()
    began, done = time.perf_counter(), 0
    while time.perf_counter() - began < seconds:
        engine.run([LOGITS], {INPUT: images})
        done += batch
    queue.put(done / (time.perf_counter() - began))


def throughput(setting: str, processes: int, threads: int, batch: int, seconds: float) -> float:
    """Images/s of ``processes`` processes running at once."""
    context = mp.get_context("spawn")
    start, queue = context.Barrier(processes + 1), context.Queue()
    workers = [
        context.Process(target=_worker, args=(setting, threads, batch, seconds, start, queue)) for _ in range(processes)
    ]
    for w in workers:
        w.start()
    start.wait()
    rates = [queue.get() for _ in workers]
    for w in workers:
        w.join()
    return sum(rates)


def main(argv: list[str] | None = None) -> int:
    from vision.engines import native_bf16, openvino_installed

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--runtimes", default="onnxruntime,openvino-bf16", help="runtime settings to measure")
    args = p.parse_args(argv)
    cores = len(os.sched_getaffinity(0))
    wanted = args.runtimes.split(",")
    settings = [s for s in wanted if s == "onnxruntime" or (openvino_installed() and native_bf16())]
    layouts = [(p, cores // p) for p in range(1, cores + 1) if cores % p == 0]
    if (1, 1) not in layouts:
        layouts.append((1, 1))
    runs = {(s, p, t, b): [] for s in settings for p, t in layouts for b in (1, 2, 4, 8, 16)}
    for _ in range(args.rounds):
        for key in runs:
            runs[key].append(throughput(*key, args.seconds))
    median = {k: statistics.median(v) for k, v in runs.items()}
    print(f"{cores} cores; images/s, median of {args.rounds} alternating rounds of {args.seconds:.0f} s")
    for setting in settings:
        scan_default = median[(setting, cores, 1, 16)]
        api_default = median[(setting, 1, 1, 16)]
        print(f"\n{setting}: processes x threads, batch -> images/s (x scan default {cores}x1 b16 | x 1x1 b16)")
        for (s, p, t, b), rate in median.items():
            if s == setting:
                print(
                    f"  {p} x {t}  batch {b:>2}  {rate:7.1f}   {rate / scan_default:4.2f}x | {rate / api_default:4.2f}x"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
