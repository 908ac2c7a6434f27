"""Server memory under sustained concurrent load, with and without the malloc-arena cap (not a test).

    .venv/bin/python benchmarks/bench_load.py [--rounds 3] [--seconds 30] [--concurrency 32]

For each setting of ``WILDSCAN_MALLOC_ARENAS`` (0: glibc's default, one arena per thread
up to 8 x cores; 2: the server's default), ``wildscan serve`` is started in a subprocess
(throw-away database and key) and loaded by ``--concurrency`` clients posting one
1600x1200 JPEG per request for ``--rounds`` rounds of ``--seconds``. Prints the server's
resident memory (VmRSS) after start-up and after each round, images/s per round, and the
number of non-200 answers (expected: 0).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_api import make_photos, resolve_model, start_server, throughput
from bench_decode_memory import status_mib


def run(model: str, arenas: int, args: argparse.Namespace, photos) -> list[tuple[str, float, float]]:
    """``(moment, RSS MiB, images/s)`` for one arena setting."""
    import os

    os.environ["WILDSCAN_MALLOC_ARENAS"] = str(arenas)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        proc, url, key = start_server(model, 1, Path(tmp))
        try:
            rows.append(("after start", status_mib("VmRSS", proc.pid), float("nan")))
            for r in range(1, args.rounds + 1):
                rate = throughput(url, key, photos, args.concurrency, args.seconds)  # raises on any non-200
                rows.append((f"after round {r}", status_mib("VmRSS", proc.pid), rate))
        finally:
            proc.terminate()
            proc.wait(30)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--arenas", default="0,2", help="WILDSCAN_MALLOC_ARENAS values to compare (0: glibc's default)")
    args = p.parse_args(argv)
    model = resolve_model(args.model)
    photos = make_photos()
    print(f"concurrency {args.concurrency}, {args.rounds} rounds of {args.seconds:.0f} s, every answer 200")
    for arenas in (int(a) for a in args.arenas.split(",")):
        print("\nglibc default arenas:" if arenas == 0 else f"\nWILDSCAN_MALLOC_ARENAS={arenas}:", flush=True)
        for moment, rss, rate in run(model, arenas, args, photos):
            speed = "" if rate != rate else f"   {rate:6.1f} images/s"
            print(f"  {moment:<15} RSS {rss:7.0f} MiB{speed}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
