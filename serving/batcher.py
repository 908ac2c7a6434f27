"""Micro-batching: images from concurrent requests share one model call.

Requests hand their preprocessed tensors to :meth:`MicroBatcher.submit` and await the
model's outputs (one array, or a tuple of arrays such as logits and embeddings). One
worker thread takes the first waiting image and everything else already queued (up to
``max_batch`` images); while other requests are still decoding (they announce themselves
with :meth:`MicroBatcher.expecting`) it waits for them, at most ``max_wait_ms``. It then
runs the model once and hands each request its rows. Inference never runs on the event
loop, and a lone request never waits for company.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)

RunFn = Callable[[np.ndarray], "np.ndarray | tuple[np.ndarray, ...]"]
BatchObserver = Callable[[int, float], None]
_STOP = object()
_POLL_S = 0.0005  # how often a waiting worker re-checks whether anyone is still expected


class BatcherClosed(RuntimeError):
    """The batcher was closed before the image was classified."""


@dataclass
class BatchStats:
    """What the batcher has done: model calls, images, and how many calls had each size."""

    batches: int = 0
    images: int = 0
    sizes: Counter = field(default_factory=Counter)

    @property
    def max_size(self) -> int:
        """The largest batch run so far (0 before the first)."""
        return max(self.sizes, default=0)

    def as_dict(self) -> dict:
        """JSON-ready counters."""
        return {
            "batches": self.batches,
            "images": self.images,
            "max_size": self.max_size,
            "sizes": {str(k): v for k, v in sorted(self.sizes.items())},
        }


@dataclass
class _Item:
    tensor: np.ndarray
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future


class MicroBatcher:
    """Gathers single images into batches for ``run`` (N x C x H x W -> an N-row array,
    or a tuple of N-row arrays); each image gets its rows in the same structure.

    ``observer(size, seconds)`` is called after each model call (for metrics).
    """

    def __init__(
        self, run: RunFn, *, max_batch: int = 16, max_wait_ms: float = 2.0, observer: BatchObserver | None = None
    ):
        self._run = run
        self.max_batch = max(1, int(max_batch))
        self.max_wait = max(0.0, float(max_wait_ms)) / 1000.0
        self._observer = observer
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._stats = BatchStats()
        self._stats_lock = threading.Lock()
        self._closed = False
        self._expected = 0
        self._thread = threading.Thread(target=self._work, name="wildscan-batcher", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        """True while the worker thread runs and the batcher accepts images."""
        return self._thread.is_alive() and not self._closed

    @property
    def stats(self) -> BatchStats:
        """A snapshot of the counters."""
        with self._stats_lock:
            return BatchStats(self._stats.batches, self._stats.images, Counter(self._stats.sizes))

    @contextmanager
    def expecting(self, count: int = 1) -> Iterator[None]:
        """Announce ``count`` images that will be submitted soon (while they decode)."""
        with self._stats_lock:
            self._expected += count
        try:
            yield
        finally:
            with self._stats_lock:
                self._expected -= count

    async def submit(self, tensors: list[np.ndarray]):
        """The model's outputs for the C x H x W tensors, stacked in order (an array, or a
        tuple of arrays when ``run`` returns a tuple); raises :class:`BatcherClosed`."""
        if self._closed:
            raise BatcherClosed("the model worker has stopped")
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in tensors]
        for tensor, fut in zip(tensors, futures):
            self._queue.put(_Item(tensor, loop, fut))
        rows = await asyncio.gather(*futures)
        if rows and isinstance(rows[0], tuple):
            return tuple(np.stack(column) for column in zip(*rows))
        return np.stack(rows) if rows else np.zeros((0, 0), np.float32)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the worker after the images already queued; later submits fail."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join(timeout)

    # --- worker thread ---------------------------------------------------------------

    def _work(self) -> None:
        while True:
            batch, stop = self._gather()
            if batch:
                self._run_batch(batch)
            if stop:
                self._fail_leftovers()
                return

    def _gather(self) -> tuple[list[_Item], bool]:
        """Block for one item, then take what is queued, waiting only while more are expected."""
        first = self._queue.get()
        if first is _STOP:
            return [], True
        batch = [first]
        deadline = time.monotonic() + self.max_wait
        while len(batch) < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if self._expected <= 0 or remaining <= 0:
                    break
                try:
                    item = self._queue.get(timeout=min(remaining, _POLL_S))
                except queue.Empty:
                    continue
            if item is _STOP:
                return batch, True
            batch.append(item)
        return batch, False

    def _run_batch(self, batch: list[_Item]) -> None:
        live = [it for it in batch if not it.future.cancelled()]
        if not live:
            return
        started = time.perf_counter()
        try:
            outputs = self._run(np.stack([it.tensor for it in live]))
        except Exception as e:  # hand the failure to every waiting request, keep serving
            log.exception("model call failed for a batch of %d", len(live))
            for it in live:
                _deliver(it, _set_exception, e)
            return
        elapsed = time.perf_counter() - started
        for i, it in enumerate(live):
            row = tuple(o[i] for o in outputs) if isinstance(outputs, tuple) else outputs[i]
            _deliver(it, _set_result, row)
        self._record(len(live), elapsed)

    def _record(self, size: int, seconds: float) -> None:
        with self._stats_lock:
            self._stats.batches += 1
            self._stats.images += size
            self._stats.sizes[size] += 1
        if self._observer is not None:
            self._observer(size, seconds)

    def _fail_leftovers(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not _STOP:
                _deliver(item, _set_exception, BatcherClosed("the model worker stopped"))


def _deliver(item: _Item, setter: Callable, value) -> None:
    """Complete a request's future on its own event loop (a closed loop has nobody waiting)."""
    with suppress(RuntimeError):
        item.loop.call_soon_threadsafe(setter, item.future, value)


def _set_result(future: asyncio.Future, value) -> None:
    if not future.done():
        future.set_result(value)


def _set_exception(future: asyncio.Future, error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
