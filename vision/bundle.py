"""Model bundles: ``NAME.onnx`` + ``NAME.json``, checked against each other on load.

The JSON is the model's contract: labels in output order, preprocessing, temperature,
per-class thresholds, version and a summary of the training data and metrics. It is
written by ``training`` at export time and read by everything that runs the model.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .engines import choose, open_engine
from .errors import BundleError
from .hashing import sha256_file
from .preprocess import PreprocessConfig
from .settings import runtime as runtime_setting
from .taxonomy import get_category

log = logging.getLogger(__name__)
BUNDLE_FORMAT = "wildscan-bundle/1"
LOGITS = "logits"
EMBEDDING = "embedding"
INPUT = "image"
SCORE_MODES = ("softmax", "sigmoid")


_SCORING = (
    "labels",
    "preprocess",
    "temperature",
    "score_mode",
    "object_labels",
    "crop_triggers",
    "crops_from",
)


@dataclass
class BundleConfig:
    """Everything about a model except its weights (the JSON beside the ONNX file)."""

    name: str
    version: str
    labels: list[str]
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    architecture: str = ""
    temperature: float = 1.0
    thresholds: dict[str, float] = field(default_factory=dict)
    default_threshold: float = 0.5
    uncertain_below: float = 0.4
    # "softmax": one distribution over the labels; "sigmoid": one-vs-rest scores, so a
    # background label (goods_other) cannot absorb the score of an object in a busy photo.
    score_mode: str = "softmax"
    # With crops in ``preprocess``: labels scored by their maximum over the views (objects);
    # every other label keeps its whole-photo score. Crops are run only for photos that no
    # label flags and whose best wildlife-trigger score on the whole photo reaches ``crops_from``.
    object_labels: list[str] = field(default_factory=list)
    # The labels whose whole-photo score starts the cascade (at ``crops_from``); empty: the
    # object labels. A label can take its best view without starting the cascade (2.2.0:
    # crocodilians and turtles are read from crops that snakes, lizards or objects asked for).
    crop_triggers: list[str] = field(default_factory=list)
    crops_from: float = 0.0
    # "possible match" band: a wildlife score at or above possible_ratio x its threshold
    # (but below it) is reported as ``possible`` without flagging (0: no band).
    possible_ratio: float = 0.0
    embedding_dim: int | None = None
    # Other runtimes' agreement with onnxruntime fp32 on the test split (vision.engines): e.g.
    # {"openvino-bf16": {"passed": true, "max_macro_f1_drop": 0.002, ...}}
    runtime_parity: dict = field(default_factory=dict)
    training_data: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    created: str = ""
    format: str = BUNDLE_FORMAT

    def __post_init__(self):
        if isinstance(self.preprocess, dict):
            self.preprocess = PreprocessConfig.from_dict(self.preprocess)
        if self.temperature <= 0:
            raise BundleError(f"temperature must be > 0, got {self.temperature}")
        if self.score_mode not in SCORE_MODES:
            raise BundleError(f"score_mode {self.score_mode!r}; choose from {', '.join(SCORE_MODES)}")
        if not 0 <= self.possible_ratio < 1:
            raise BundleError(f"possible_ratio must be in [0, 1), got {self.possible_ratio}")
        for name in ("object_labels", "crop_triggers"):
            unknown = set(getattr(self, name)) - set(self.labels)
            if unknown:
                raise BundleError(f"{name} the model lacks: {sorted(unknown)}")

    @property
    def triggers(self) -> list[str]:
        """The labels whose whole-photo score starts the crop cascade: ``crop_triggers``, else
        the object labels."""
        return self.crop_triggers or self.object_labels

    def threshold(self, label: str) -> float:
        return float(self.thresholds.get(label, self.default_threshold))

    def to_dict(self) -> dict:
        out = asdict(self)
        out["preprocess"] = self.preprocess.to_dict()
        return out

    def scoring_digest(self) -> str:
        """SHA-256 (16 hex) of what in the JSON decides a photo's scores (labels, preprocessing,
        temperature, score mode, views): with the ONNX file, its runtime and the image bytes,
        what a stored score depends on. Thresholds are left out, so that a scan can apply other
        thresholds to stored scores without scoring again; with the crop cascade this is close,
        not exact: a photo the bundle's thresholds flagged on the whole photo was stored
        without its crops' scores.
        Every preprocessing field counts, defaults included: a field added later changes the
        digest (scans rescore once; runtime parity is measured again)."""
        about = {k: v for k, v in self.to_dict().items() if k in _SCORING}
        return hashlib.sha256(json.dumps(about, sort_keys=True).encode()).hexdigest()[:16]

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, data: dict) -> BundleConfig:
        if data.get("format", BUNDLE_FORMAT) != BUNDLE_FORMAT:
            raise BundleError(f"unsupported bundle format {data.get('format')!r}; expected {BUNDLE_FORMAT}")
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        missing = {"name", "version", "labels"} - set(known)
        if missing:
            raise BundleError(f"bundle JSON lacks {', '.join(sorted(missing))}")
        return cls(**known)


@dataclass
class ModelBundle:
    """A checked bundle on disk: paths, config and the ONNX file's SHA-256."""

    onnx_path: Path
    config: BundleConfig
    sha256: str
    session: Any = field(repr=False, default=None)  # an engine of vision.engines (onnxruntime or OpenVINO)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def json_path(self) -> Path:
        return self.onnx_path.with_suffix(".json")

    def model_info(self) -> dict:
        """The ``model`` block of every result record: which model, and which runtime and
        precision ran it."""
        return {
            "name": self.config.name,
            "version": self.config.version,
            "sha256": self.sha256,
            "runtime": getattr(self.session, "runtime", "onnxruntime"),
            "precision": getattr(self.session, "precision", "fp32"),
        }


def bundle_paths(path: str | Path) -> tuple[Path, Path]:
    """``(onnx, json)`` for a bundle given as either file or as the common stem."""
    p = Path(path)
    if p.suffix in (".onnx", ".json"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".onnx"), p.with_name(p.name + ".json")


def current_parity(config: BundleConfig, sha256: str) -> dict:
    """The runtime parity records that hold for this ONNX file (``sha256``) and this JSON's
    scoring (preprocessing...): a record measured on other weights or other inputs does not count."""
    digest = config.scoring_digest()
    return {
        key: record
        for key, record in config.runtime_parity.items()
        if record.get("model_sha256") == sha256 and record.get("scoring") == digest
    }


def load_bundle(
    path: str | Path, *, intra_threads: int = 1, inter_threads: int = 1, runtime: str | None = None
) -> ModelBundle:
    """Read a bundle, open its engine, check the JSON against the graph.

    ``runtime``: ``auto`` (default: ``$WILDSCAN_RUNTIME``, else auto), ``onnxruntime`` or
    ``openvino`` (:func:`vision.engines.choose`).

    The session runs on the CPU with explicit thread counts (one intra-op thread by
    default: scale with processes or requests, not with threads fighting for cores).
    Raises :class:`BundleError` when a file is missing, the JSON is malformed, a label
    is not a known category, or the graph's input/output shapes disagree with the JSON.
    """
    onnx_path, json_path = bundle_paths(path)
    for p in (onnx_path, json_path):
        if not p.is_file():
            raise BundleError(f"model bundle file not found: {p}", "bundle_not_found")
    try:
        config = BundleConfig.from_dict(json.loads(json_path.read_text(encoding="utf-8")))
    except (ValueError, TypeError) as e:
        raise BundleError(f"{json_path}: {e}") from e
    for label in config.labels:
        try:
            get_category(label)
        except KeyError as e:
            raise BundleError(f"{json_path}: {e.args[0]}") from None
    unknown = set(config.thresholds) - set(config.labels)
    if unknown:
        raise BundleError(f"{json_path}: thresholds for labels the model lacks: {sorted(unknown)}")
    sha256 = sha256_file(onnx_path)
    setting = runtime or runtime_setting()
    chosen, precision = choose(setting, current_parity(config, sha256))
    try:
        session = open_engine(onnx_path, chosen, precision, intra_threads=intra_threads, inter_threads=inter_threads)
    except BundleError:
        if setting != "auto" or chosen == "onnxruntime":
            raise
        log.warning("OpenVINO could not load %s; serving it with onnxruntime fp32", onnx_path, exc_info=True)
        session = open_engine(
            onnx_path, "onnxruntime", "fp32", intra_threads=intra_threads, inter_threads=inter_threads
        )
    check_graph(session, onnx_path, config)
    return ModelBundle(onnx_path=onnx_path, config=config, sha256=sha256, session=session)


def check_graph(session, onnx_path: Path, config: BundleConfig) -> None:
    """Compare the ONNX graph's input and outputs with the bundle JSON."""
    inputs = {i.name: i.shape for i in session.get_inputs()}
    outputs = {o.name: o.shape for o in session.get_outputs()}
    if INPUT not in inputs:
        raise BundleError(f"{onnx_path}: graph input {INPUT!r} missing (has {list(inputs)})")
    size = config.preprocess.input_size
    shape = inputs[INPUT]
    if len(shape) != 4 or shape[1] != 3 or list(shape[2:]) != [size, size]:
        raise BundleError(f"{onnx_path}: input shape {shape} does not match 3x{size}x{size} in the JSON")
    if LOGITS not in outputs:
        raise BundleError(f"{onnx_path}: graph output {LOGITS!r} missing (has {list(outputs)})")
    if outputs[LOGITS][-1] != len(config.labels):
        raise BundleError(f"{onnx_path}: {outputs[LOGITS][-1]} logits but {len(config.labels)} labels in the JSON")
    if EMBEDDING in outputs and config.embedding_dim and outputs[EMBEDDING][-1] != config.embedding_dim:
        raise BundleError(f"{onnx_path}: embedding size {outputs[EMBEDDING][-1]} != {config.embedding_dim}")


def save_bundle_config(onnx_path: str | Path, config: BundleConfig) -> Path:
    """Write ``config`` as the JSON beside ``onnx_path``; returns the JSON's path."""
    json_path = Path(onnx_path).with_suffix(".json")
    json_path.write_text(config.to_json(), encoding="utf-8")
    return json_path
