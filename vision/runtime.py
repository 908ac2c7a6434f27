"""Run a model bundle with onnxruntime: batched prediction with typed, citable results.

Decision rule (documented in the model card too):

1. ``p = softmax(logits / temperature)`` over the model's labels, or with
   ``score_mode = "sigmoid"`` one-vs-rest ``p = sigmoid(logits / temperature)``. With crops
   in the preprocessing (whole photo + crops), an object label's p is its maximum over the
   views and every other label's p its whole-photo value; crops are run only for photos
   that step 3 does not flag on the whole photo and whose best score among the trigger
   labels (``crop_triggers``, else the object labels) reaches ``crops_from`` (a cascade,
   so most photos cost one view).
2. A wildlife label *passes* when ``p[label] >= thresholds[label]``.
3. If any pass: ``flagged = True`` and ``label`` is the passing label with the highest p.
4. Otherwise ``label`` is the top label, or ``uncertain`` when its p is below
   ``uncertain_below``; ``flagged = False``. A wildlife label with
   ``p >= possible_ratio x threshold`` is reported as ``possible`` (a "possible match" to
   check by eye), the highest such one when several are.
5. With reference galleries for the model (``galleries.db`` beside it, see
   :mod:`vision.gallery`), each image's embedding is matched against them and the match
   is combined with steps 1-4 by :func:`vision.matching.combine`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .bundle import EMBEDDING, INPUT, LOGITS, ModelBundle, load_bundle
from .errors import ImageError, WildscanError
from .gallery import DB_NAME, GalleryStore, gallery_db_path, snapshot
from .hashing import pdq_hash, sha256_bytes
from .matching import Match, combine
from .preprocess import PreprocessConfig, crop_views, load_for_model
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
    tensor: np.ndarray  # float32, 3 x S x S (the whole photo), or V x 3 x S x S with eager crops
    source: Image.Image | None = None  # the decoded photo, for crops made only when needed


def prepare_image(
    path: str,
    data: bytes,
    cfg: PreprocessConfig,
    *,
    sha256: str | None = None,
    lazy_crops: bool = True,
    **limits,
) -> PreparedImage | Result:
    """Hash, decode and preprocess one image; a :class:`Result` with ``error`` if unusable.

    ``sha256``: the digest of ``data`` when the caller has already computed it. With crops
    in ``cfg`` and ``lazy_crops``, only the whole photo is preprocessed now and the decoded
    photo is kept for :meth:`Classifier.with_crops` (the cascade needs crops for few photos);
    ``lazy_crops=False`` makes every view now (a batch that travels between machines).
    Pure and picklable, so worker processes can run it; never raises on bad input.
    """
    digest = sha256 or (sha256_bytes(data) if data else None)
    lazy = lazy_crops and bool(cfg.crops)
    try:
        tensor, decoded = load_for_model(data, cfg, whole_only=lazy, **limits)
        pdq, _quality = pdq_hash(decoded.pdq_source(cfg))
    except WildscanError as e:
        return Result.failure(path, e, sha256=digest)
    except Exception as e:  # a decoder bug must not end a batch: record it and go on
        return Result.failure(path, ImageError(f"could not read the image: {e}", "corrupt"), sha256=digest)
    source = decoded.image if lazy else None
    return PreparedImage(path, digest or sha256_bytes(data), pdq, decoded.width, decoded.height, tensor, source)


def decide(
    probs: np.ndarray, labels: Sequence[str], wildlife: np.ndarray, thresholds: np.ndarray, uncertain_below: float
) -> tuple[str, float, bool]:
    """Steps 2-4 of the decision rule for one probability vector: ``(label, score, flagged)``.

    ``wildlife`` is a boolean mask over ``labels``, ``thresholds`` their flag thresholds.
    """
    passing = wildlife & (probs >= thresholds)
    if passing.any():
        idx = int(np.argmax(np.where(passing, probs, -1.0)))
        return labels[idx], float(probs[idx]), True
    idx = int(np.argmax(probs))
    if probs[idx] < uncertain_below:
        return UNCERTAIN, float(probs[idx]), False
    return labels[idx], float(probs[idx]), False


def needs_crops(
    whole: np.ndarray, wildlife: np.ndarray, triggers: np.ndarray, thresholds: np.ndarray, crops_from: float
) -> np.ndarray:
    """The crop cascade: for each row of whole-photo scores (N x C), whether its crops are
    run: no wildlife label passes its threshold, and a wildlife trigger label (ivory, reptile
    skin, snake...; the masks are over the labels) scores ``crops_from`` or more."""
    trigger = triggers & wildlife
    if not trigger.any():
        return np.zeros(len(whole), dtype=bool)
    flagged = (wildlife & (whole >= thresholds)).any(axis=-1)
    return ~flagged & (whole[:, trigger].max(axis=-1) >= crops_from)


def best_view(views: np.ndarray, objects: np.ndarray) -> np.ndarray:
    """Scores per photo from N x V x C view scores (view 0 the whole photo, NaN for crops
    not run): object labels their best view, every other label the whole photo's."""
    return np.where(objects, np.fmax.reduce(views, axis=1), views[:, 0])  # NaN never wins


def read_file(path: str | Path) -> bytes:
    """The bytes of a file; raises :class:`ImageError` (``unreadable``) on I/O errors."""
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise ImageError(f"cannot read the file: {e.strerror or e}", "unreadable") from e


class Classifier:
    """A loaded bundle plus the decision rule. Thread-safe for concurrent ``run`` calls.

    ``galleries``: ``"auto"`` (default) uses the gallery database beside the model when
    it exists (:func:`vision.gallery.gallery_db_path`); a path or an open
    :class:`~vision.gallery.GalleryStore` uses that one; ``None`` the trained head alone.
    """

    def __init__(self, bundle: ModelBundle, *, max_batch: int = 16, galleries="auto"):
        self.bundle = bundle
        self.config = bundle.config
        self.labels = list(bundle.config.labels)
        self.max_batch = max(1, int(max_batch))
        self._session = bundle.session
        output_names = [o.name for o in self._session.get_outputs()]
        self._outputs = [LOGITS] + ([EMBEDDING] if EMBEDDING in output_names else [])
        self._wildlife = np.array([get_category(label).is_wildlife for label in self.labels])
        self._thresholds = np.array([bundle.config.threshold(label) for label in self.labels], dtype=np.float32)
        self._objects = np.array([label in bundle.config.object_labels for label in self.labels])
        self._triggers = np.array([label in bundle.config.triggers for label in self.labels])
        self._gallery_spec = galleries
        self.galleries: GalleryStore | None = self._open_galleries(galleries)

    def _open_galleries(self, spec) -> GalleryStore | None:
        if spec is None or isinstance(spec, GalleryStore):
            return spec
        path = gallery_db_path(self.bundle.onnx_path) if spec == "auto" else Path(spec)
        if not self.has_embedding or (spec == "auto" and not path.is_file()):
            return None
        return GalleryStore(path, self.model_info(), dim=self.config.embedding_dim)

    def use_galleries(self, store: GalleryStore | None) -> None:
        """Match against ``store`` from now on (``None``: the trained head alone)."""
        self._gallery_spec = store
        self.galleries = store

    def current_galleries(self) -> GalleryStore | None:
        """The gallery store to match against now. With ``galleries="auto"`` a database created
        after this classifier started (``wildscan gallery add`` while a server runs) is opened
        on the next batch: one file-existence check per batch until it appears."""
        if self.galleries is None and self._gallery_spec == "auto":
            self.galleries = self._open_galleries("auto")
        return self.galleries

    def pin_galleries(self, folder: str | Path) -> Path | None:
        """Match against a copy of the galleries as they are now, made in ``folder``, so
        that gallery edits made meanwhile cannot reach a long job half-way (a bulk scan
        keys its results on the versions it started with). Returns the copy's path, or
        ``None`` when there are no galleries."""
        if self.galleries is None:
            return None
        copy = snapshot(self.galleries.path, Path(folder) / DB_NAME)
        self.use_galleries(self._open_galleries(copy))
        return copy

    @classmethod
    def from_path(
        cls,
        path: str | Path,
        *,
        intra_threads: int = 1,
        inter_threads: int = 1,
        max_batch: int = 16,
        galleries="auto",
        runtime: str | None = None,
    ) -> Classifier:
        """Load the bundle at ``path``; ``galleries`` as for the constructor; ``runtime`` as
        for :func:`vision.bundle.load_bundle`."""
        bundle = load_bundle(path, intra_threads=intra_threads, inter_threads=inter_threads, runtime=runtime)
        return cls(bundle, max_batch=max_batch, galleries=galleries)

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
        """Raw ``(logits, embeddings)`` for a float32 batch, in chunks of ``max_batch``.

        ``batch`` is N x 3 x S x S (logits N x C), or N x V x 3 x S x S for whole photo +
        crops (logits N x V x C, NaN for the crops the cascade did not need; embeddings are
        the whole photo's)."""
        if batch.ndim == 5:
            return self._run_views(batch)
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

    def _run_views(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The cascade on eagerly prepared views (N x V x 3 x S x S)."""
        whole, embeddings = self.run(batch[:, 0])
        crops = lambda todo: batch[todo, 1:].reshape(-1, *batch.shape[2:])
        return self._cascade(whole, batch.shape[1] - 1, crops), embeddings

    def _cascade(self, whole: np.ndarray, n_crops: int, crops_of) -> np.ndarray:
        """Whole-photo logits (N x C) -> N x (1 + n_crops) x C: the crops (``crops_of(rows)``,
        K x n_crops model inputs) run only for the rows :meth:`needs_crops` picks, NaN elsewhere."""
        logits = np.full((len(whole), 1 + n_crops, whole.shape[-1]), np.nan, dtype=np.float32)
        logits[:, 0] = whole
        todo = np.flatnonzero(self.needs_crops(self.probabilities(whole)))
        if len(todo):
            logits[todo, 1:] = self.run(crops_of(todo))[0].reshape(len(todo), n_crops, -1)
        return logits

    def run_prepared(self, ready: Sequence[PreparedImage]) -> tuple[np.ndarray, np.ndarray | None]:
        """``(logits, embeddings)`` of prepared images: the whole photos, then the crops the
        cascade needs (:meth:`with_crops`)."""
        logits, embeddings = self.run(np.stack([p.tensor for p in ready]))
        return self.with_crops(ready, logits), embeddings

    def with_crops(self, ready: Sequence[PreparedImage], logits: np.ndarray) -> np.ndarray:
        """Whole-photo logits (N x C) of lazily prepared images -> N x V x C with the crops run
        where :meth:`needs_crops` says (NaN elsewhere), exactly as the eager cascade
        (:meth:`run` on N x V x 3 x S x S). Logits that already have views pass through."""
        crops = self.preprocess.crops
        if logits.ndim == 3 or not crops or not len(ready):
            return logits

        def crops_of(todo: np.ndarray) -> np.ndarray:
            sources = [ready[int(i)].source for i in todo]
            if any(source is None for source in sources):
                raise ValueError("a photo that needs its crops was prepared without its decoded image (lazy_crops)")
            return np.concatenate([crop_views(source, self.preprocess) for source in sources if source is not None])

        return self._cascade(logits, len(crops), crops_of)

    def needs_crops(self, whole_probs: np.ndarray) -> np.ndarray:
        """Which photos (rows of whole-photo probabilities) the crops are run for (:func:`needs_crops`)."""
        return needs_crops(whole_probs, self._wildlife, self._triggers, self._thresholds, self.config.crops_from)

    def probabilities(self, logits: np.ndarray, temperature: float | None = None) -> np.ndarray:
        """Calibrated scores over the model's labels: temperature-scaled softmax, or sigmoid
        for one-vs-rest bundles. Logits with a view axis (N x V x C) are aggregated: object
        labels take their maximum over the views that were run, the rest the whole photo's.
        ``temperature`` overrides the bundle's (1.0: the raw scores)."""
        z = np.asarray(logits, dtype=np.float64) / (temperature or self.config.temperature)
        if self.config.score_mode == "sigmoid":
            p = 1.0 / (1.0 + np.exp(-z))
        else:
            z = z - np.nanmax(z, axis=-1, keepdims=True)
            e = np.exp(z)
            p = e / np.nansum(e, axis=-1, keepdims=True)
        if p.ndim == 3:
            p = best_view(p, self._objects)
        return p.astype(np.float32)

    def decide(self, probs: np.ndarray) -> tuple[str, float, bool]:
        """Apply the decision rule to one probability vector: ``(label, score, flagged)``."""
        return decide(probs, self.labels, self._wildlife, self._thresholds, self.config.uncertain_below)

    def possible(self, probs: np.ndarray, flagged: bool) -> str | None:
        """The "possible match" of one probability vector: the highest wildlife label in the
        band below its threshold (``possible_ratio``), or ``None``."""
        ratio = self.config.possible_ratio
        if flagged or ratio <= 0:
            return None
        band = self._wildlife & (probs >= ratio * self._thresholds)
        return self.labels[int(np.argmax(np.where(band, probs / self._thresholds, -1.0)))] if band.any() else None

    def wildlife_score(self, probs: np.ndarray) -> np.ndarray:
        """How wildlife-like each photo is (the binary wildlife-vs-not curve): the total
        probability of the wildlife labels, or their highest one-vs-rest score."""
        if self.config.score_mode == "sigmoid":
            return probs[..., self._wildlife].max(axis=-1)
        return probs[..., self._wildlife].sum(axis=-1)

    # --- images in, records out --------------------------------------------------------

    def prepare(self, path: str, data: bytes) -> PreparedImage | Result:
        return prepare_image(path, data, self.preprocess)

    def finish(
        self, prepared: Sequence[PreparedImage], logits: np.ndarray, embeddings: np.ndarray | None = None
    ) -> list[Result]:
        """Turn prepared images and their logits into result records.

        With galleries, ``embeddings`` (from :meth:`run`) are matched against them; when
        they are not given the model is run again to get them.
        """
        probs = self.probabilities(logits)
        matches, versions = self.match_galleries(prepared, embeddings)
        model = self.model_info()
        results = []
        for item, p, match in zip(prepared, probs, matches):
            head = self.decide(p)
            decision = combine(head, match)
            results.append(
                Result(
                    path=item.path,
                    sha256=item.sha256,
                    pdq=item.pdq,
                    width=item.width,
                    height=item.height,
                    label=decision.label,
                    score=round(decision.score, 6),
                    flagged=decision.flagged,
                    possible=self.possible(p, decision.flagged),
                    scores={lab: round(float(v), 6) for lab, v in zip(self.labels, p)},
                    model=model,
                    matched_by=decision.matched_by,
                    **gallery_evidence(head, match, versions),
                )
            )
        return results

    def match_galleries(
        self, prepared: Sequence[PreparedImage], embeddings: np.ndarray | None = None
    ) -> tuple[list[Match | None], dict[str, int] | None]:
        """Each image's gallery match (or ``None``), and the versions of the galleries consulted
        (``None`` when the model has no non-empty gallery)."""
        galleries = self.current_galleries()
        index = galleries.index() if galleries is not None and len(prepared) else None
        if index is None or not len(index):
            return [None] * len(prepared), None
        if embeddings is None:
            embeddings = self.run(np.stack([item.tensor for item in prepared]))[1]
        if embeddings is None:  # a model without an embedding output cannot match galleries
            return [None] * len(prepared), None
        return index.search(embeddings), index.versions

    def classify_prepared(self, items: Sequence[PreparedImage | Result]) -> list[Result]:
        """Run inference on the prepared items; failures pass through, order is kept."""
        ready = [it for it in items if isinstance(it, PreparedImage)]
        logits, embeddings = self.run_prepared(ready) if ready else (None, None)
        return self.assemble(items, logits, embeddings)

    def assemble(
        self, items: Sequence[PreparedImage | Result], logits: np.ndarray | None, embeddings: np.ndarray | None = None
    ) -> list[Result]:
        """Records in the order of ``items``: the prepared ones from ``logits`` (one row each,
        in order) and ``embeddings``, the failures as they are, all stamped with the model."""
        ready = [it for it in items if isinstance(it, PreparedImage)]
        done: Iterator[Result] = iter([])
        if ready:
            if logits is None:
                raise ValueError("assemble() needs the logits of the prepared images")
            done = iter(self.finish(ready, logits, embeddings))
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


def gallery_evidence(head: tuple[str, float, bool], match: Match | None, versions: dict[str, int] | None) -> dict:
    """The ``gallery``, ``references`` and ``head`` fields of a result record."""
    if versions is None:
        return {}
    if match is None:
        return {"gallery": {"versions": versions}}
    label, score, flagged = head
    gallery = {
        "versions": versions,
        "category": match.category,
        "version": match.version,
        "similarity": match.similarity,
        "threshold": match.threshold,
        "confidence": match.confidence,
    }
    return {
        "gallery": gallery,
        "references": [{"sha256": sha, "similarity": sim} for sha, sim in match.closest],
        "head": {"label": label, "score": round(score, 6), "flagged": flagged},
    }
