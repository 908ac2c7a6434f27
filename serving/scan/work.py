"""The work on one item, the same in every engine: read, hash, decode, classify.

An :class:`Outcome` says what became of an item:

- ``sha256`` set and ``record`` set: new result for those bytes (a score or a decode
  failure such as ``truncated``), to be stored once under (sha256, model);
- ``sha256`` set and ``record`` ``None``: those bytes were already scored (earlier in the
  run, or in a run before); the item only links to that result;
- ``sha256`` ``None``: no bytes to key by (missing, unreadable or empty file, unusable
  manifest row); ``record`` is the item's own failure record.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from vision.errors import ImageError, Reason, WildscanError
from vision.hashing import sha256_bytes
from vision.preprocess import PreprocessConfig
from vision.records import Result
from vision.runtime import Classifier, PreparedImage, prepare_image, read_file

from .inputs import ScanItem

T = TypeVar("T")

log = logging.getLogger(__name__)


class EngineError(WildscanError):
    """An engine that cannot run at all: workers that do not start, Ray not installed."""

    reason = Reason.ENGINE_FAILED


@dataclass(frozen=True)
class Outcome:
    """What became of one item (see the module docstring)."""

    item_id: str
    sha256: str | None
    record: dict | None


def read_item(item: ScanItem) -> bytes | Result:
    """The item's bytes, or a failure record when there are none to read."""
    if item.error:
        return Result.failure(item.path, ImageError(item.error["message"], item.error["reason"]))
    if item.data is not None:
        return item.data
    try:
        return read_file(item.path)
    except ImageError as e:
        return Result.failure(item.path, e)


def prepare_item(item: ScanItem, cfg: PreprocessConfig, *, lazy_crops: bool = True) -> PreparedImage | Result:
    """Read, hash, decode and preprocess one item; never raises on bad input."""
    data = read_item(item)
    if isinstance(data, Result):
        return data
    return prepare_image(item.path, data, cfg, lazy_crops=lazy_crops)


def process_chunk(
    items: list[ScanItem],
    classifier: Classifier,
    known: Callable[[set[str]], set[str]] = lambda shas: set(),
) -> list[Outcome]:
    """Outcomes for a chunk of items, in order, running the model once on the new images.

    ``known(shas)`` returns the digests already scored for this model: those items (and
    repeats of the same bytes inside the chunk) are linked, not decoded again.
    """
    model = classifier.model_info()
    data = [read_item(item) for item in items]
    digests = [sha256_bytes(d) if isinstance(d, bytes) and d else None for d in data]
    already = known({d for d in digests if d})
    outcomes: list[Outcome | None] = [None] * len(items)
    first_of: dict[str, int] = {}
    to_run: list[tuple[int, PreparedImage | Result]] = []
    for i, (item, content, digest) in enumerate(zip(items, data, digests)):
        if isinstance(content, bytes) and not content:  # prepare_image words the "empty" failure
            empty = prepare_image(item.path, content, classifier.preprocess)
            content = empty if isinstance(empty, Result) else content
        if isinstance(content, Result):
            outcomes[i] = Outcome(item.item_id, None, _with_model(content, model))
        elif digest is not None and (digest in already or digest in first_of):
            outcomes[i] = Outcome(item.item_id, digest, None)
        else:
            digest = digest or sha256_bytes(content)
            first_of[digest] = i
            to_run.append((i, prepare_image(item.path, content, classifier.preprocess, sha256=digest)))
    results = classifier.classify_prepared([prepared for _, prepared in to_run])
    for (i, _), result in zip(to_run, results):
        outcomes[i] = Outcome(items[i].item_id, result.sha256, result.to_dict())
    return [outcome for outcome in outcomes if outcome is not None]  # every item has its outcome


def _with_model(result: Result, model: dict) -> dict:
    result.model = model
    return result.to_dict()


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of at most ``size`` items."""
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class Progress:
    """A tqdm bar with rate and ETA, or (``quiet``) an INFO log line every 30 s."""

    def __init__(self, total: int, done: int = 0, *, quiet: bool = False, log_every: float = 30.0):
        self.total, self.count, self.quiet, self.log_every = total, done, quiet, log_every
        self.started = self._last_log = time.monotonic()
        self.new = 0
        self._bar = None
        if not quiet:
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=done, unit="img", dynamic_ncols=True, smoothing=0.1)

    def update(self, n: int) -> None:
        """Count ``n`` more finished items."""
        self.count += n
        self.new += n
        if self._bar is not None:
            self._bar.update(n)
        elif time.monotonic() - self._last_log >= self.log_every:
            self._last_log = time.monotonic()
            log.info("scanned %d of %d items (%.1f images/s)", self.count, self.total, self.rate)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def rate(self) -> float:
        """Items finished in this run per second."""
        return self.new / self.elapsed if self.elapsed > 0 else 0.0

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
