"""The local engine: one worker process per core, each reading, decoding and classifying.

Each worker holds its own onnxruntime session with one intra-op thread and runs it on
batches of ``batch_size`` images it decoded itself, so no core is oversubscribed: on two
cores, two single-threaded processes run the model faster than one process with two
threads (10-30 % in the issue's measurement; ``benchmarks/bench_scan.py`` prints both),
and the ~600 KB tensor of each image never crosses a process boundary. The main process
only commits results to the database and draws the progress bar.

A worker that dies (a decoder crash in native code) does not end the run: its chunks are
retried one image at a time in a fresh pool, and the image that kills a worker again
becomes a failure record with reason ``worker_crashed``.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from vision.errors import ImageError
from vision.records import Result

from ..settings import one_thread_per_worker
from .inputs import ScanItem
from .store import Committer, ScanStore, known_digests, open_reader
from .work import EngineError, Outcome, Progress, batched, process_chunk

log = logging.getLogger(__name__)

_worker = None  # per-process state, set by _init_worker


def default_workers() -> int:
    """One worker per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class _WorkerState:
    """What a worker process keeps between chunks: its model and a database reader."""

    def __init__(
        self, model_path: str, db_path: str | None, scorer: str | None, batch_size: int, galleries, runtime=None
    ):
        from vision.runtime import Classifier

        self.classifier = Classifier.from_path(
            model_path, intra_threads=1, inter_threads=1, max_batch=batch_size, galleries=galleries, runtime=runtime
        )
        self.scorer = scorer
        self.reader = open_reader(db_path) if db_path else None

    def known(self, digests: set[str]) -> set[str]:
        if self.reader is None or self.scorer is None or not digests:
            return set()
        return known_digests(self.reader, self.scorer, digests)


def _init_worker(
    model_path: str, db_path: str | None, scorer: str | None, batch_size: int, galleries, parent: int, runtime=None
) -> None:
    global _worker
    die_with_parent(parent)
    _worker = _WorkerState(model_path, db_path, scorer, batch_size, galleries, runtime)


def die_with_parent(parent: int) -> None:
    """Ask Linux to kill this worker when the scan's main process dies (SIGKILL included), so
    a killed scan leaves no workers behind (prctl PR_SET_PDEATHSIG; elsewhere a no-op)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def run_chunk(items: list[ScanItem]) -> list[Outcome]:
    """Process one chunk in a worker (the default task of the pool)."""
    if _worker is None:
        raise RuntimeError("run_chunk runs in a worker started with _init_worker")
    return process_chunk(items, _worker.classifier, _worker.known)


class LocalEngine:
    """Runs the items a store still lacks through a pool of worker processes.

    ``chunk_fn`` is the function a worker applies to a chunk (a module-level function,
    so it can be sent to a spawned process); the default classifies with the bundle.
    ``galleries``: the reference galleries the workers match against, as for
    :class:`vision.runtime.Classifier` (``scan`` passes a copy pinned at the start).
    """

    def __init__(
        self,
        model_path: str | Path,
        *,
        workers: int | None = None,
        batch_size: int = 4,
        chunk_fn: Callable[[list[ScanItem]], list[Outcome]] = run_chunk,
        galleries: str | Path | None = "auto",
        runtime: str | None = None,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.runtime = runtime  # the runtime setting the workers load the model with (vision.engines)
        self.model_path = str(model_path)
        self.workers = workers or default_workers()
        self.batch_size = batch_size
        self.chunk_fn = chunk_fn
        self.galleries = galleries
        self._db_path: str | None = None
        self._scorer: str | None = None

    def run(self, todo: Iterable[ScanItem], store: ScanStore, progress: Progress) -> None:
        """Process every item of ``todo``, committing to ``store`` as chunks finish."""
        self._db_path, self._scorer = str(store.path), store.scorer
        committer = Committer(store)
        chunks = batched(todo, self.batch_size)
        pool = self._started_pool()
        try:
            while suspects := self._run_until_crash(pool, chunks, committer, progress):
                pool.shutdown(cancel_futures=True)
                pool = self._isolate(suspects, committer, progress)
        finally:
            committer.flush()
            pool.shutdown(cancel_futures=True)

    def _started_pool(self) -> ProcessPoolExecutor:
        """A pool whose workers have started and run an empty chunk.

        Raises :class:`EngineError` when they cannot (a worker that dies on nothing would
        otherwise make every image look like the one that crashed it).
        """
        pool = self._new_pool()
        try:
            pool.submit(self.chunk_fn, []).result()
        except BrokenProcessPool as e:
            pool.shutdown(cancel_futures=True)
            raise EngineError(
                "the scan's worker processes could not start (see the errors above); "
                "when calling from Python, run the scan from an importable script or module"
            ) from e
        return pool

    def _new_pool(self) -> ProcessPoolExecutor:
        one_thread_per_worker()
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),  # never fork a process holding onnxruntime threads
            initializer=_init_worker,
            initargs=(
                self.model_path,
                self._db_path,
                self._scorer,
                self.batch_size,
                self.galleries,
                os.getpid(),
                self.runtime,
            ),
        )

    def _run_until_crash(
        self, pool, chunks: Iterator[list[ScanItem]], committer: Committer, progress: Progress
    ) -> list[ScanItem]:
        """Keep the pool busy (two chunks per worker in flight) until ``chunks`` runs out or
        a worker dies; returns the items of the chunks lost to the crash (empty if none)."""
        inflight: dict[Future, list[ScanItem]] = {}
        suspects: list[ScanItem] = []
        while True:
            while not suspects and len(inflight) < 2 * self.workers and (chunk := next(chunks, None)):
                inflight[pool.submit(self.chunk_fn, chunk)] = chunk
            if not inflight:
                return suspects
            finished, _ = wait(inflight, return_when=FIRST_COMPLETED)
            for future in finished:
                chunk = inflight.pop(future)
                try:
                    outcomes = future.result()
                except BrokenProcessPool:
                    suspects.extend(chunk)
                    continue
                committer.add(chunk, outcomes)
                progress.update(len(chunk))

    def _isolate(self, items: list[ScanItem], committer: Committer, progress: Progress) -> ProcessPoolExecutor:
        """After a crash: each suspect image alone, so the one that kills a worker is known;
        returns a fresh pool for the rest of the run."""
        log.warning("a worker process died; retrying %d images one at a time", len(items))
        committer.flush()
        pool = self._started_pool()
        for item in items:
            try:
                outcomes = pool.submit(self.chunk_fn, [item]).result()
            except BrokenProcessPool:
                log.warning("%s crashed a worker process; recorded as a failure", item.path)
                outcomes = [crash_outcome(item)]
                pool.shutdown(cancel_futures=True)
                pool = self._started_pool()
            committer.add([item], outcomes)
            progress.update(1)
        return pool


def crash_outcome(item: ScanItem) -> Outcome:
    """The failure record of an item whose processing killed the worker process."""
    error = ImageError("decoding this file crashed the worker process", "worker_crashed")
    return Outcome(item.item_id, None, Result.failure(item.path, error).to_dict())
