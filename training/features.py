"""Cache the frozen trunk's features for every photo view, computed with onnxruntime.

The trunk is exported to ONNX once and run in worker processes (one onnxruntime thread
each): on this 2-core machine that is about twice torch's CPU speed for this network.
Photos are decoded by ``vision.preprocess`` and, for training views, augmented by
``training.augment``; the same ``to_model_input`` then makes the model input.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing as mp
import random
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from vision.preprocess import PreprocessConfig, load_image, to_model_input, to_model_views

from .augment import eval_ad_view, train_view
from .data import Example, shared_data_dir
from .listing import listing_view

log = logging.getLogger(__name__)
CACHE_VERSION = 2  # bump when augmentation or preprocessing changes


@dataclass(frozen=True)
class ViewSpec:
    """Which rendering of a photo: ``clean``, ``train`` (random, seeded), ``ad`` (eval view),
    ``listing`` (a listing scene, seeded: :mod:`training.listing`) or ``crop`` (crop number
    ``seed`` of the preprocessing's crops, 1-based; 0 is the whole photo)."""

    kind: str
    seed: int = 0


def render(
    example_path: Path, key: str, view: ViewSpec, cfg: PreprocessConfig, ad_probability: float = 0.7
) -> np.ndarray:
    """Decode one photo, render the view, return the model input (float32 CHW)."""
    img = load_image(example_path.read_bytes()).image
    if view.kind == "train":
        img = train_view(img, random.Random(f"{key}|{view.seed}"), ad_probability)
    elif view.kind == "ad":
        img = eval_ad_view(img, key)
    elif view.kind in ("listing", "pasted"):
        img = listing_view(img, key, view.seed, always_paste=view.kind == "pasted")[0]
    elif view.kind == "crop":  # only the one crop: the whole photo and crop number ``seed``
        return to_model_views(img, replace(cfg, crops=(cfg.crops[view.seed - 1],)))[1]
    return to_model_input(img, cfg)


_worker: dict = {}


def _init_worker(onnx_path: str, cfg: dict, root: str, ad_probability: float) -> None:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    _worker["session"] = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
    _worker["cfg"] = PreprocessConfig.from_dict(cfg)
    _worker["root"] = Path(root)
    _worker["ad_probability"] = ad_probability


def _run_chunk(chunk: list[tuple[str, str, str, int]]) -> np.ndarray:
    cfg, root = _worker["cfg"], _worker["root"]
    batch = np.stack(
        [
            render(root / path, key, ViewSpec(kind, seed), cfg, _worker["ad_probability"])
            for path, key, kind, seed in chunk
        ]
    )
    return _worker["session"].run(None, {"image": batch})[0].astype(np.float16)


def compute_features(
    trunk_onnx: Path,
    items: list[tuple[Example, ViewSpec]],
    cfg: PreprocessConfig,
    *,
    workers: int = 2,
    chunk: int = 32,
    ad_probability: float = 0.7,
    progress: bool = True,
) -> np.ndarray:
    """Trunk features (float16, N x C x H x W) for each ``(example, view)``, in order."""
    from tqdm import tqdm

    tasks = [
        [(ex.path, ex.sha256, view.kind, view.seed) for ex, view in items[i : i + chunk]]
        for i in range(0, len(items), chunk)
    ]
    args = (str(trunk_onnx), cfg.to_dict(), str(shared_data_dir()), ad_probability)
    bar = tqdm(total=len(items), desc="features", unit="img", disable=not progress, mininterval=5)
    out = []
    if workers <= 1:
        _init_worker(*args)
        for task in tasks:
            out.append(_run_chunk(task))
            bar.update(len(task))
    else:
        with mp.get_context("spawn").Pool(workers, initializer=_init_worker, initargs=args) as pool:
            for feats, task in zip(pool.imap(_run_chunk, tasks), tasks):
                out.append(feats)
                bar.update(len(task))
    bar.close()
    return np.concatenate(out) if out else np.zeros((0,), np.float16)


def _config_key(arch: str, cut: int | str, cfg: PreprocessConfig, ad_probability: float) -> str:
    blob = json.dumps([CACHE_VERSION, arch, cut, cfg.to_dict(), ad_probability]).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def cached_features(cache_dir: Path, name: str, items, trunk_onnx_factory, arch, cut, cfg, **kw) -> np.ndarray:
    """Features for ``items``, reusing earlier results.

    The cache holds one row per ``(photo sha256, view)`` for a given network cut,
    preprocessing and augmentation setting; only missing rows are computed, so curating
    the dataset (dropping photos) never recomputes the rest.
    """
    stem = cache_dir / f"{name}-{_config_key(arch, cut, cfg, kw.get('ad_probability', 0.7))}"
    keys_path, feats_path = stem.with_suffix(".keys.json"), stem.with_suffix(".npy")
    keys: list[str] = json.loads(keys_path.read_text()) if keys_path.exists() else []
    feats = np.load(feats_path) if keys else None
    row = {k: i for i, k in enumerate(keys)}
    wanted = [f"{ex.sha256}|{view.kind}|{view.seed}" for ex, view in items]
    missing = [(item, k) for item, k in zip(items, wanted) if k not in row]
    if missing:
        log.info("computing %d of %d feature rows for %s", len(missing), len(items), name)
        new = compute_features(trunk_onnx_factory(), [item for item, _ in missing], cfg, **kw)
        feats = new if feats is None else np.concatenate([feats, new])
        for _, k in missing:
            row[k] = len(row)
        keys = sorted(row, key=row.get)
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = stem.with_suffix(".tmp.npy")
        np.save(tmp, feats)
        tmp.replace(feats_path)
        keys_path.write_text(json.dumps(keys))
    return feats[[row[k] for k in wanted]]
