"""Reference matching in plain numpy: thresholds, exact nearest-neighbour search, the combined rule.

A *gallery* is a set of L2-normalised embeddings of example photos of one category. A
photo's **gallery score** is its cosine similarity to the gallery's nearest reference
(1-nearest-neighbour).

**Threshold rule** (per gallery, no ML expert needed). Two score sets are computed:

* *leave-one-out positives*: each reference's score against the *other* references;
* *negatives*: each photo of a fixed negative pool (non-wildlife photos, embedded with
  the same model) scored against the whole gallery.

The threshold is the lowest value whose false-match rate on the negative pool is at most
``target`` (1 %): at most ``floor(target * N)`` of the N negatives score at or above it.
Recall falls as the threshold rises, so this is the threshold that maximises the
leave-one-out recall under the false-match constraint; that recall is reported as the
gallery's expected recall. The rule needs a negative pool; with fewer than two references
the leave-one-out recall is undefined (``None``) but the threshold is still set.

**Reference confidence** of a match with similarity ``s`` is the conformal confidence
``1 - (k + 1) / (N + 1)``, ``k`` the number of negatives scoring at least ``s``: one minus
the p-value of "this photo is like the negative pool". It never reaches 1.

**Combination with the trained head** (:func:`combine`):

1. No gallery passes its threshold: the head's decision stands (``matched_by: model``).
2. A gallery passes and the head did not flag: the reference match flags the photo with
   label = the gallery's category (``matched_by: reference``).
3. Both flag: the more confident wins (head probability vs reference confidence; a tie
   keeps the head). Both opinions are recorded in the result either way.

When several galleries pass, the one whose score exceeds its threshold by the widest
margin is the match.

**Search** is exact: one matrix product of the (normalised) queries against every
reference of every gallery of the model, in query chunks so that one block of
similarities stays under ``MAX_BLOCK`` entries. At 1280 dimensions this is a few
milliseconds per batch for tens of thousands of references, so no approximate index is
used: evidence stays exactly reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

TARGET_FALSE_MATCH = 0.01
CLOSEST = 3  # reference photos named as evidence
MAX_BLOCK = 4_000_000  # similarity entries per block (16 MB of float32)
THRESHOLD_RULE = "lowest threshold with false-match rate <= target on the negative pool (max leave-one-out recall)"


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm, as contiguous float32 (all-zero rows stay zero)."""
    v = np.asarray(vectors, dtype=np.float32)
    if v.ndim == 1:
        v = v[None, :]
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return np.ascontiguousarray(v / np.where(norms > 0, norms, 1.0), dtype=np.float32)


def similarities(queries: np.ndarray, refs: np.ndarray) -> np.ndarray:
    """Cosine similarities (queries x refs) of already-normalised rows, exact, in bounded blocks."""
    if len(refs) == 0 or len(queries) == 0:
        return np.zeros((len(queries), len(refs)), np.float32)
    step = max(1, MAX_BLOCK // len(refs))
    return np.concatenate([queries[i : i + step] @ refs.T for i in range(0, len(queries), step)])


def gallery_scores(queries: np.ndarray, refs: np.ndarray) -> np.ndarray:
    """Each query's similarity to its nearest reference (``-inf`` when the gallery is empty)."""
    if len(refs) == 0:
        return np.full(len(queries), -np.inf, np.float32)
    return similarities(queries, refs).max(axis=1)


def loo_scores(refs: np.ndarray) -> np.ndarray:
    """Leave-one-out scores: each reference's similarity to its nearest *other* reference."""
    if len(refs) < 2:
        return np.zeros(0, np.float32)
    sims = similarities(refs, refs)
    np.fill_diagonal(sims, -np.inf)
    return sims.max(axis=1)


@dataclass(frozen=True)
class ThresholdChoice:
    """A gallery's threshold and the evidence for it (see the module docstring for the rule)."""

    threshold: float
    loo_recall: float | None
    false_match_rate: float
    negatives: int
    references: int
    target: float = TARGET_FALSE_MATCH
    rule: str = THRESHOLD_RULE

    def as_dict(self) -> dict:
        return {
            "threshold": self.threshold,
            "loo_recall": self.loo_recall,
            "false_match_rate": self.false_match_rate,
            "negatives": self.negatives,
            "references": self.references,
            "target": self.target,
            "rule": self.rule,
        }


def choose_threshold(
    loo: np.ndarray, negative: np.ndarray, target: float = TARGET_FALSE_MATCH, references: int | None = None
) -> ThresholdChoice:
    """The threshold rule: lowest score keeping the negative false-match rate <= ``target``.

    ``loo`` are leave-one-out positive scores, ``negative`` the negative pool's gallery
    scores. Raises ``ValueError`` when the negative pool is empty or ``target`` is not in [0, 1).
    """
    negative = np.sort(np.asarray(negative, dtype=np.float32))[::-1]
    if len(negative) == 0:
        raise ValueError("a threshold needs a negative pool; none is given")
    if not 0.0 <= target < 1.0:
        raise ValueError(f"target false-match rate must be in [0, 1), got {target}")
    allowed = int(np.floor(target * len(negative)))
    threshold = float(np.nextafter(negative[allowed], np.float32(np.inf)))
    loo = np.asarray(loo, dtype=np.float32)
    return ThresholdChoice(
        threshold=threshold,
        loo_recall=float((loo >= threshold).mean()) if len(loo) else None,
        false_match_rate=float((negative >= threshold).mean()),
        negatives=len(negative),
        references=int(references if references is not None else len(loo)),
        target=target,
    )


def calibrate(
    refs: np.ndarray, negatives: np.ndarray, target: float = TARGET_FALSE_MATCH
) -> tuple[ThresholdChoice, np.ndarray]:
    """Threshold choice for normalised ``refs`` against normalised ``negatives``, and the
    negatives' gallery scores sorted ascending (kept for :func:`conformal_confidence`)."""
    negative_scores = np.sort(gallery_scores(negatives, refs)).astype(np.float32)
    choice = choose_threshold(loo_scores(refs), negative_scores, target, references=len(refs))
    return choice, negative_scores


def conformal_confidence(similarity: float, negative_scores_sorted: np.ndarray) -> float:
    """``1 - (k + 1) / (N + 1)``, ``k`` = negatives scoring at least ``similarity`` (ascending input)."""
    n = len(negative_scores_sorted)
    k = n - int(np.searchsorted(negative_scores_sorted, similarity, side="left"))
    return 1.0 - (k + 1) / (n + 1)


# --- matching --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Match:
    """A photo's best passing gallery: category, gallery version, score, threshold, evidence."""

    category: str
    version: int
    similarity: float
    threshold: float
    confidence: float
    closest: tuple[tuple[str, float], ...]  # (reference sha256, similarity), most similar first


@dataclass
class Gallery:
    """One category's references (normalised) and calibration, ready to search."""

    category: str
    version: int
    threshold: float
    shas: list[str]
    refs: np.ndarray
    negative_scores: np.ndarray  # ascending


@dataclass
class GalleryIndex:
    """Every gallery of one model, stacked into one matrix for exact search."""

    galleries: list[Gallery] = field(default_factory=list)

    def __post_init__(self):
        self.galleries = [g for g in self.galleries if len(g.shas)]
        self._refs = (
            np.concatenate([g.refs for g in self.galleries]) if self.galleries else np.zeros((0, 0), np.float32)
        )
        self._bounds = np.cumsum([0] + [len(g.shas) for g in self.galleries])

    @property
    def versions(self) -> dict[str, int]:
        """Category -> version of every non-empty gallery."""
        return {g.category: g.version for g in self.galleries}

    def __len__(self) -> int:
        return len(self.galleries)

    def search(self, embeddings: np.ndarray) -> list[Match | None]:
        """The best passing gallery for each embedding, or ``None`` (see module docstring)."""
        if not self.galleries or len(embeddings) == 0:
            return [None] * len(embeddings)
        sims = similarities(normalise(embeddings), self._refs)
        return [self._best(row) for row in sims]

    def _best(self, row: np.ndarray) -> Match | None:
        best, best_margin = None, -np.inf
        for g, start, stop in zip(self.galleries, self._bounds[:-1], self._bounds[1:]):
            part = row[start:stop]
            score = float(part.max())
            if score >= g.threshold and score - g.threshold > best_margin:
                best, best_margin = (g, part, score), score - g.threshold
        if best is None:
            return None
        g, part, score = best
        order = np.argsort(-part, kind="stable")[:CLOSEST]
        return Match(
            g.category,
            g.version,
            round(score, 6),
            round(g.threshold, 6),
            round(conformal_confidence(score, g.negative_scores), 6),
            tuple((g.shas[i], round(float(part[i]), 6)) for i in order),
        )


# --- combining with the trained head --------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """The final ``(label, score, flagged)`` and which source decided it."""

    label: str
    score: float
    flagged: bool
    matched_by: str  # "model" or "reference"


def combine(head: tuple[str, float, bool], match: Match | None) -> Decision:
    """Combine the head's ``(label, score, flagged)`` with a gallery match (rule in the module docstring)."""
    label, score, flagged = head
    if match is None or (flagged and score >= match.confidence):
        return Decision(label, score, flagged, "model")
    return Decision(match.category, match.confidence, True, "reference")
