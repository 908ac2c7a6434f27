"""Partial fine-tune for the model 2 recipe: the last stages of the trunk learn too.

``HeadsConfig.finetune_stages`` > 0 turns it on. The head is first fitted on the frozen
network's pooled features (:func:`training.heads.train_head`, as for the frozen recipe);
then the last ``finetune_stages`` stages, the head convolution and that head are trained
together with the same one-vs-rest loss, on cached activations of the frozen stages for
every training view (clean, ad-style, listing scenes). Batches are drawn at random from
all views, so every batch holds listing scenes (half of the training views). Starting
from a fitted head and keeping the batch-norm statistics frozen changes the pretrained
features as little as the loss asks ("linear probe, then fine-tune"), which is what
holds up best away from the training photos.
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np
import torch
import torch.nn as nn

log = logging.getLogger(__name__)


def row_weights(y: np.ndarray, power: float) -> np.ndarray:
    """Per training row: its class's count ** -``power``, normalised to mean 1."""
    counts = y.sum(0)
    w = (np.maximum(counts, 1) ** -power)[y.argmax(1)]
    return (w / w.mean()).astype(np.float32)


def _freeze_batchnorm(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eval()


def fine_tune(
    top: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    mask: np.ndarray,
    *,
    epochs: int,
    lr: float,
    weight_decay: float,
    batch_size: int,
    class_weight_power: float,
    seed: int,
) -> list[dict]:
    """Train ``top`` (remaining stages, head convolution, fitted head) on cached activations
    ``x`` (float16 N x C x H x W) with the masked one-vs-rest loss; returns per-epoch history."""
    torch.manual_seed(seed)
    wt = torch.from_numpy(row_weights(y, class_weight_power))
    yt, mt = torch.from_numpy(y), torch.from_numpy(mask)
    params = [p for p in top.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    steps = max(1, epochs * math.ceil(len(x) / batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    loss_fn = nn.BCEWithLogitsLoss(reduction="none")
    gen = torch.Generator().manual_seed(seed)
    history = []
    for epoch in range(epochs):
        top.train()
        _freeze_batchnorm(top)
        t0, total = time.time(), 0.0
        for idx in torch.randperm(len(x), generator=gen).split(batch_size):
            rows = np.sort(idx.numpy())
            xb = torch.from_numpy(np.asarray(x[rows], np.float32))
            logits = top(xb)[0]
            loss = ((loss_fn(logits, yt[rows]) * mt[rows]).sum(1) * wt[rows]).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(rows)
        entry = {"epoch": epoch + 1, "train_loss": round(total / len(x), 5), "seconds": round(time.time() - t0, 1)}
        log.info("fine-tune %s", entry)
        history.append(entry)
    top.eval()
    return history


@torch.no_grad()
def embed(top: nn.Module, x: np.ndarray, batch: int = 512) -> np.ndarray:
    """Pooled embeddings (float32 N x D) of cached activations through ``top``."""
    top.eval()
    out = [top(torch.from_numpy(np.asarray(x[i : i + batch], np.float32)))[1].numpy() for i in range(0, len(x), batch)]
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)
