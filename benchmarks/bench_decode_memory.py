"""Peak memory of preparing one upload at the limits (not a test).

    .venv/bin/python benchmarks/bench_decode_memory.py

Each case runs ``vision.runtime.prepare_image`` once, with the server's default limits and the
shipped model's preprocessing, in a fresh process; the figure is that process's peak resident
memory during the call (``VmHWM``, reset just before it through ``/proc/self/clear_refs``)
minus its resident memory just before the call (Linux). Cases: the largest
photos the limits let through (a 40 MP JPEG, a 36 MP PNG of a real photo), and the small
files that once cost up to 0.84 GB (a 2.4 KB GIF claiming 6324 x 6324, a 1 x 39,999,999 PNG),
now refused from their headers.
"""

from __future__ import annotations

import io
import multiprocessing as mp
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fuzz_images import gif_claiming, png_claiming


def cases() -> dict[str, bytes]:
    from PIL import Image

    from training import data

    photo = Image.open(data.load_split("test")[0].file()).convert("RGB")
    out = {}
    for name, size, fmt in (
        ("JPEG 8000x5000 (40 MP)", (8000, 5000), "JPEG"),
        ("PNG 6000x6000 (36 MP)", (6000, 6000), "PNG"),
    ):
        buffer = io.BytesIO()
        photo.resize(size).save(buffer, fmt, **({"quality": 90} if fmt == "JPEG" else {"compress_level": 1}))
        out[name] = buffer.getvalue()
    out["GIF claiming 6324x6324"] = gif_claiming(6324, 6324)
    out["PNG 1x39,999,999"] = png_claiming(1, 39_999_999)
    return out


def measure(payload: bytes, queue) -> None:
    import time

    from vision.registry import create_model
    from vision.runtime import PreparedImage, prepare_image

    cfg = create_model(galleries=None).preprocess
    Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark (VmHWM) to the current RSS
    before = status_mib("VmRSS")
    started = time.perf_counter()
    result = prepare_image("case", payload, cfg, max_pixels=40_000_000, max_decoded_bytes=256 * 2**20)
    seconds = time.perf_counter() - started
    peak = status_mib("VmHWM")
    outcome = "usable" if isinstance(result, PreparedImage) else f"refused: {result.error_reason}"
    queue.put((peak - before, seconds, outcome))


def status_mib(field: str, pid: int | str = "self") -> float:
    """A memory figure (``VmRSS``, ``VmHWM``...) of process ``pid`` in MiB (Linux ``/proc``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    context = mp.get_context("spawn")
    print("peak resident memory of one prepare_image call above the process before it:")
    for name, payload in cases().items():
        queue = context.Queue()
        process = context.Process(target=measure, args=(payload, queue))
        process.start()
        extra, seconds, outcome = queue.get()
        process.join()
        print(f"  {name:<26} {len(payload) / 1024:9.1f} KiB  +{extra:6.0f} MiB  {seconds * 1000:7.0f} ms  {outcome}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
