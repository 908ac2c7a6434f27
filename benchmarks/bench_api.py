"""Benchmark the API over loopback against in-process ``Classifier.predict`` (not a test).

    .venv/bin/python benchmarks/bench_api.py [--model NAME_OR_PATH] [--threads 1]

Prints p50/p99 latency of one 1600x1200 JPEG per request, and images/s at concurrency
1, 8 and 32, each as a ratio to the in-process ``predict`` rate on the same photos in
the same run (one image per call, and batches of 8). The server is ``wildscan serve``
started in a subprocess with a throw-away database and key; the photos are real shared
photos upscaled to 1600x1200.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from vision.settings import photos_dir  # noqa: E402

SHARED = photos_dir()  # $WILDSCAN_PHOTOS, else ../shared/data (vision.settings)
LABELS = (
    "ivory_carving",
    "reef_coral_live",
    "snake_live",
    "ceramic_lookalike",
    "orchid",
    "bird_raptor",
    "lizard_live",
    "leather_goods",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="bundle name or path (default: the shipped model in models/)")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads, server and in-process")
    p.add_argument("--latency-requests", type=int, default=60, help="sequential requests for p50/p99")
    p.add_argument("--seconds", type=float, default=8.0, help="measuring time per concurrency level")
    p.add_argument("--concurrency", default="1,8,32", help="comma-separated client concurrency levels")
    return p.parse_args(argv)


def resolve_model(name: str | None) -> str:
    """The model to benchmark: ``--model``, else the shipped one; exits with a hint when neither exists."""
    from vision.registry import default_model, list_models

    if name:
        return name
    if default_model() in list_models():
        return default_model()
    sys.exit(f"no shipped model {default_model()!r} in models/ yet; pass --model PATH/TO/BUNDLE.onnx")


def make_photos() -> list[tuple[str, bytes]]:
    """One real photo per label, upscaled to 1600x1200 and saved as a quality-90 JPEG."""
    from PIL import Image

    with open(SHARED / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    photos = []
    for label in LABELS:
        row = next(r for r in rows if r["label"] == label)
        with Image.open(SHARED / row["path"]) as img:
            big = img.convert("RGB").resize((1600, 1200), Image.Resampling.BICUBIC)
        buf = io.BytesIO()
        big.save(buf, format="JPEG", quality=90)
        photos.append((f"{label}.jpg", buf.getvalue()))
    return photos


def in_process_rates(model: str, threads: int, photos: list[tuple[str, bytes]], seconds: float) -> dict[str, float]:
    """Images/s of ``Classifier.predict``: one image per call, and batches of 8."""
    from vision.registry import create_model

    classifier = create_model(model, intra_threads=threads, max_batch=16)
    classifier.predict(photos[:2])  # warm-up
    rates = {}
    for name, batch in (("predict x1", 1), ("predict x8", 8)):
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds / 2:
            chunk = [photos[(done + i) % len(photos)] for i in range(batch)]
            classifier.predict(chunk)
            done += batch
        rates[name] = done / (time.perf_counter() - started)
    return rates


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str, threads: int, data_dir: Path) -> tuple[subprocess.Popen, str, str]:
    """``wildscan serve`` in a subprocess with a fresh key; returns (process, base URL, key)."""
    import httpx

    from serving.store import Store

    with Store(data_dir / "wildscan.db") as store:
        key = store.add_key("bench")
    port = free_port()
    env = {**os.environ, "WILDSCAN_DATA_DIR": str(data_dir)}
    cmd = [
        sys.executable,
        "-m",
        "vision.cli",
        "serve",
        "--port",
        str(port),
        "--model",
        model,
        "--threads",
        str(threads),
    ]
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited: {proc.stderr.read().decode(errors='replace')[-2000:]}")
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return proc, url, key
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.terminate()
    sys.exit("server did not become ready within 60 s")


def post(client, url: str, photo: tuple[str, bytes]) -> None:
    response = client.post(url + "/v1/classify", files=[("files", (photo[0], photo[1], "image/jpeg"))])
    if response.status_code != 200:
        raise RuntimeError(f"{response.status_code}: {response.text[:300]}")


def latency(url: str, key: str, photo: tuple[str, bytes], n: int) -> tuple[float, float]:
    """p50 and p99 in ms of ``n`` sequential one-image requests."""
    import httpx

    with httpx.Client(headers={"X-API-Key": key}, timeout=60) as client:
        for _ in range(5):
            post(client, url, photo)
        times = []
        for _ in range(n):
            started = time.perf_counter()
            post(client, url, photo)
            times.append((time.perf_counter() - started) * 1000)
    cuts = statistics.quantiles(times, n=100, method="inclusive")
    return cuts[49], cuts[98]


def throughput(url: str, key: str, photos: list[tuple[str, bytes]], concurrency: int, seconds: float) -> float:
    """Images/s with ``concurrency`` clients posting one image per request for ``seconds``."""
    import httpx

    counts = [0] * concurrency
    errors: list[BaseException] = []
    deadline = [0.0]  # set by the main thread before the clients are released
    barrier = threading.Barrier(concurrency + 1)

    def client_loop(slot: int) -> None:
        with httpx.Client(headers={"X-API-Key": key}, timeout=120) as client:
            post(client, url, photos[slot % len(photos)])  # warm the connection
            barrier.wait()
            i = slot
            try:
                while time.perf_counter() < deadline[0]:
                    post(client, url, photos[i % len(photos)])
                    counts[slot] += 1
                    i += 1
            except BaseException as e:  # reported after the run
                errors.append(e)

    workers = [threading.Thread(target=client_loop, args=(s,), daemon=True) for s in range(concurrency)]
    for w in workers:
        w.start()
    started = time.perf_counter()
    deadline[0] = started + seconds
    barrier.wait()
    for w in workers:
        w.join()
    if errors:
        raise errors[0]
    return sum(counts) / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    model = resolve_model(args.model)
    photos = make_photos()
    print(
        f"model {model}; {len(photos)} photos at 1600x1200 "
        f"({sum(len(d) for _, d in photos) // len(photos) // 1024} KiB "
        f"each on average); onnxruntime threads {args.threads}; cpus {os.cpu_count()}"
    )
    rates = in_process_rates(model, args.threads, photos, args.seconds)
    for name, rate in rates.items():
        print(f"in-process {name:<11} {rate:8.1f} images/s")
    with tempfile.TemporaryDirectory() as tmp:
        proc, url, key = start_server(model, args.threads, Path(tmp))
        try:
            p50, p99 = latency(url, key, photos[0], args.latency_requests)
            print(f"latency, one 1600x1200 JPEG per request: p50 {p50:.1f} ms, p99 {p99:.1f} ms")
            print(f"{'concurrency':>11} {'images/s':>9} {'/ predict x1':>13} {'/ predict x8':>13}")
            for level in (int(c) for c in args.concurrency.split(",")):
                rate = throughput(url, key, photos, level, args.seconds)
                print(
                    f"{level:>11} {rate:9.1f} {rate / rates['predict x1']:12.2f}x {rate / rates['predict x8']:12.2f}x"
                )
        finally:
            proc.terminate()
            proc.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
