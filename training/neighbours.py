"""Ivory by its nearest training photos: a k-nearest-neighbour score fused into the head.

The MLP head learns one boundary for the whole feature space; the training photos nearest
to a listing photo say something it does not. For each view, the ivory neighbour score is

    d = mean cosine similarity of the k nearest ivory training photos
        - mean cosine similarity of the k nearest other training photos

on the pooled trunk features (L2-normalised, centred, projected by PCA onto ``dims``
directions, normalised again; the gallery is stored in float16). ``d`` is mapped to a logit
by a logistic fit on the validation views (``scale * d + bias``) and averaged with the
head's ivory logit in temperature units:

    ivory logit = (head logit + temperature * neighbour logit) / 2

Everything is one torch module on the pooled features (:class:`FusedHead`), exported
inside the ONNX graph: the runtime, the cascade, the API and the scan see one ivory logit,
and the model file's SHA-256 covers the gallery. Measured on dev-ads (2026-12-03): see the
model card.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

GALLERY_VIEWS = ("clean", "train")  # the training photo as it is and ad-style; no listing scenes


class NeighbourScore(nn.Module):
    """``scale * d + bias`` per row of pooled features (``d`` as in the module docstring)."""

    def __init__(
        self,
        mean: torch.Tensor,
        projection: torch.Tensor,
        positives: torch.Tensor,
        negatives: torch.Tensor,
        k: int,
        scale: float = 1.0,
        bias: float = 0.0,
    ):
        super().__init__()
        self.k = int(k)
        self.register_buffer("neighbours", torch.tensor(self.k))  # k, saved with the gallery
        self.register_buffer("mean", mean.float())
        self.register_buffer("projection", projection.float())
        self.register_buffer("positives", positives.half())  # P x dims, unit rows
        self.register_buffer("negatives", negatives.half())  # Q x dims, unit rows
        self.register_buffer("affine", torch.tensor([scale, bias], dtype=torch.float32))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features -> unit vectors in the gallery's space."""
        return F.normalize((F.normalize(x, dim=-1) - self.mean) @ self.projection, dim=-1)

    def contrast(self, x: torch.Tensor) -> torch.Tensor:
        """``d``: nearest ivory minus nearest other, k-mean cosine similarities."""
        z = self.embed(x)
        near = lambda gallery: torch.topk(z @ gallery.float().T, self.k, dim=-1).values.mean(-1)
        return near(self.positives) - near(self.negatives)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.affine[0] * self.contrast(x) + self.affine[1]

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self.k = int(self.neighbours)  # k is a Python int for TopK; the buffer is what is saved

    @classmethod
    def from_state(cls, state: dict, prefix: str) -> NeighbourScore:
        """An instance shaped like the one saved in ``state`` (its keys under ``prefix``); load
        ``state`` into it (or its parent) for the saved values."""
        get = lambda name: state[prefix + name]
        return cls(get("mean"), get("projection"), get("positives"), get("negatives"), int(get("neighbours")))


class FusedHead(nn.Module):
    """A head whose ``index`` logit is averaged with a neighbour score (in temperature units)."""

    def __init__(self, head: nn.Module, neighbours: NeighbourScore, index: int, temperature: float):
        super().__init__()
        self.head, self.neighbours, self.index = head, neighbours, int(index)
        self.register_buffer("temperature", torch.tensor(float(temperature)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.head(x)
        i = self.index
        fused = (logits[:, i] + self.temperature * self.neighbours(x)) / 2
        return torch.cat([logits[:, :i], fused[:, None], logits[:, i + 1 :]], dim=1)

    @staticmethod
    def kept_temperature(head: nn.Module) -> float | None:
        """The temperature a fused head keeps (its head's own, so that every other class scores
        as without the neighbour score); ``None`` for any other head (fit one)."""
        return round(float(head.temperature), 4) if isinstance(head, FusedHead) else None

    @classmethod
    def wrap(cls, head: nn.Module, state: dict, prefix: str, index: int) -> FusedHead:
        """``head`` fused with the neighbour score saved in ``state`` under ``prefix``
        (``top.pt`` of a run: ``classifier.``); load ``state`` into the result afterwards."""
        return cls(head, NeighbourScore.from_state(state, prefix + "neighbours."), index, 1.0)


def build_gallery(features: np.ndarray, positive: np.ndarray, k: int, dims: int, seed: int = 0) -> NeighbourScore:
    """The gallery of ``features`` (N x D pooled) split by ``positive``; the PCA is fitted on at
    most 8,000 rows drawn with ``seed`` (deterministic). Affine not yet fitted (1, 0)."""
    x = F.normalize(torch.from_numpy(np.asarray(features, np.float32)), dim=-1)
    mean = x.mean(0)
    rows = np.random.default_rng(seed).permutation(len(x))[:8000]
    _, _, vt = torch.linalg.svd(x[np.sort(rows)] - mean, full_matrices=False)
    projection = vt[: min(dims, vt.shape[0])].T.contiguous()
    z = F.normalize((x - mean) @ projection, dim=-1)
    pos = torch.from_numpy(np.asarray(positive, bool))
    if not pos.any() or pos.all():
        raise ValueError("the neighbour gallery needs both positive and other photos")
    k = min(k, int(pos.sum()), int((~pos).sum()))
    return NeighbourScore(mean, projection, z[pos], z[~pos], k)


def fit_affine(score: NeighbourScore, features: np.ndarray, positive: np.ndarray) -> tuple[float, float]:
    """Set (and return) ``scale, bias`` by logistic regression of ``positive`` on ``d``."""
    with torch.no_grad():  # one rows x gallery block: about 0.7 GB for the 7,713 validation views
        d = score.contrast(torch.from_numpy(np.asarray(features, np.float32))).double()
    y = torch.from_numpy(np.asarray(positive, np.float64))
    w = torch.tensor([10.0, 0.0], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(w[0] * d + w[1], y)
        loss.backward()
        return loss

    opt.step(closure)
    scale, bias = (float(v) for v in w.detach())
    if not scale > 0:  # the score would rank ivory backwards on validation: fusing it would hurt
        raise ValueError(f"the neighbour score does not separate the label on validation (scale {scale:.3g})")
    score.affine.copy_(torch.tensor([scale, bias]))
    return scale, bias


def fuse(
    head: nn.Module,
    gallery: np.ndarray,
    positive: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    labels: list[str],
    label: str,
    *,
    k: int,
    dims: int,
    seed: int,
    views: list[str],
) -> tuple[FusedHead, dict]:
    """``head`` (over ``labels``) with the neighbour score of ``label``: the gallery of pooled
    ``gallery`` features (``positive`` marks that label's rows; ``views``: their kinds, for the
    record), the affine and the temperature unit fitted on the validation features ``val_x``
    and targets ``val_y`` (rows x labels). Returns ``(fused head, what to record)``
    (``training.heads.fuse_neighbours`` gathers the views)."""
    from .headfit import head_logits
    from .rule import fit_temperature

    index = labels.index(label)
    score = build_gallery(gallery, positive, k, dims, seed)
    temperature = fit_temperature(head_logits(head, val_x), val_y)
    scale, bias = fit_affine(score, val_x, val_y[:, index])
    info = {
        "label": label,
        "k": score.k,
        "dims": int(score.projection.shape[1]),
        "gallery": {label: len(score.positives), "other": len(score.negatives)},
        "views": views,
        "scale": round(scale, 4),
        "bias": round(bias, 4),
        "head_temperature": temperature,
    }
    return FusedHead(head, score, index, temperature).eval(), info


def store_gallery_half(net: nn.Module, path: Path) -> int:
    """Constant folding at export writes the float16 gallery of ``net``'s neighbour score as
    float32 (twice the bytes, about 25 MB): store those initializers as float16 again with a
    Cast back to float32 in the graph (exact). Returns how many were replaced."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    galleries = [
        t.float().numpy() for m in net.modules() if isinstance(m, NeighbourScore) for t in (m.positives, m.negatives)
    ]
    if not galleries:
        return 0
    model = onnx.load(str(path))
    replaced = 0
    for init in list(model.graph.initializer):
        if init.data_type != TensorProto.FLOAT or len(init.dims) != 2:
            continue
        values = numpy_helper.to_array(init)
        if not any(_same(values, g) or _same(values, g.T) for g in galleries):
            continue
        half = numpy_helper.from_array(values.astype(np.float16), init.name + "_float16")
        model.graph.initializer.remove(init)
        model.graph.initializer.append(half)
        model.graph.node.insert(0, helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT))
        replaced += 1
    onnx.save(model, str(path))
    return replaced


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.array_equal(a, b)
