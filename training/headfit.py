"""The one-vs-rest heads on pooled features: build, fit, and average over seeds.

A head trained on cached features varies with its seed (initialisation and batch order):
on the 97 real ivory photos of dev-ads the cross-validated F1 of single seeds spans about
0.80 to 0.84. ``ensemble`` heads trained with consecutive seeds and averaged in logit
space (:class:`MeanOfHeads`, one ONNX graph) take the draw out: five heads add about 7 M
multiply-adds to lite0's 400 M (counted, not timed). Measured on 2026-12-03, the average
ranks real ads no better than one head, so the shipped recipe keeps ``ensemble: 1``
(model card, "The ranking plateau").
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
import torch.nn as nn


class FitSettings(Protocol):
    """What :func:`fit_heads` reads of ``training.heads.HeadsConfig``."""

    seed: int
    ensemble: int
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    class_weight_power: float
    hidden: int
    head_dropout: float


class MeanOfHeads(nn.Module):
    """Heads of the same shape, their logits averaged."""

    def __init__(self, heads: list[nn.Module]):
        super().__init__()
        self.heads = nn.ModuleList(heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([head(x) for head in self.heads]).mean(0)


def make_head(in_dim: int, n: int, hidden: int = 0, dropout: float = 0.0, ensemble: int = 1) -> nn.Module:
    """A linear head, or with ``hidden`` one hidden ReLU layer (dropout on its inputs);
    with ``ensemble`` > 1, that many of them averaged (:class:`MeanOfHeads`)."""
    if ensemble > 1:
        return MeanOfHeads([make_head(in_dim, n, hidden, dropout) for _ in range(ensemble)])
    if not hidden:
        return nn.Linear(in_dim, n)
    return nn.Sequential(
        nn.Dropout(dropout), nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, n)
    )


def first_linear(head: nn.Module) -> nn.Linear:
    return head if isinstance(head, nn.Linear) else next(m for m in head.modules() if isinstance(m, nn.Linear))


def fit_heads(x: np.ndarray, y: np.ndarray, cfg: FitSettings, mask: np.ndarray | None = None) -> nn.Module:
    """The one-vs-rest head (binary cross-entropy per label) on features ``x``; with
    ``cfg.ensemble`` > 1, that many heads fitted with seeds ``cfg.seed``, ``cfg.seed + 1``, …
    and averaged.

    Rows are weighted by their class's count ** -``class_weight_power``; ``mask`` (same
    shape as ``y``) zeroes loss entries that are unknown (a listing scene's background).
    """
    from .tail import row_weights

    # standardised once for every seed; each head folds it back into its first layer
    mean, std = x.mean(0), x.std(0) + 1e-6
    xt = torch.from_numpy((x - mean) / std)
    yt, wt = torch.from_numpy(y), torch.from_numpy(row_weights(y, cfg.class_weight_power))
    mt = torch.from_numpy(mask if mask is not None else np.ones_like(y))
    heads = []
    for k in range(max(1, cfg.ensemble)):
        head = _fit_one(xt, yt, wt, mt, cfg, cfg.seed + k)
        layer = first_linear(head)  # W (x - mean) / std + b
        with torch.no_grad():
            w = layer.weight / torch.from_numpy(std)
            layer.bias -= (w * torch.from_numpy(mean)).sum(1)
            layer.weight.copy_(w)
        heads.append(head.eval())
    return heads[0] if len(heads) == 1 else MeanOfHeads(heads)


def _fit_one(
    xt: torch.Tensor, yt: torch.Tensor, wt: torch.Tensor, mt: torch.Tensor, cfg: FitSettings, seed: int
) -> nn.Module:
    """One head trained with ``seed`` on standardised features ``xt``."""
    torch.manual_seed(seed)
    head = make_head(xt.shape[1], yt.shape[1], cfg.hidden, cfg.head_dropout)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * -(-len(xt) // cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps)
    loss_fn = nn.BCEWithLogitsLoss(reduction="none")
    gen = torch.Generator().manual_seed(seed)
    head.train()
    for _ in range(cfg.epochs):
        for idx in torch.randperm(len(xt), generator=gen).split(cfg.batch_size):
            loss = (loss_fn(head(xt[idx]), yt[idx]) * mt[idx]).sum(1) * wt[idx]
            opt.zero_grad()
            loss.mean().backward()
            opt.step()
            sched.step()
    return head


def head_logits(head: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return head(torch.from_numpy(np.asarray(x, np.float32))).numpy()
