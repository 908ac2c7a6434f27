"""Fuzz the decoding path with mutated real photos (``make fuzz``; not a test).

    .venv/bin/python benchmarks/fuzz_images.py [--cases 100000] [--seed 1] [--workers 2]

Real shared photos are encoded as baseline and progressive JPEG, PNG, GIF, WebP, BMP and
TIFF, 16-bit PNG, CMYK JPEG and animated GIF, with two header-only bombs, then mutated
(bytes flipped, inserted or cut, header sizes rewritten to huge values, chunks repeated)
and given to ``vision.runtime.prepare_image`` with the server's default
limits, each case in a worker process (a decoder that crashes the process is counted, not
fatal). Prints the outcomes (usable, or the failure reason), the failures that came from an
unexpected decoder exception rather than a named check, worker crashes, and the slowest
cases. Every outcome must be a usable image or a failure record: anything else is a bug.
"""

from __future__ import annotations

import argparse
import io
import random
import struct
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

FORMATS = (
    ("JPEG", {}),
    ("JPEG", {"progressive": True}),
    ("PNG", {}),
    ("GIF", {}),
    ("WEBP", {}),
    ("BMP", {}),
    ("TIFF", {}),
)
UNEXPECTED = "could not read the image:"  # prepare_image's message for an exception no check named


def seeds(count: int = 4) -> list[tuple[str, bytes]]:
    """A few real photos in every format the service accepts, plus 16-bit, CMYK and animated
    variants and two header-only bombs."""
    import numpy as np
    from PIL import Image

    from training import data

    examples = data.load_split("test")[:: 2576 // count][:count]
    out = []
    for ex in examples:
        with Image.open(ex.file()) as img:
            rgb = img.convert("RGB")
        for fmt, options in FORMATS:
            out.append((f"{fmt.lower()}{'-progressive' if options else ''}", _encode(rgb, fmt, **options)))
        gray16 = Image.fromarray((np.asarray(rgb.convert("L"), np.uint16) * 257).astype(np.uint16))
        out.append(("png-16bit", _encode(gray16, "PNG")))
        out.append(("jpeg-cmyk", _encode(rgb.convert("CMYK"), "JPEG")))
        frames = [rgb.rotate(angle) for angle in (90, 180)]
        out.append(("gif-animated", _encode(rgb, "GIF", save_all=True, append_images=frames, duration=100)))
    out.append(("gif-bomb", gif_claiming(6324, 6324)))
    out.append(("png-bomb", png_claiming(20000, 20000)))
    return out


def _encode(img, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **options)
    return buffer.getvalue()


def gif_claiming(width: int, height: int) -> bytes:
    header = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    return header + b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00\x3b"


def png_claiming(width: int, height: int) -> bytes:
    import zlib

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(64))) + chunk(b"IEND", b"")


def mutate(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """One mutation of ``data``: its name and the mutated bytes."""
    b = bytearray(data)
    kind = rng.choice(("flip", "cut", "insert", "huge_size", "repeat"))
    if kind == "flip":
        for _ in range(rng.randint(1, 24)):
            b[rng.randrange(len(b))] = rng.randrange(256)
    elif kind == "cut":
        del b[rng.randrange(1, len(b)) :]
    elif kind == "insert":
        at = rng.randrange(len(b))
        b[at:at] = rng.randbytes(rng.randint(1, 64))
    elif kind == "huge_size":  # a width/height field near the start rewritten to a large value
        at = rng.randrange(4, min(len(b) - 4, 64))
        values = _huge(rng)
        layout = rng.choice((">I", "<I")) if len(values) == 1 else rng.choice((">HH", "<HH"))
        b[at : at + 4] = struct.pack(layout, *values)
    else:
        at, length = rng.randrange(len(b)), rng.randint(8, 512)
        b[at:at] = b[at : at + length] * rng.randint(2, 50)
    return kind, bytes(b)


def _huge(rng: random.Random) -> tuple[int, ...]:
    if rng.random() < 0.5:
        return (rng.choice((65535, 40000, 2**31 - 1, 6324 * 6324, 39_999_999)),)
    return (rng.choice((65535, 40000, 6324, 1)), rng.choice((65535, 40000, 6324, 1)))


def run_case(case: tuple[str, bytes]) -> tuple[str, str, float]:
    """``(outcome, message, seconds)`` of one case in this worker."""
    import warnings

    from vision.preprocess import PreprocessConfig
    from vision.runtime import PreparedImage, prepare_image

    warnings.simplefilter("ignore")  # Pillow warns about damaged TIFF tags: the outcome says enough
    name, payload = case
    started = time.perf_counter()
    result = prepare_image(name, payload, PreprocessConfig(crops=((0.0, 0.0, 0.6, 0.6),)), **LIMITS)
    seconds = time.perf_counter() - started
    if isinstance(result, PreparedImage):
        return "usable", "", seconds
    return result.error_reason, result.error_message, seconds


LIMITS = {"max_pixels": 40_000_000, "max_decoded_bytes": 256 * 2**20, "max_bytes": 25 * 2**20}


def fuzz(cases: int, seed: int, workers: int) -> dict:
    """Run ``cases`` mutations; the counts and the notable cases."""
    rng = random.Random(seed)
    base = seeds()
    work = []
    for i in range(cases):
        fmt, data = base[i % len(base)]
        kind, payload = mutate(data, rng)
        work.append((f"{i}-{fmt}-{kind}.img", payload))
    outcomes: Counter = Counter()
    unexpected: Counter = Counter()
    crashes, slow = 0, []
    for start in range(0, len(work), 200):  # a fresh pool per block: one crash costs one block at most
        block = work[start : start + 200]
        try:
            with ProcessPoolExecutor(workers) as pool:
                for (name, payload), (outcome, message, seconds) in zip(block, pool.map(run_case, block)):
                    outcomes[outcome] += 1
                    if message.startswith(UNEXPECTED):
                        unexpected[message[:120]] += 1
                    slow.append((seconds, name, len(payload)))
        except BrokenProcessPool:
            crashes += 1
    return {"outcomes": outcomes, "unexpected": unexpected, "crashes": crashes, "slowest": sorted(slow)[-5:][::-1]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cases", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args(argv)
    started = time.perf_counter()
    found = fuzz(args.cases, args.seed, args.workers)
    print(f"{args.cases} mutated images (seed {args.seed}) in {time.perf_counter() - started:.0f} s")
    print("outcomes: " + ", ".join(f"{k} {v}" for k, v in found["outcomes"].most_common()))
    print(f"worker crashes (blocks of 200 lost): {found['crashes']}")
    print(f"failures from an unexpected decoder exception (named 'corrupt'): {sum(found['unexpected'].values())}")
    for message, n in found["unexpected"].most_common(10):
        print(f"  {n:>5}  {message}")
    print("slowest cases:")
    for seconds, name, size in found["slowest"]:
        print(f"  {seconds * 1000:8.1f} ms  {name} ({size} bytes)")
    return 1 if found["crashes"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
