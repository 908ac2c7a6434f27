"""Decode and explain limits that hold when requests time out (serving.limits): the slot is
held until the thread really finishes, and work whose request is gone does not start."""

from __future__ import annotations

import io
import threading
import time

import anyio
import pytest
from fastapi.testclient import TestClient
from memory import status_mib
from PIL import Image

from serving.app import create_app
from serving.limits import Cancelled, WorkLimit, check
from serving.settings import Settings
from serving.store import Store


def test_slots_are_held_until_the_threads_end_and_queued_work_is_skipped():
    limit = WorkLimit(2)
    started = []

    def job(cancelled: threading.Event) -> str:
        started.append(1)
        for _ in range(20):  # 0.2 s of work in steps, stopping when its request is gone
            time.sleep(0.01)
            check(cancelled)
        return "done"

    async def main() -> list[str]:
        outcomes: list[str] = []

        async def request() -> None:
            try:
                with anyio.fail_after(0.05):
                    outcomes.append(await limit.run(job))
            except TimeoutError:
                outcomes.append("timeout")

        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(request)
        return outcomes

    assert anyio.run(main) == ["timeout"] * 10  # every caller was released on time
    deadline = time.monotonic() + 2
    while limit.running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert limit.running == 0 and limit.peak <= 2  # never more than two at once, even abandoned
    time.sleep(0.3)
    assert len(started) <= 4  # the queued jobs of requests that were gone never started


def test_check_raises_only_when_cancelled():
    event = threading.Event()
    check(event)
    check(None)
    event.set()
    with pytest.raises(Cancelled):
        check(event)


def test_timed_out_uploads_never_decode_past_the_limit(tiny_bundle, tmp_path, photo):
    img = Image.open(photo("ivory_carving")).convert("RGB").resize((2400, 2400))
    buffer = io.BytesIO()
    img.save(buffer, format="PNG", compress_level=1)
    big = buffer.getvalue()  # a real photo as a large PNG: slow to decode
    settings = Settings(model=str(tiny_bundle), data_dir=tmp_path / "var", request_timeout_s=0.1)
    key = Store(settings.db_path).add_key("a")
    app = create_app(settings)
    statuses: list[int] = []

    def post() -> None:
        files = [("files", (f"big{i}.png", big, "image/png")) for i in range(4)]
        response = client.post("/v1/classify", files=files, headers={"Authorization": f"Bearer {key}"})
        statuses.append(response.status_code)

    rss = [status_mib("VmRSS")]
    done = threading.Event()

    def sample() -> None:  # this process's resident memory, every 10 ms, during the burst
        while not done.wait(0.01):
            rss.append(status_mib("VmRSS"))

    with TestClient(app) as client:
        sampler = threading.Thread(target=sample)
        sampler.start()
        threads = [threading.Thread(target=post) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        limit = app.state.wildscan.decode_limit
        deadline = time.monotonic() + 10
        while limit.running and time.monotonic() < deadline:
            time.sleep(0.05)
        done.set()
        sampler.join()
        assert statuses.count(503) >= 5  # the requests ran out of time...
        assert limit.peak <= limit.slots  # ...and the decoders never exceeded the limit
        assert limit.running == 0  # abandoned work stopped soon after its requests were gone
    # 24 uploads of 17 MB of pixels each: decoded all at once they would take well over 1 GB
    assert max(rss) - rss[0] < 400, f"resident memory grew by {max(rss) - rss[0]:.0f} MiB"
