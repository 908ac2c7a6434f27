"""Benchmark ``wildscan scan``: local and Ray engines against the model's inference-only rate.

Makes a folder of crawl-like JPEGs (real shared photos resized to 0.5 .. 2 MP, quality 90,
half of them progressive as most social-media photos are) in a temporary directory, then
measures in the same run, in ``--rounds`` alternating rounds (medians printed):

- inference only: the model on already-preprocessed tensors (decode excluded), in the
  local engine's layout (N processes x 1 onnxruntime thread) and, for reference, one
  process with N threads;
- the local engine (read, SHA-256, decode, PDQ, preprocess, inference, SQLite commits),
  end to end (worker start-up included) and steady state (first to last finished chunk);
- the Ray engine end to end, on a local Ray cluster started beforehand (actor start-up
  included; Ray returns results in bursts, so no steady-state figure is given).

Ratios are against the inference-only rate in the local engine's layout, and with
``--baseline OLD.onnx`` against that bundle's inference-only rate too (the issue's yardstick:
the 1.2.0 bundle, always in onnxruntime fp32, N processes x 1 thread). To show where
the gap comes from, it also times, in this process on one core, what each image costs
before the model (read, SHA-256, decode, resize, normalise, PDQ) and the JPEG decode alone,
and prints the ceiling that cost leaves any engine that runs on the same cores as the
model: inference / (inference + preparation), per core.

Not a test: numbers depend on the machine and on what else runs on it.

    .venv/bin/python benchmarks/bench_scan.py [--model PATH] [--images 300] [--workers N] [--rounds 3]
        [--baseline OLD.onnx]
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from serving.scan.api import make_engine  # noqa: E402
from serving.scan.inputs import iter_items  # noqa: E402
from serving.scan.local import default_workers  # noqa: E402
from serving.scan.store import ScanStore  # noqa: E402
from serving.scan.work import Progress  # noqa: E402
from vision.bundle import bundle_paths  # noqa: E402
from vision.hashing import sha256_file  # noqa: E402
from vision.registry import resolve_model  # noqa: E402
from vision.runtime import Classifier, prepare_image  # noqa: E402
from vision.settings import photos_dir  # noqa: E402

SHARED = photos_dir()  # $WILDSCAN_PHOTOS, else ../shared/data (vision.settings)


def make_photos(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """``count`` JPEGs of 0.5 .. 2 MP from varied shared photos; every second one progressive."""
    with open(SHARED / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    rng = random.Random(seed)
    chosen = rng.sample(rows, count)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, row in enumerate(chosen):
        pixels, aspect = rng.uniform(0.5e6, 2.0e6), rng.uniform(0.62, 0.9)
        width = int((pixels / aspect) ** 0.5) // 8 * 8
        height = int(width * aspect)
        with Image.open(SHARED / row["path"]) as im:
            big = im.convert("RGB").resize((width, height), Image.Resampling.BICUBIC)
        path = folder / f"{i:05d}.jpg"
        big.save(path, "JPEG", quality=90, progressive=i % 2 == 1)
        paths.append(path)
    return paths


def _inference_worker(
    model: str, paths: list[str], batch_size: int, threads: int, seconds: float, barrier, results, runtime=None
) -> None:
    classifier = Classifier.from_path(model, intra_threads=threads, max_batch=batch_size, runtime=runtime)
    tensors = [prepare_image(p, Path(p).read_bytes(), classifier.preprocess).tensor for p in paths[:batch_size]]
    batch = np.stack(tensors)
    classifier.run(batch)  # warm-up
    barrier.wait()
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        classifier.run(batch)
        done += len(batch)
    results.put(done / (time.perf_counter() - start))


def inference_only_rate(
    model: str,
    paths: list[Path],
    *,
    processes: int,
    threads: int,
    batch_size: int,
    seconds: float = 15.0,
    runtime: str | None = None,
) -> float:
    """Images/s of the model alone on preprocessed batches, ``processes`` x ``threads``
    (``runtime``: as for :func:`vision.bundle.load_bundle`; default the setting's choice)."""
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(processes), ctx.Queue()
    args = (model, [str(p) for p in paths], batch_size, threads, seconds, barrier, results, runtime)
    workers = [ctx.Process(target=_inference_worker, args=args) for _ in range(processes)]
    for w in workers:
        w.start()
    rates = [results.get() for _ in workers]
    for w in workers:
        w.join()
    return float(sum(rates))


def preparation_ms(paths: list[Path], cfg) -> tuple[float, float]:
    """``(everything before the model, JPEG decode alone)`` in ms per image, one core
    (second of two passes, so the files are in the page cache both times)."""
    from vision.preprocess import load_image

    draft = max(cfg.decode_size, 128)
    for _ in range(2):
        started = time.perf_counter()
        for p in paths:
            prepare_image(str(p), p.read_bytes(), cfg)
        prepare = (time.perf_counter() - started) / len(paths) * 1e3
        started = time.perf_counter()
        for p in paths:
            load_image(p.read_bytes(), draft_size=draft)
        decode = (time.perf_counter() - started) / len(paths) * 1e3
    return prepare, decode


class TimedProgress(Progress):
    """Progress that also notes when the first and the last chunk finished."""

    def __init__(self, total: int):
        super().__init__(total, quiet=True)
        self.first: tuple[float, int] | None = None
        self.last: tuple[float, int] | None = None

    def update(self, n: int) -> None:
        super().update(n)
        mark = (time.monotonic(), self.new)
        self.first = self.first or mark
        self.last = mark

    @property
    def steady_rate(self) -> float:
        """Images/s between the first and the last finished chunk (start-up excluded)."""
        (t0, n0), (t1, n1) = self.first, self.last
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0


def engine_rates(engine: str, folder: Path, model: str, work: Path, *, workers: int, batch_size: int, name: str = ""):
    """``(end to end, steady state)`` images/s of one engine on ``folder`` (fresh database)."""
    runner = make_engine(engine, model, workers=workers, batch_size=batch_size)
    items = list(iter_items([folder]))
    with ScanStore(work / f"{name or engine}.db", sha256_file(bundle_paths(model)[0])) as store:
        total, _ = store.register(items)
        progress = TimedProgress(total)
        runner.run(store.pending(items), store, progress)
        failures = sum(1 for r in store.records() if r.record.get("error"))
    if failures:
        print(f"  warning: {failures} failures in the {engine} scan", file=sys.stderr)
    return progress.rate, progress.steady_rate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="bundle path (default: the shipped model)")
    parser.add_argument("--baseline", default=None, help="an older bundle whose inference-only rate is the yardstick")
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=15.0, help="duration of each inference-only measurement")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of every phase")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray engine")
    args = parser.parse_args(argv)

    model = str(resolve_model(args.model))
    with tempfile.TemporaryDirectory(prefix="wildscan-bench-") as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        paths = make_photos(work / "photos", args.images)
        megapixels = np.mean([Image.open(p).size[0] * Image.open(p).size[1] for p in paths]) / 1e6
        print(
            f"{len(paths)} JPEGs (half progressive), mean {megapixels:.2f} MP, made in "
            f"{time.perf_counter() - started:.0f} s; model {Path(model).name}; {args.workers} workers, "
            f"batch {args.batch_size}, {os.cpu_count()} CPUs, {args.rounds} alternating rounds"
        )
        phases: dict[str, list[float]] = {}
        for r in range(args.rounds):
            for name, value in measure_round(args, model, paths, work, r).items():
                phases.setdefault(name, []).append(value)
        report(args, model, paths, {k: float(np.median(v)) for k, v in phases.items()})
        if not args.no_ray:
            ray_rate(args, model, work, np.median(phases["local end to end"]), np.median(phases["inference only"]))
    return 0


def measure_round(args, model: str, paths: list[Path], work: Path, r: int) -> dict[str, float]:
    """One round of every phase, one after the other."""
    layout = {"processes": args.workers, "threads": 1, "batch_size": args.batch_size, "seconds": args.seconds}
    out = {"inference only": inference_only_rate(model, paths, **layout)}
    if args.baseline:
        out["baseline inference only"] = inference_only_rate(args.baseline, paths, **layout, runtime="onnxruntime")
    whole, steady = engine_rates(
        "local", work / "photos", model, work, workers=args.workers, batch_size=args.batch_size, name=f"local{r}"
    )
    out.update({"local end to end": whole, "local steady state": steady})
    out["inference only, 1 process"] = inference_only_rate(
        model, paths, processes=1, threads=args.workers, batch_size=args.batch_size, seconds=args.seconds
    )
    return out


def report(args, model: str, paths: list[Path], med: dict[str, float]) -> None:
    per_process = med["inference only"]
    print(f"{f'inference only, {args.workers} processes x 1 thread:':40s}{per_process:8.1f} images/s")
    print(
        f"{f'inference only, 1 process x {args.workers} threads:':40s}{med['inference only, 1 process']:8.1f} images/s"
    )
    infer = args.workers / per_process * 1e3  # ms per image on one core
    prepare, decode = preparation_ms(paths, Classifier.from_path(model).preprocess)
    print(
        f"{'per image on one core:':40s}inference {infer:.1f} ms; before the model {prepare:.1f} ms "
        f"(of which JPEG decode {decode:.1f} ms)"
    )
    print(f"{'ceiling this leaves a local engine:':40s}{infer / (infer + prepare):8.2f} x inference only")
    for name in ("local end to end", "local steady state"):
        line = f"{name + ':':40s}{med[name]:8.1f} images/s = {med[name] / per_process:.2f} x inference only"
        if "baseline inference only" in med:
            line += f" = {med[name] / med['baseline inference only']:.2f} x the baseline's inference only"
        print(line)
    if "baseline inference only" in med:
        print(f"{'baseline inference only:':40s}{med['baseline inference only']:8.1f} images/s")


def ray_rate(args, model: str, work: Path, local_whole: float, per_process: float) -> None:
    import ray

    ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
    try:
        ray_whole, _ = engine_rates(
            "ray", work / "photos", model, work, workers=args.workers, batch_size=args.batch_size
        )
    finally:
        ray.shutdown()
    print(
        f"{'ray engine, end to end:':40s}{ray_whole:8.1f} images/s = {ray_whole / per_process:.2f} x inference only"
        f" = {ray_whole / local_whole:.2f} x local"
    )


if __name__ == "__main__":
    sys.exit(main())
