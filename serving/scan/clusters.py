"""Near-duplicate photos across a scan: PDQ hashes within a Hamming distance, grouped.

Two photos are linked when their PDQ hashes differ in at most ``max_distance`` bits (31,
the PDQ authors' match threshold); a cluster is a connected group of linked photos (the
same picture re-posted, re-encoded or resized by several sellers).

Finding the links without comparing every pair (multi-index hashing): identical hashes
are merged first; the 256 bits are then cut into 16 chunks of 16 bits. Two hashes at
distance <= 31 cannot differ in two or more bits in *every* chunk (that would be >= 32),
so they agree on some chunk up to one bit. For each chunk, each hash is looked up, by
binary search in the sorted chunk values, under its own value and its 16 one-bit
variants; only those candidates are compared in full (numpy popcount, in blocks). The
result is exact: the same clusters as comparing all pairs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from vision.hashing import PDQ_MATCH_DISTANCE

_CHUNKS = 16
_PAIRS_PER_BLOCK = 1 << 21  # candidate pairs compared at once (~100 MB of temporaries)


def cluster_labels(pdqs: Sequence[str | None], max_distance: int = PDQ_MATCH_DISTANCE) -> list[int | None]:
    """A cluster number per hash (1, 2, ... in order of first appearance); ``None`` stays ``None``.

    Raises ``ValueError`` if ``max_distance`` is above 31 (the index guarantees
    exactness only up to 2 x 16 - 1 bits) or a hash is not 64 hex characters.
    """
    if not 0 <= max_distance <= 2 * _CHUNKS - 1:
        raise ValueError(f"max_distance must be between 0 and {2 * _CHUNKS - 1}, got {max_distance}")
    unique: dict[str, int] = {}
    for h in pdqs:
        if h is not None and h not in unique:
            unique[h] = len(unique)
    roots = _components(_as_bytes(list(unique)), max_distance)
    numbers: dict[int, int] = {}
    labels: list[int | None] = []
    for h in pdqs:
        if h is None:
            labels.append(None)
            continue
        root = roots[unique[h]]
        labels.append(numbers.setdefault(root, len(numbers) + 1))
    return labels


def _as_bytes(hashes: list[str]) -> np.ndarray:
    """``(N, 32)`` uint8 from 64-character hex strings."""
    try:
        raw = b"".join(bytes.fromhex(h) for h in hashes)
    except ValueError as e:
        raise ValueError(f"not a hex PDQ hash: {e}") from e
    if len(raw) != 32 * len(hashes):
        raise ValueError("a PDQ hash must be 64 hex characters (256 bits)")
    return np.frombuffer(raw, dtype=np.uint8).reshape(len(hashes), 32).copy()  # aligned for the uint64 view


def _components(hashes: np.ndarray, max_distance: int) -> np.ndarray:
    """The root (smallest member index) of each hash's connected component."""
    parent = np.arange(len(hashes))
    for i, j in _matching_pairs(hashes, max_distance):
        _union(parent, int(i), int(j))
    return np.array([_find(parent, k) for k in range(len(hashes))], dtype=np.int64)


def _matching_pairs(hashes: np.ndarray, max_distance: int) -> Iterator[tuple[int, int]]:
    """Index pairs at Hamming distance <= ``max_distance`` (a pair may come more than once)."""
    if len(hashes) < 2:
        return
    words = [np.ascontiguousarray(w) for w in hashes.view(np.uint64).T]  # 4 x (N,): popcount per word
    for c in range(_CHUNKS):
        keys = hashes.view(np.uint16)[:, c]
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        for i, j in _chunk_candidates(keys, order, sorted_keys):
            distance = np.zeros(len(i), dtype=np.uint16)
            for w in words:
                distance += np.bitwise_count(w[i] ^ w[j])
            close = distance <= max_distance
            yield from zip(i[close].tolist(), j[close].tolist())


def _chunk_candidates(
    keys: np.ndarray, order: np.ndarray, sorted_keys: np.ndarray
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Blocks of index pairs whose chunk values are equal or one bit apart, each pair once."""
    # equal values: each sorted position with the later positions of its run
    starts = np.arange(len(keys)) + 1
    ends = np.searchsorted(sorted_keys, sorted_keys, side="right")
    for rows in _row_blocks(ends - starts):
        i, j = _expand(rows, starts[rows], ends[rows] - starts[rows], order)
        yield order[i], j
    # one bit apart: asked only from the side where that bit is 0
    for bit in range(16):
        flip = np.uint16(1 << bit)
        rows = np.flatnonzero((keys & flip) == 0)
        targets = keys[rows] | flip
        lo = np.searchsorted(sorted_keys, targets, side="left")
        counts = np.searchsorted(sorted_keys, targets, side="right") - lo
        for block in _row_blocks(counts):
            i, j = _expand(rows[block], lo[block], counts[block], order)
            yield i, j


def _row_blocks(counts: np.ndarray) -> Iterator[np.ndarray]:
    """Indices into ``counts`` with candidates, in blocks of about ``_PAIRS_PER_BLOCK`` pairs."""
    rows = np.flatnonzero(counts > 0)
    if rows.size == 0:
        return
    ends = np.cumsum(counts[rows])
    start = 0
    while start < rows.size:
        base = ends[start - 1] if start else 0
        stop = max(start + 1, int(np.searchsorted(ends, base + _PAIRS_PER_BLOCK, side="right")))
        yield rows[start:stop]
        start = stop


def _expand(rows: np.ndarray, lo: np.ndarray, counts: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All ``(row, candidate)`` pairs: each row with the ``counts`` entries of ``order`` from ``lo``."""
    total = int(counts.sum())
    i = np.repeat(rows, counts)
    offsets = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    j = order[np.repeat(lo, counts) + offsets]
    return i, j


def _find(parent: np.ndarray, k: int) -> int:
    while parent[k] != k:
        parent[k] = parent[parent[k]]
        k = parent[k]
    return int(k)


def _union(parent: np.ndarray, a: int, b: int) -> None:
    ra, rb = _find(parent, a), _find(parent, b)
    if ra != rb:
        parent[max(ra, rb)] = min(ra, rb)


def cluster_sizes(labels: Sequence[int | None]) -> list[int | None]:
    """For each label, how many entries share it (``None`` for ``None``)."""
    counts: dict[int, int] = {}
    for label in labels:
        if label is not None:
            counts[label] = counts.get(label, 0) + 1
    return [None if label is None else counts[label] for label in labels]
