"""Model 2 recipe: a frozen ImageNet trunk + one-vs-rest heads, chosen on real listing photos.

Fine-tuning on studio photos did not help on real ads (model 1.2.0: 0.925 on the test
split, ivory recall 0.20 on real sale posts), so the trunk stays as ImageNet trained it
and only a linear one-vs-rest (sigmoid) head is learnt, on cached pooled features of
every training photo clean, ad-style and as listing scenes (:mod:`training.listing`).
Sigmoid scores mean that a background class (goods_other) cannot take the score of an
ivory object in a busy photo.

``wildscan train --recipe heads`` writes a run folder that ``wildscan export`` reads like
any other (``cut`` = every block: the trunk is the whole network up to pooling).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn as nn

from vision.preprocess import PreprocessConfig
from vision.runtime import needs_crops
from vision.taxonomy import get_category

from . import data, devads, officers
from .features import ViewSpec, cached_features
from .headfit import fit_heads, head_logits
from .model import build
from .neighbours import FusedHead
from .rule import (
    IVORY_MAX_FALSE_FLAG,
    OBJECT_LABELS,
    POSSIBLE_RATIO,
    aggregate,
    choose_crops_from,
    fit_temperature,
    ovr_thresholds,
    sigmoid,
)

log = logging.getLogger(__name__)

# The whole photo's five 60 % crops: four corners and the centre.
FIVE_CROPS = (
    (0.0, 0.0, 0.6, 0.6),
    (0.4, 0.0, 1.0, 0.6),
    (0.0, 0.4, 0.6, 1.0),
    (0.4, 0.4, 1.0, 1.0),
    (0.2, 0.2, 0.8, 0.8),
)
IVORY_LOOKALIKES = ("ceramic_porcelain", "figurine", "antique", "jewellery")
STAGES = {"tf_efficientnet_lite0": 7, "tf_efficientnet_lite1": 7, "tf_efficientnet_lite2": 7}
INPUT_SIZE = {"tf_efficientnet_lite0": 224, "tf_efficientnet_lite1": 240, "tf_efficientnet_lite2": 260}


@dataclass
class HeadsConfig:
    """The model 2 recipe; saved as ``config.json`` (read by ``wildscan export`` too)."""

    name: str = "efficientnet_lite0.wildtrade_v1"
    arch: str = "tf_efficientnet_lite0"
    ad_views: int = 1  # seeded ad-style training views per photo, besides the clean one
    listing_views: int = 2  # listing scenes per training photo
    epochs: int = 30
    batch_size: int = 512
    lr: float = 2e-3
    weight_decay: float = 1e-4
    class_weight_power: float = 0.5
    hidden: int = 0  # 0: a linear head; >0: one hidden ReLU layer of this width
    head_dropout: float = 0.5  # on the features and the hidden layer (hidden > 0 only)
    ensemble: int = 1  # heads fitted with seeds seed, seed + 1, ..., their logits averaged (training.headfit)
    crops: list = field(default_factory=lambda: [list(c) for c in FIVE_CROPS])
    interpolation: str = "bicubic"  # the resize (vision.preprocess); "linear" is the fast one (measured, not shipped)
    # the weight of look-alike photos (carvings, ceramics, figurines, antiques, jewellery) in the
    # ivory output's loss: >1 pushes ivory scores on them down (the threshold floor is set on them)
    ivory_lookalike_weight: float = 1.0
    # listing scenes balanced across classes (training.listing.balanced_listing): photos that
    # cannot be cut out lend their scene rows to pasted scenes of same-class cut-outs
    balanced_pasting: bool = False
    # >0: the ivory logit is averaged with a k-nearest-neighbour score over the training
    # photos (training.neighbours), projected onto neighbours_dims PCA directions
    neighbours_k: int = 0
    neighbours_dims: int = 256
    extra_train: list = field(default_factory=list)  # `wildscan feedback export` folders: officers' labels
    finetune_stages: int = 0  # >0: the last stages are fine-tuned after the head (training.tail)
    finetune_epochs: int = 4
    finetune_lr: float = 2e-4
    finetune_batch_size: int = 128
    seed: int = 17
    workers: int = 2
    out_dir: str = "runs"
    cache_dir: str = "runs/cache"

    @property
    def cut(self) -> int:
        return STAGES[self.arch] - self.finetune_stages

    def preprocess(self, crops: bool = True) -> PreprocessConfig:
        size = INPUT_SIZE[self.arch]
        views = tuple(map(tuple, self.crops)) if crops else ()
        return PreprocessConfig(input_size=size, interpolation=self.interpolation, crops=views)

    def run_dir(self) -> Path:
        return data.repo_path(self.out_dir) / self.name

    def to_run_config(self) -> dict:
        """``config.json``: the recipe plus the fields ``training.train.TrainConfig`` reads."""
        return {
            **asdict(self),
            "cut": self.cut,
            "cut_layer": 0,
            "preprocess": self.preprocess().to_dict(),
            "train_views": self.ad_views + self.listing_views,
            "dropout": 0.0,
        }

    @classmethod
    def from_file(cls, path: str | Path, **overrides) -> HeadsConfig:
        raw = {**json.loads(Path(path).read_text()), **{k: v for k, v in overrides.items() if v is not None}}
        return cls(**{f.name: raw[f.name] for f in fields(cls) if f.name in raw})


class Embedder(nn.Module):
    """The frozen network up to the pooled embedding (what the heads read)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.top(self.net.trunk(x))[1]


def export_embedder(net: nn.Module, size: int, path: Path) -> Path:
    """The embedder as ONNX (input ``image``), for the feature cache's worker processes."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        Embedder(net).eval(),
        (torch.zeros(2, 3, size, size),),
        str(path),
        input_names=["image"],
        output_names=["embedding"],
        dynamic_axes={"image": {0: "batch"}, "embedding": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    return path


# --- features -----------------------------------------------------------------------------


class FeatureSource:
    """Cached pooled features of photo views for one trunk.

    After a partial fine-tune (``tuned``), the pooled features are those of the fine-tuned
    network: the cached activations of the frozen stages (:meth:`activations`) run through
    the trained top.
    """

    def __init__(self, cfg: HeadsConfig, progress: bool = True):
        self.cfg, self.progress = cfg, progress
        self.labels = data.classes()
        self.net = build(cfg.arch, len(self.labels), cfg.cut, pretrained=True, dropout=0.0).eval()
        self.cache = data.repo_path(cfg.cache_dir)
        self.onnx = self.cache / f"embedder-{cfg.arch}.onnx"
        self.tuned = False

    def __call__(self, name: str, items: list[tuple[data.Example, ViewSpec]]) -> np.ndarray:
        """float32 N x D features of ``(example, view)`` items, computed once and cached."""
        if self.tuned:
            from .tail import embed

            return embed(self.net.top, self.activations(name, items))
        pre = self.cfg.preprocess(crops=True)
        factory = lambda: export_embedder(self.net, pre.input_size, self.onnx)
        feats = cached_features(
            self.cache,
            name,
            items,
            factory,
            self.cfg.arch,
            "pooled",
            pre,
            workers=self.cfg.workers,
            progress=self.progress,
        )
        return feats.astype(np.float32)

    def activations(self, name: str, items: list[tuple[data.Example, ViewSpec]]) -> np.ndarray:
        """float16 N x C x H x W outputs of the frozen stages (before ``cfg.cut``), cached."""
        from .train import export_trunk

        pre = self.cfg.preprocess(crops=True)
        path = self.cache / f"trunk-{self.cfg.arch}-cut{self.cfg.cut}.onnx"
        factory = lambda: export_trunk(self.net, pre, path)
        return cached_features(
            self.cache,
            name,
            items,
            factory,
            self.cfg.arch,
            self.cfg.cut,
            pre,
            workers=self.cfg.workers,
            progress=self.progress,
        )


def views_of(examples: list[data.Example], views: list[ViewSpec]) -> list[tuple[data.Example, ViewSpec]]:
    return [(ex, v) for v in views for ex in examples]


def train_views(cfg: HeadsConfig) -> list[ViewSpec]:
    return (
        [ViewSpec("clean")]
        + [ViewSpec("train", s) for s in range(1, cfg.ad_views + 1)]
        + [ViewSpec("listing", s) for s in range(1, cfg.listing_views + 1)]
    )


EVAL_VIEWS = (ViewSpec("clean"), ViewSpec("ad"), ViewSpec("listing", 0))


def crop_views(n: int) -> list[ViewSpec]:
    return [ViewSpec("clean")] + [ViewSpec("crop", k) for k in range(1, n + 1)]


# --- the heads ----------------------------------------------------------------------------


def targets_matrix(examples: list[data.Example], labels: list[str]) -> np.ndarray:
    index = {c: i for i, c in enumerate(labels)}
    y = np.zeros((len(examples), len(labels)), np.float32)
    y[np.arange(len(examples)), [index[ex.cls] for ex in examples]] = 1.0
    return y


def save_run(cfg: HeadsConfig, net: nn.Module, head: nn.Module, calibration: dict) -> Path:
    """Write ``config.json``, ``top.pt`` (pretrained head conv + the new head) and
    ``calibration.json`` so that ``wildscan export`` can build the bundle."""
    run_dir = cfg.run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    net.top.classifier = head
    torch.save(net.top.state_dict(), run_dir / "top.pt")
    (run_dir / "config.json").write_text(json.dumps(cfg.to_run_config(), indent=2) + "\n")
    (run_dir / "calibration.json").write_text(json.dumps(calibration, indent=2) + "\n")
    return run_dir


# --- the run --------------------------------------------------------------------------------


def listing_mask(y: np.ndarray, rows: np.ndarray, labels: list[str]) -> np.ndarray:
    """Loss mask: on listing-scene rows, the classes of the listing photos themselves are
    unknown (the scene is a marketplace photo with the object in it), so they carry no loss."""
    from .listing import BACKGROUND_LABELS

    mapping = data.load_mapping()
    background = {mapping[f][0] for f in BACKGROUND_LABELS}
    mask = np.ones_like(y)
    cols = [labels.index(c) for c in background if c in labels]
    sub = mask[rows]
    sub[:, cols] = 0.0
    mask[rows] = np.maximum(sub, y[rows])
    return mask


def _limited(examples: list[data.Example], limit: int) -> list[data.Example]:
    if not limit:
        return examples
    seen: dict[str, int] = {}
    out = []
    for ex in examples:
        if seen.get(ex.cls, 0) < limit:
            seen[ex.cls] = seen.get(ex.cls, 0) + 1
            out.append(ex)
    return out


def run(cfg: HeadsConfig, progress: bool = True, limit_per_class: int = 0) -> Path:
    """Train the heads, calibrate, choose the decision rule; returns the run folder."""
    torch.set_num_threads(max(1, cfg.workers))
    src = FeatureSource(cfg, progress)
    rows = training_rows(cfg, src.labels, limit_per_class)
    head = train_head(cfg, src, rows)
    if cfg.finetune_stages:
        fine_tune_tail(cfg, src, head, rows)
    fused = {}
    if cfg.neighbours_k:
        head, fused["neighbours"] = fuse_neighbours(cfg, src, head, rows, limit_per_class)
    calibration = choose_rule(cfg, src, head, limit_per_class)
    views = len(train_views(cfg))
    calibration.update(train_photos=len(rows.items) // views, train_views=len(rows.items), **fused)
    if cfg.extra_train:
        calibration["officers_photos"] = {"used": rows.officers, "skipped": rows.skipped}
    return save_run(cfg, src.net, head, calibration)


class Rows(NamedTuple):
    """Every training view: ``items`` (photo, view), the feature cache ``name``, targets
    ``y``, loss ``mask``; officers' photos used and the records of those skipped."""

    items: list
    name: str
    y: np.ndarray
    mask: np.ndarray
    officers: int
    skipped: list


def training_rows(cfg: HeadsConfig, labels: list[str], limit_per_class: int = 0) -> Rows:
    """The :class:`Rows` of every training view (officers' photos read once, here)."""
    train_ex = _limited(data.load_split("train"), limit_per_class)
    extra, skipped = officers_photos(cfg, labels)
    train_ex += extra
    views = train_views(cfg)
    items = views_of(train_ex, views)
    if cfg.balanced_pasting:
        items = balance_listing_rows(cfg, train_ex, views, items)
    y = np.tile(targets_matrix(train_ex, labels), (len(views), 1))
    listing_rows = np.concatenate(
        [np.arange(len(train_ex)) + i * len(train_ex) for i, v in enumerate(views) if v.kind == "listing"]
        or [np.zeros(0, int)]
    )
    name = "train" if not limit_per_class else "train-small"
    mask = listing_mask(y, listing_rows, labels)
    if cfg.ivory_lookalike_weight != 1.0 and "ivory" in labels:
        lookalikes = [labels.index(c) for c in IVORY_LOOKALIKES if c in labels]
        rows = y[:, lookalikes].any(1)
        mask[rows, labels.index("ivory")] *= cfg.ivory_lookalike_weight
    return Rows(items, name, y, mask, len(extra), skipped)


def balance_listing_rows(cfg: HeadsConfig, train_ex: list[data.Example], views: list[ViewSpec], items: list):
    """``items`` with the listing-scene rows of :func:`training.listing.balanced_listing`."""
    from .listing import balanced_listing, cuttable

    can_cut = cuttable(
        train_ex, data.repo_path(cfg.cache_dir) / "cuttable-v1.json", cfg.workers
    )  # v2 when matte() changes
    seeds = [v.seed for v in views if v.kind == "listing"]
    balanced = iter(balanced_listing(train_ex, seeds, can_cut))
    out = list(items)
    for i, (_, view) in enumerate(items):
        if view.kind == "listing":
            ex, kind, seed = next(balanced)
            out[i] = (ex, ViewSpec(kind, seed))
    return out


def officers_photos(cfg: HeadsConfig, labels: list[str]) -> tuple[list[data.Example], list[dict]]:
    """:func:`training.officers.officers_photos` of ``cfg.extra_train``, held out from the
    validation, test and dev-ads photos."""
    if not cfg.extra_train:
        return [], []
    held, ads = data.load_split("val") + data.load_split("test"), devads.examples()
    hashes = [ex.pdq for ex in held] + [data.pdq_of_file(ad.file()) for ad in ads]
    return officers.officers_photos(cfg.extra_train, labels, held + ads, hashes)


def train_head(cfg: HeadsConfig, src: FeatureSource, rows: Rows) -> nn.Module:
    """The head fitted on every training view."""
    return fit_heads(src(rows.name, rows.items), rows.y, cfg, rows.mask)


def fine_tune_tail(cfg: HeadsConfig, src: FeatureSource, head: nn.Module, rows: Rows) -> list[dict]:
    """The last ``cfg.finetune_stages`` stages, head convolution and ``head`` trained together
    (:mod:`training.tail`); afterwards ``src`` gives the fine-tuned network's features."""
    from .tail import fine_tune

    x = src.activations(rows.name, rows.items)
    src.net.top.classifier = head
    history = fine_tune(
        src.net.top,
        x,
        rows.y,
        rows.mask,
        epochs=cfg.finetune_epochs,
        lr=cfg.finetune_lr,
        weight_decay=cfg.weight_decay,
        batch_size=cfg.finetune_batch_size,
        class_weight_power=cfg.class_weight_power,
        seed=cfg.seed,
    )
    src.tuned = True
    return history


def fuse_neighbours(cfg: HeadsConfig, src: FeatureSource, head: nn.Module, rows: Rows, limit_per_class: int = 0):
    """``head`` with the ivory neighbour score (:func:`training.neighbours.fuse`): its gallery is
    every training photo clean and ad-style (no listing scenes), its affine and temperature unit
    are fitted on the validation photos in the evaluation views. ``(fused head, record)``."""
    from .neighbours import GALLERY_VIEWS, fuse

    items = [(ex, view) for ex, view in rows.items if view.kind in GALLERY_VIEWS]
    val_ex = _limited(data.load_split("val"), limit_per_class)
    xv = src("val" if not limit_per_class else "val-small", views_of(val_ex, list(EVAL_VIEWS)))
    yv = np.tile(targets_matrix(val_ex, src.labels), (len(EVAL_VIEWS), 1))
    positive = np.array([ex.cls == "ivory" for ex, _ in items])
    kinds = sorted({view.kind for _, view in items})
    settings = {"k": cfg.neighbours_k, "dims": cfg.neighbours_dims, "seed": cfg.seed, "views": kinds}
    return fuse(head, src(rows.name, items), positive, xv, yv, src.labels, "ivory", **settings)


def choose_rule(cfg: HeadsConfig, src: FeatureSource, head: nn.Module, limit_per_class: int = 0) -> dict:
    """Calibrate ``head`` and choose the decision rule (``calibration.json``'s content).

    A head fused with the ivory neighbour score keeps the temperature of the head alone
    (:meth:`training.neighbours.FusedHead.kept_temperature`), so every other class scores as
    without it.

    Temperature and the thresholds of every wildlife class but ivory come from validation
    photos in all three views (clean, ad-style, listing scene; :func:`ovr_thresholds`);
    the crop cascade's start from validation cost; the ivory threshold from the real sale
    posts (``dev-ads``; reported through cross-validation by :mod:`training.devads`).
    """
    labels = src.labels
    wildlife = np.array([get_category(lab).is_wildlife for lab in labels])
    objects = np.array([lab in OBJECT_LABELS for lab in labels])
    val_ex = _limited(data.load_split("val"), limit_per_class)
    yv = np.tile(targets_matrix(val_ex, labels), (len(EVAL_VIEWS), 1))
    lv = head_logits(head, src("val" if not limit_per_class else "val-small", views_of(val_ex, list(EVAL_VIEWS))))
    temperature = FusedHead.kept_temperature(head) or fit_temperature(lv, yv)
    pv = sigmoid(lv / temperature)
    thresholds = ovr_thresholds(pv, yv, labels, wildlife)
    thr = np.array([thresholds.get(lab, 1.0) for lab in labels])
    crops_from = choose_crops_from(pv, objects & wildlife, (wildlife & (pv >= thr)).any(1))

    ads = [ex for ex in devads.examples() if ex.cls in ("ivory", "not_ivory")]
    ads = ads[: 4 * limit_per_class] if limit_per_class else ads
    n_views = 1 + len(cfg.crops)
    dx = src("dev-ads" if not limit_per_class else "dev-ads-small", views_of(ads, crop_views(len(cfg.crops))))
    dp = sigmoid(head_logits(head, dx) / temperature).reshape(n_views, len(ads), len(labels))
    run_crops = needs_crops(dp[0], wildlife, objects, thr, crops_from)
    scores = aggregate(dp, objects, run_crops)
    positives = np.array([ex.cls == "ivory" for ex in ads])
    ivory = labels.index("ivory")
    floor = ivory_floor(cfg, src, head, temperature, val_ex, wildlife, objects, thr, crops_from, limit_per_class)
    thresholds["ivory"] = round(max(floor, devads.best_threshold(scores[:, ivory], positives)), 4)
    cv_flags, fold_thresholds = devads.cross_validated_flags(
        scores[:, ivory], positives, [ex.source for ex in ads], floor=floor
    )
    return {
        "labels": labels,
        "temperature": temperature,
        "thresholds": thresholds,
        "score_mode": "sigmoid",
        "object_labels": [lab for lab in labels if lab in OBJECT_LABELS],
        "crops_from": crops_from,
        "possible_ratio": POSSIBLE_RATIO,
        "val_crop_fraction": float(needs_crops(pv, wildlife, objects, thr, crops_from).mean()),
        "dev_ads_crop_fraction": float(run_crops.mean()),
        "dev_ads_cross_validated": {**devads.prf(cv_flags, positives), "fold_thresholds": fold_thresholds},
        "ivory_floor": round(floor, 4),
        "val_photos": len(val_ex),
    }


def ivory_floor(
    cfg: HeadsConfig,
    src: FeatureSource,
    head: nn.Module,
    temperature: float,
    val_ex: list[data.Example],
    wildlife: np.ndarray,
    objects: np.ndarray,
    thr: np.ndarray,
    crops_from: float,
    limit_per_class: int = 0,
) -> float:
    """The lowest ivory threshold at which ivory flags at most ``IVORY_MAX_FALSE_FLAG`` of the
    non-wildlife validation photos, scored as shipped (whole photo + crops by the cascade)."""
    negatives = [ex for ex in val_ex if not get_category(ex.cls).is_wildlife]
    name = "val-neg-crops" if not limit_per_class else "val-neg-crops-small"
    views = crop_views(len(cfg.crops))
    p = sigmoid(head_logits(head, src(name, views_of(negatives, views))) / temperature)
    p = p.reshape(len(views), len(negatives), -1)
    scores = aggregate(p, objects, needs_crops(p[0], wildlife, objects, thr, crops_from))[:, src.labels.index("ivory")]
    return float(np.quantile(scores, 1 - IVORY_MAX_FALSE_FLAG)) + 1e-4
