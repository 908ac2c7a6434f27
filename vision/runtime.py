"""Run a model bundle with onnxruntime: batched prediction with typed, citable results.

Decision rule (documented in the model card too):

1. ``p = softmax(logits / temperature)`` over the model's labels.
2. A wildlife label *passes* when ``p[label] >= thresholds[label]``.
3. If any pass: ``flagged = True`` and ``label`` is the passing label with the highest p.
4. Otherwise ``label`` is the top label, or ``uncertain`` when its p is below
   ``uncertain_below``; ``flagged = False``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .bundle import EMBEDDING, INPUT, LOGITS, ModelBundle, load_bundle
from .errors import ImageError, WildscanError
from .hashing import pdq_hash, sha256_bytes
from .preprocess import PreprocessConfig, load_for_model
from .records import Result
from .taxonomy import UNCERTAIN, get_category


@dataclass
class PreparedImage:
    """An image decoded, hashed and preprocessed, waiting for inference."""

    path: str
    sha256: str
    pdq: str
    width: int
    height: int
    tensor: np.ndarray  # float32, 3 x S x S


def prepare_image(path: str, data: bytes, cfg: PreprocessConfig, **limits) -> PreparedImage | Result:
    """Hash, decode and preprocess one image; a :class:`Result` with ``error`` if unusable.

    Pure and picklable, so worker processes can run it; never raises on bad input.
    """
    digest = sha256_bytes(data) if data else None
    try:
        tensor, decoded = load_for_model(data, cfg, **limits)
        pdq, _quality = pdq_hash(decoded.image)
    except WildscanError as e:
        return Result.failure(path, e, sha256=digest)
    except Exception as e:  # a decoder bug must not end a batch: record it and go on
        return Result.failure(path, ImageError(f"could not read the image: {e}", "corrupt"), sha256=digest)
    return PreparedImage(path, digest, pdq, decoded.width, decoded.height, tensor)


def read_file(path: str | Path) -> bytes:
    """The bytes of a file; raises :class:`ImageError` (``unreadable``) on I/O errors."""
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise ImageError(f"cannot read the file: {e.strerror or e}", "unreadable") from e


class Classifier:
    """A loaded bundle plus the decision rule. Thread-safe for concurrent ``run`` calls."""

    def __init__(self, bundle: ModelBundle, *, max_batch: int = 16):
        self.bundle = bundle
        self.config = bundle.config
        self.labels = list(bundle.config.labels)
        self.max_batch = max(1, int(max_batch))
        self._session = bundle.session
        output_names = [o.name for o in self._session.get_outputs()]
        self._outputs = [LOGITS] + ([EMBEDDING] if EMBEDDING in output_names else [])
        self._wildlife = np.array([get_category(label).is_wildlife for label in self.labels])
        self._thresholds = np.array([bundle.config.threshold(label) for label in self.labels], dtype=np.float32)

    @classmethod
    def from_path(cls, path: str | Path, *, intra_threads: int = 1, inter_threads: int = 1, max_batch: int = 16) -> "Classifier":
        return cls(load_bundle(path, intra_threads=intra_threads, inter_threads=inter_threads), max_batch=max_batch)

    @property
    def preprocess(self) -> PreprocessConfig:
        return self.config.preprocess

    @property
    def has_embedding(self) -> bool:
        return EMBEDDING in self._outputs

    def model_info(self) -> dict:
        return self.bundle.model_info()

    # --- numeric core ----------------------------------------------------------------

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Raw ``(logits, embeddings)`` for a float32 N x 3 x S x S batch, in chunks of ``max_batch``."""
        logits, embeddings = [], []
        for start in range(0, len(batch), self.max_batch):
            chunk = np.ascontiguousarray(batch[start : start + self.max_batch], dtype=np.float32)
            out = self._session.run(self._outputs, {INPUT: chunk})
            logits.append(out[0])
            if len(out) > 1:
                embeddings.append(out[1])
        if not logits:
            return np.zeros((0, len(self.labels)), np.float32), None
        return np.concatenate(logits), (np.concatenate(embeddings) if embeddings else None)

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Temperature-scaled softmax over the model's labels."""
        z = np.asarray(logits, dtype=np.float64) / self.config.temperature
        z -= z.max(axis=-1, keepdims=True)
        e = np.exp(z)
        return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)

    def decide(self, probs: np.ndarray) -> tuple[str, float, bool]:
        """Apply the decision rule to one probability vector: ``(label, score, flagged)``."""
        passing = self._wildlife & (probs >= self._thresholds)
        if passing.any():
            idx = int(np.argmax(np.where(passing, probs, -1.0)))
            return self.labels[idx], float(probs[idx]), True
        idx = int(np.argmax(probs))
        if probs[idx] < self.config.uncertain_below:
            return UNCERTAIN, float(probs[idx]), False
        return self.labels[idx], float(probs[idx]), False

    def wildlife_score(self, probs: np.ndarray) -> np.ndarray:
        """Total probability of the wildlife labels (for the binary wildlife-vs-not curve)."""
        return probs[..., self._wildlife].sum(axis=-1)

    # --- images in, records out --------------------------------------------------------

    def prepare(self, path: str, data: bytes) -> PreparedImage | Result:
        return prepare_image(path, data, self.preprocess)

    def finish(self, prepared: Sequence[PreparedImage], logits: np.ndarray) -> list[Result]:
        """Turn prepared images and their logits into result records."""
        probs = self.probabilities(logits)
        model = self.model_info()
        results = []
        for item, p in zip(prepared, probs):
            label, score, flagged = self.decide(p)
            results.append(
                Result(
                    path=item.path, sha256=item.sha256, pdq=item.pdq, width=item.width, height=item.height,
                    label=label, score=round(score, 6), flagged=flagged,
                    scores={lab: round(float(v), 6) for lab, v in zip(self.labels, p)}, model=model,
                )
            )
        return results

    def classify_prepared(self, items: Sequence[PreparedImage | Result]) -> list[Result]:
        """Run inference on the prepared items; failures pass through, order is kept."""
        ready = [it for it in items if isinstance(it, PreparedImage)]
        logits, _ = self.run(np.stack([it.tensor for it in ready])) if ready else (None, None)
        done = iter(self.finish(ready, logits) if ready else [])
        model = self.model_info()
        out = []
        for it in items:
            if isinstance(it, PreparedImage):
                out.append(next(done))
            else:
                it.model = model
                out.append(it)
        return out

    def predict(self, items: Iterable[tuple[str, bytes]]) -> list[Result]:
        """Classify ``(name, bytes)`` pairs; unusable images become error records."""
        return self.classify_prepared([self.prepare(name, data) for name, data in items])

    def predict_files(self, paths: Iterable[str | Path]) -> list[Result]:
        """Classify files by path; unreadable files become error records."""
        items: list[PreparedImage | Result] = []
        for path in paths:
            try:
                items.append(self.prepare(str(path), read_file(path)))
            except ImageError as e:
                items.append(Result.failure(str(path), e))
        return self.classify_prepared(items)
