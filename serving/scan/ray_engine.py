"""The Ray engine: the same records as the local engine, computed on a Ray cluster.

Pipeline per wave of items (Ray Data): ``from_items`` (ids, paths or inline bytes) ->
``map_batches(decode_batch)`` (tasks: read, SHA-256, PDQ, preprocess) ->
``map_batches(RayClassifier)`` (an actor pool, one single-threaded onnxruntime session
per actor) -> results streamed back to the driver, which commits them to the same SQLite
store, so a run killed on a cluster resumes like a local one. Ray Data fuses the two
``map_batches`` (same resources), so each actor decodes its own batch as the local
workers do, and the default pool has one actor per cluster CPU.

The model (and its reference galleries, if any) travels to the actors through the object
store. On an existing cluster: ``wildscan scan INPUT --engine ray --address ray://HEAD:10001``
(or ``auto`` on a cluster node); the workers need wildscan installed but not the model
files; image paths must be readable from every node (a shared file system), or come as
bytes in a manifest.

Identical bytes met in the same wave are decoded on different workers and stored once;
the local engine also skips decoding them.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from vision.bundle import bundle_paths
from vision.gallery import gallery_db_path, snapshot
from vision.preprocess import PreprocessConfig
from vision.records import Result
from vision.runtime import PreparedImage
from vision.settings import GALLERY_DB_NAME

from .inputs import ScanItem
from .store import Committer, ScanStore
from .work import EngineError, Outcome, Progress, prepare_item

log = logging.getLogger(__name__)

WAVE_BYTES = 512 * 1024 * 1024  # inline image bytes held by the driver per wave, at most
GALLERIES = GALLERY_DB_NAME  # the name the reference galleries travel under


def decode_batch(batch: dict[str, np.ndarray], preprocess: dict) -> dict[str, np.ndarray]:
    """Ray Data task: read, hash, decode and preprocess a batch of items.

    Failures keep their place with a zero tensor and their record (JSON) in ``failure``.
    """
    cfg = PreprocessConfig.from_dict(preprocess)
    out: dict[str, list] = {
        name: [] for name in ("item_id", "path", "sha256", "pdq", "width", "height", "tensor", "failure")
    }
    columns = (batch[k] for k in ("item_id", "path", "inline", "data", "error"))
    for item_id, path, inline, data, error in zip(*columns):
        item = ScanItem(
            str(item_id), str(path), data=bytes(data) if inline else None, error=json.loads(error) if error else None
        )
        prepared = prepare_item(item, cfg, lazy_crops=False)  # the views travel to the actors as one tensor
        out["item_id"].append(item.item_id)
        out["path"].append(item.path)
        out["sha256"].append(prepared.sha256 or "")
        if isinstance(prepared, PreparedImage):
            row = (prepared.pdq, prepared.width, prepared.height, prepared.tensor, "")
        else:
            row = ("", 0, 0, np.zeros(cfg.input_shape(), np.float32), json.dumps(prepared.to_dict()))
        for key, value in zip(("pdq", "width", "height", "tensor", "failure"), row):
            out[key].append(value)
    return {key: np.stack(values) if key == "tensor" else np.array(values) for key, values in out.items()}


class RayClassifier:
    """Ray Data actor: one onnxruntime session, loaded from bundle bytes sent by the driver.

    ``files`` is ``[ObjectRef]`` of ``{file name: bytes}`` (wrapped in a list so Ray passes
    the small reference, not the model, as the constructor argument).
    """

    def __init__(self, files: list, batch_size: int = 4, intra_threads: int = 1, runtime: str | None = None):
        import ray

        from vision.runtime import Classifier

        contents: dict[str, bytes] = ray.get(files[0])
        folder = Path(tempfile.mkdtemp(prefix="wildscan-model-"))
        for name, content in contents.items():
            (folder / name).write_bytes(content)
        onnx_name = next(name for name in contents if name.endswith(".onnx"))
        galleries = str(folder / GALLERIES) if GALLERIES in contents else "auto"
        self.classifier = Classifier.from_path(
            folder / onnx_name, intra_threads=intra_threads, max_batch=batch_size, galleries=galleries, runtime=runtime
        )
        self.model = self.classifier.model_info()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``item_id``, ``sha256`` and the record (JSON) for each row of a decoded batch."""
        ok = batch["failure"] == ""
        prepared = [
            PreparedImage(str(p), str(s), str(q), int(w), int(h), t)
            for p, s, q, w, h, t in zip(*(batch[k][ok] for k in ("path", "sha256", "pdq", "width", "height", "tensor")))
        ]
        done = iter(self.classifier.classify_prepared(prepared))
        records = []
        for good, failure in zip(ok, batch["failure"]):
            if good:
                records.append(json.dumps(next(done).to_dict()))
            else:
                records.append(json.dumps({**json.loads(failure), "model": self.model}))
        return {"item_id": batch["item_id"], "sha256": batch["sha256"], "record": np.array(records)}


class RayEngine:
    """Runs the items a store still lacks on Ray, one Ray Data pipeline per wave of items
    (``wave`` items, or 256 per actor if more; at most :data:`WAVE_BYTES` of inline bytes).

    ``address``: a cluster to join (``auto``, ``ray://host:10001``); ``None`` joins the
    cluster this process already initialised, or starts a local one. ``actors``: how many
    model replicas (default: one per cluster CPU). ``galleries``: the reference galleries
    the actors match against, as for :class:`vision.runtime.Classifier` (``scan`` passes a
    copy pinned at the start).
    """

    def __init__(
        self,
        model_path: str | Path,
        *,
        address: str | None = None,
        actors: int | None = None,
        batch_size: int = 4,
        wave: int = 4096,
        galleries: str | Path | None = "auto",
        runtime: str | None = None,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.runtime = runtime  # the runtime setting every actor loads the model with (vision.engines)
        self.model_path = Path(model_path)
        self.address = address
        self.actors = actors
        self.batch_size = batch_size
        self.wave = wave
        self.galleries = galleries

    def run(self, todo: Iterable[ScanItem], store: ScanStore, progress: Progress) -> None:
        """Process every item of ``todo`` on Ray, committing to ``store`` as batches return.

        Raises :class:`~serving.scan.local.EngineError` when Ray is not installed.
        """
        try:
            import ray
        except ImportError as e:
            raise EngineError("--engine ray needs Ray: pip install 'wildscan[ray]'") from e

        started = self._connect(ray)
        try:
            files, preprocess = self._bundle()
            files_ref = ray.put(files)
            actors = self.actors or max(1, int(ray.cluster_resources().get("CPU", 1)))
            committer = Committer(store)
            try:
                for wave in waves(todo, max(self.wave, 256 * actors), WAVE_BYTES):
                    self._run_wave(ray, wave, files_ref, preprocess, actors, committer, progress)
            finally:
                committer.flush()
        finally:
            if started:
                ray.shutdown()

    def _connect(self, ray) -> bool:
        """Join or start a cluster; true when this call started it (and must shut it down)."""
        if ray.is_initialized():
            return False
        ray.init(address=self.address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
        return True

    @staticmethod
    def _quiet_ray_data(ray) -> None:
        """No Ray Data progress bars or per-dataset INFO lines: wildscan draws its own bar."""
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)

    def _bundle(self) -> tuple[dict[str, bytes], dict]:
        """The files the actors need (bundle, and the model's reference galleries if any)."""
        onnx_path, json_path = bundle_paths(self.model_path)
        files = {p.name: p.read_bytes() for p in (onnx_path, json_path)}
        source = gallery_db_path(onnx_path) if self.galleries == "auto" else self.galleries
        if source is not None and Path(source).is_file():
            with tempfile.TemporaryDirectory() as tmp:  # a consistent copy, even of a gallery being edited
                files[GALLERIES] = snapshot(source, Path(tmp) / GALLERIES).read_bytes()
        preprocess = json.loads(files[json_path.name])["preprocess"]
        return files, preprocess

    def _run_wave(self, ray, wave: list[ScanItem], files_ref, preprocess, actors, committer, progress) -> None:
        by_id = {item.item_id: item for item in wave}
        rows = [
            {
                "item_id": it.item_id,
                "path": it.path,
                "inline": it.data is not None,
                "data": it.data or b"",
                "error": json.dumps(it.error) if it.error else "",
            }
            for it in wave
        ]
        self._quiet_ray_data(ray)
        dataset = (
            ray.data.from_items(rows)
            .map_batches(
                decode_batch,
                batch_size=self.batch_size,
                fn_kwargs={"preprocess": preprocess},
                batch_format="numpy",
                num_cpus=1,
            )
            .map_batches(
                RayClassifier,
                batch_size=self.batch_size,
                batch_format="numpy",
                num_cpus=1,
                compute=ray.data.ActorPoolStrategy(size=actors),
                fn_constructor_kwargs={"files": [files_ref], "batch_size": self.batch_size, "runtime": self.runtime},
            )
        )
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            items = [by_id[str(i)] for i in batch["item_id"]]
            outcomes = [
                outcome_of(str(i), str(s), str(r))
                for i, s, r in zip(batch["item_id"], batch["sha256"], batch["record"])
            ]
            committer.add(items, outcomes)
            progress.update(len(items))


def waves(items: Iterable[ScanItem], max_items: int, max_bytes: int) -> Iterator[list[ScanItem]]:
    """Consecutive lists of items, each at most ``max_items`` long and (unless a single
    item is larger) at most ``max_bytes`` of inline image bytes."""
    wave: list[ScanItem] = []
    size = 0
    for item in items:
        length = len(item.data or b"")
        if wave and (len(wave) >= max_items or size + length > max_bytes):
            yield wave
            wave, size = [], 0
        wave.append(item)
        size += length
    if wave:
        yield wave


def outcome_of(item_id: str, sha256: str, record_json: str) -> Outcome:
    """An :class:`Outcome` from a row the actors returned (``sha256`` empty when none)."""
    record = json.loads(record_json)
    Result(**record)  # fail loudly here, not in the output writer, if a worker sent junk
    return Outcome(item_id, sha256 or None, record)
