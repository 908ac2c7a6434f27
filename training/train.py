"""Fine-tune the wildscan network: cached trunk features on CPU, end to end on a GPU.

``wildscan train --config CONFIG.json`` (or flags) writes a run folder with the resolved
config, the trained top's weights, the fitted temperature and per-class thresholds, and
the validation history. ``wildscan export RUN`` turns a run into a model bundle.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from vision.preprocess import PreprocessConfig
from vision.taxonomy import get_category

from . import data, metrics
from .errors import TrainingError
from .features import ViewSpec, cached_features
from .model import build, cut_name

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Everything a training run depends on; saved as ``config.json`` in the run folder."""

    name: str = "efficientnet_lite0.wildtrade_v1"
    arch: str = "tf_efficientnet_lite0"
    cut: int = 6  # blocks[:cut] frozen and cached; blocks[cut:] + head fine-tuned
    cut_layer: int = 0  # >0: the first cut_layer layers of blocks[cut] are frozen too
    preprocess: dict = field(default_factory=lambda: PreprocessConfig().to_dict())
    train_views: int = 3  # augmented views per training photo, besides the clean one
    ad_probability: float = 0.7
    epochs: int = 6
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.02
    label_smoothing: float = 0.1
    class_weight_power: float = 0.5  # loss weight per class ~ count ** -power
    dropout: float = 0.2
    seed: int = 17
    device: str = "cpu"
    mode: str = "auto"  # "cached": frozen trunk, cached features; "full": end to end; auto = full on cuda
    full_lr_trunk: float = 1e-4  # end-to-end: learning rate of the pretrained trunk
    workers: int = 2
    target_precision: float = 0.95
    min_val_positives: int = 10  # fewer: keep the default threshold
    default_threshold: float = 0.5
    uncertain_below: float = 0.4
    limit_per_class: int = 0  # >0: a small subset (tests, smoke runs)
    out_dir: str = "runs"
    cache_dir: str = "runs/cache"

    @classmethod
    def from_file(cls, path: str | Path, **overrides) -> TrainConfig:
        raw = json.loads(Path(path).read_text())
        raw.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**{f.name: raw[f.name] for f in fields(cls) if f.name in raw})

    def run_dir(self) -> Path:
        return data.repo_path(self.out_dir) / self.name


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# --- data ---------------------------------------------------------------------------------


def select_examples(split: str, cfg: TrainConfig, labels: list[str]) -> list[data.Example]:
    """The split's examples, capped per class when ``limit_per_class`` is set."""
    examples = data.load_split(split)
    if cfg.limit_per_class:
        by_class: dict[str, list] = {}
        for ex in examples:
            by_class.setdefault(ex.cls, []).append(ex)
        examples = [ex for cls in labels for ex in by_class.get(cls, [])[: cfg.limit_per_class]]
    return examples


def view_items(examples, views: list[ViewSpec]):
    return [(ex, v) for ex in examples for v in views]


def class_weights(targets: np.ndarray, n: int, power: float) -> torch.Tensor:
    counts = np.bincount(targets, minlength=n).astype(np.float64)
    w = np.where(counts > 0, np.maximum(counts, 1) ** -power, 0.0)
    w *= (counts > 0).sum() / w.sum()
    return torch.tensor(w, dtype=torch.float32)


# --- fitting ------------------------------------------------------------------------------


def fit_top(
    top: nn.Module,
    feats: np.ndarray,
    targets: np.ndarray,
    cfg: TrainConfig,
    n_classes: int,
    val: tuple[np.ndarray, np.ndarray] | None = None,
) -> list[dict]:
    """Train the top on cached features; returns per-epoch history."""
    device = torch.device(cfg.device if cfg.device != "cuda" or torch.cuda.is_available() else "cpu")
    top.to(device).train()
    weights = class_weights(targets, n_classes, cfg.class_weight_power).to(device)
    params = [p for p in top.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * math.ceil(len(feats) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(1, steps), pct_start=0.15)
    gen = np.random.default_rng(cfg.seed)
    history = []
    for epoch in range(cfg.epochs):
        t0, total, seen = time.time(), 0.0, 0
        order = gen.permutation(len(feats))
        top.train()
        for start in range(0, len(order), cfg.batch_size):
            idx = np.sort(order[start : start + cfg.batch_size])
            x = torch.from_numpy(np.asarray(feats[idx], dtype=np.float32)).to(device)
            y = torch.from_numpy(targets[idx]).to(device)
            total += train_step(top, x, y, opt, sched, weights, cfg.label_smoothing) * len(idx)
            seen += len(idx)
        entry = {"epoch": epoch + 1, "train_loss": total / max(1, seen), "seconds": round(time.time() - t0, 1)}
        if val is not None:
            vlogits = predict_top(top, val[0], device)
            entry["val_accuracy"] = float((vlogits.argmax(1) == val[1]).mean())
        log.info("epoch %s", json.dumps(entry))
        history.append(entry)
    return history


def train_step(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, opt, sched, weights: torch.Tensor, label_smoothing: float
) -> float:
    """One optimiser step on a batch (bf16 autocast on CUDA); returns the batch's mean loss."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=x.device.type == "cuda"):
        logits, _ = model(x)
    loss = F.cross_entropy(logits.float(), y, weight=weights, label_smoothing=label_smoothing)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sched.step()
    return loss.item()


@torch.no_grad()
def predict_top(top: nn.Module, feats: np.ndarray, device=torch.device("cpu"), batch: int = 256) -> np.ndarray:
    top.eval()
    out = []
    for start in range(0, len(feats), batch):
        x = torch.from_numpy(np.asarray(feats[start : start + batch], dtype=np.float32)).to(device)
        out.append(top(x)[0].float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def fit_temperature(logits: np.ndarray, targets: np.ndarray) -> float:
    """Temperature minimising validation NLL (scalar, searched on a log grid then refined)."""
    z = torch.from_numpy(np.asarray(logits, dtype=np.float64))
    y = torch.from_numpy(targets)

    def nll(t: float) -> float:
        return float(F.cross_entropy(z / t, y))

    grid = np.exp(np.linspace(np.log(0.2), np.log(5.0), 60))
    best = min(grid, key=nll)
    lo, hi = best / 1.1, best * 1.1
    for _ in range(30):  # golden-section refinement
        a, b = lo + 0.382 * (hi - lo), lo + 0.618 * (hi - lo)
        lo, hi = (lo, b) if nll(a) < nll(b) else (a, hi)
    return round(float((lo + hi) / 2), 4)


def choose_thresholds(probs: np.ndarray, targets: np.ndarray, labels: list[str], cfg: TrainConfig) -> dict[str, float]:
    """Per wildlife class: the lowest score threshold whose validation precision reaches
    ``target_precision`` (one class against all others). Classes with fewer than
    ``min_val_positives`` validation photos keep ``default_threshold``; a class that never
    reaches the target gets the threshold of its best precision."""
    out = {}
    for k, label in enumerate(labels):
        if not get_category(label).is_wildlife:
            continue
        positives = targets == k
        if positives.sum() < cfg.min_val_positives:
            out[label] = cfg.default_threshold
            continue
        t = metrics.threshold_at_precision(probs[:, k], positives, cfg.target_precision)
        out[label] = round(min(0.99, max(0.2, t)), 4)
    return out


# --- the run ------------------------------------------------------------------------------


def run(cfg: TrainConfig, progress: bool = True) -> Path:
    """Train as ``cfg`` says; returns the run folder."""
    seed_everything(cfg.seed)
    torch.set_num_threads(max(1, cfg.workers))
    labels = data.classes()
    index = {c: i for i, c in enumerate(labels)}
    pre = PreprocessConfig.from_dict(cfg.preprocess)
    net = build(cfg.arch, len(labels), cfg.cut, pretrained=True, dropout=cfg.dropout, cut_layer=cfg.cut_layer)
    train_ex, val_ex = select_examples("train", cfg, labels), select_examples("val", cfg, labels)
    run_dir = cfg.run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    if resolve_mode(cfg) == "full":
        return run_full(cfg, net, labels, train_ex, val_ex, pre, run_dir)

    cut = cut_name(cfg.cut, cfg.cut_layer)
    trunk_onnx = lambda: export_trunk(net, pre, data.repo_path(cfg.cache_dir) / f"trunk-{cfg.arch}-cut{cut}.onnx")
    train_views = [ViewSpec("clean")] + [ViewSpec("train", s) for s in range(1, cfg.train_views + 1)]
    common = dict(workers=cfg.workers, ad_probability=cfg.ad_probability, progress=progress)
    cache = data.repo_path(cfg.cache_dir)
    train_items = view_items(train_ex, train_views)
    feats = cached_features(cache, "train", train_items, trunk_onnx, cfg.arch, cut, pre, **common)
    targets = np.array([index[ex.cls] for ex, _ in train_items], dtype=np.int64)
    val_clean_items = view_items(val_ex, [ViewSpec("clean")])
    val_ad_items = view_items(val_ex, [ViewSpec("ad")])
    vfeats_clean = cached_features(cache, "val-clean", val_clean_items, trunk_onnx, cfg.arch, cut, pre, **common)
    vfeats_ad = cached_features(cache, "val-ad", val_ad_items, trunk_onnx, cfg.arch, cut, pre, **common)
    vtargets = np.array([index[ex.cls] for ex in val_ex], dtype=np.int64)

    history = fit_top(net.top, feats, targets, cfg, len(labels), val=(vfeats_clean, vtargets))
    torch.save(net.top.state_dict(), run_dir / "top.pt")

    vlogits = np.concatenate([predict_top(net.top, vfeats_clean), predict_top(net.top, vfeats_ad)])
    return _calibrate_and_save(
        cfg,
        labels,
        vlogits,
        np.concatenate([vtargets, vtargets]),
        history,
        run_dir,
        train_photos=len(train_ex),
        train_views=len(train_items),
        val_photos=len(val_ex),
    )


def _calibrate_and_save(
    cfg: TrainConfig,
    labels: list[str],
    vlogits: np.ndarray,
    vtargets: np.ndarray,
    history: list[dict],
    run_dir: Path,
    **counts,
) -> Path:
    """Fit the temperature and thresholds on validation (clean + ad-style views) and save them."""
    temperature = fit_temperature(vlogits, vtargets)
    probs = torch.softmax(torch.from_numpy(vlogits) / temperature, dim=1).numpy()
    half = len(vtargets) // 2  # first half clean view, second half ad-style view
    calibration = {
        "labels": labels,
        "temperature": temperature,
        "thresholds": choose_thresholds(probs, vtargets, labels, cfg),
        "val_accuracy_clean": float((vlogits[:half].argmax(1) == vtargets[:half]).mean()),
        "val_accuracy_ad": float((vlogits[half:].argmax(1) == vtargets[half:]).mean()),
        **counts,
    }
    (run_dir / "calibration.json").write_text(json.dumps(calibration, indent=2) + "\n")
    (run_dir / "history.json").write_text(json.dumps(history, indent=2) + "\n")
    log.info("calibration %s", json.dumps({k: v for k, v in calibration.items() if k not in ("labels", "thresholds")}))
    return run_dir


FROZEN_TRUNK = "on the frozen ImageNet network's pooled features; the network itself is not fine-tuned"


def fine_tuned_part(cfg: TrainConfig) -> str:
    """In words, which part of the network a run trains (for the bundle and model card)."""
    if resolve_mode(cfg) == "full":
        return "the whole network, end to end"
    if cfg.cut >= 7:  # model 2 recipe (training.heads): the trunk stays as ImageNet trained it
        return f"only a new one-vs-rest head (one hidden layer) {FROZEN_TRUNK}"
    first = f"`blocks[{cfg.cut}][{cfg.cut_layer}:]`" if cfg.cut_layer else f"`blocks[{cfg.cut}]`"
    return f"{first} onwards, the head convolution and a new classifier (stem and earlier blocks frozen)"


def resolve_mode(cfg: TrainConfig) -> str:
    if cfg.mode not in ("auto", "cached", "full"):
        raise TrainingError(f"mode must be auto, cached or full, got {cfg.mode!r}")
    return ("full" if cfg.device.startswith("cuda") else "cached") if cfg.mode == "auto" else cfg.mode


def run_full(cfg: TrainConfig, net, labels, train_ex, val_ex, pre: PreprocessConfig, run_dir: Path) -> Path:
    """End-to-end fine-tuning of the whole network (a GPU makes this practical)."""
    from torch.utils.data import DataLoader

    from .dataset import WildtradeDataset

    device = torch.device(cfg.device if not cfg.device.startswith("cuda") or torch.cuda.is_available() else "cpu")
    net.to(device)
    train_ds = WildtradeDataset(train_ex, labels, pre, view="train", ad_probability=cfg.ad_probability, seed=cfg.seed)
    loader = DataLoader(
        train_ds,
        batch_size=cfg.batch_size,
        shuffle=True,
        num_workers=cfg.workers,
        drop_last=len(train_ds) > cfg.batch_size,
        persistent_workers=cfg.workers > 0,
    )
    targets = np.array([train_ds.index[ex.cls] for ex in train_ex])
    weights = class_weights(targets, len(labels), cfg.class_weight_power).to(device)
    opt = torch.optim.AdamW(
        [
            {"params": net.trunk.parameters(), "lr": cfg.full_lr_trunk},
            {"params": net.top.parameters(), "lr": cfg.lr},
        ],
        weight_decay=cfg.weight_decay,
    )
    steps = max(1, cfg.epochs * len(loader))
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=[cfg.full_lr_trunk, cfg.lr], total_steps=steps, pct_start=0.15
    )
    history = []
    for epoch in range(cfg.epochs):
        net.train()
        t0, total, seen = time.time(), 0.0, 0
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            total += train_step(net, x, y, opt, sched, weights, cfg.label_smoothing) * len(y)
            seen += len(y)
        entry = {"epoch": epoch + 1, "train_loss": total / max(1, seen), "seconds": round(time.time() - t0, 1)}
        log.info("epoch %s", json.dumps(entry))
        history.append(entry)
    net.to("cpu").eval()
    torch.save(net.top.state_dict(), run_dir / "top.pt")
    torch.save(net.trunk.state_dict(), run_dir / "trunk.pt")
    vlogits, vt = validation_logits(net, val_ex, labels, pre, cfg.workers)
    return _calibrate_and_save(
        cfg,
        labels,
        vlogits,
        vt,
        history,
        run_dir,
        train_photos=len(train_ex),
        train_views=len(train_ex) * cfg.epochs,
        val_photos=len(val_ex),
    )


@torch.no_grad()
def validation_logits(net, val_ex, labels, pre: PreprocessConfig, workers: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits and targets of the validation photos, clean view then ad-style view."""
    from torch.utils.data import DataLoader

    from .dataset import WildtradeDataset

    vlogits, vt = [], []
    for view in ("clean", "ad"):
        ds = WildtradeDataset(val_ex, labels, pre, view=view)
        for x, y in DataLoader(ds, batch_size=64, num_workers=workers):
            vlogits.append(net(x)[0].numpy())
            vt.append(y.numpy())
    return np.concatenate(vlogits), np.concatenate(vt)


def export_trunk(net, pre: PreprocessConfig, path: Path) -> Path:
    """The frozen trunk as ONNX (for fast feature caching with onnxruntime)."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    trunk = net.trunk.eval()
    example = torch.zeros(2, 3, pre.input_size, pre.input_size)
    tmp = path.with_suffix(".tmp.onnx")
    torch.onnx.export(
        trunk,
        (example,),
        str(tmp),
        input_names=["image"],
        output_names=["features"],
        dynamic_axes={"image": {0: "batch"}, "features": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    tmp.replace(path)
    return path
