"""A torch ``Dataset`` over a wildtrade split, for end-to-end training and evaluation.

Pixels come from ``training.features.render``: ``vision.preprocess`` decodes and
preprocesses, ``training.augment`` makes training and ad-style views. Nothing here
re-implements preprocessing.
"""

from __future__ import annotations

import random

import torch
from torch.utils.data import Dataset

from vision.preprocess import PreprocessConfig

from . import data
from .features import ViewSpec, render


class WildtradeDataset(Dataset):
    """``(image tensor, class index)`` pairs for one split.

    ``view``: ``train`` (a fresh random augmentation at every access), ``clean`` or
    ``ad`` (the deterministic ad-style evaluation view).
    """

    def __init__(
        self,
        examples: list[data.Example],
        labels: list[str],
        cfg: PreprocessConfig,
        view: str = "clean",
        ad_probability: float = 0.7,
        seed: int = 0,
    ):
        if view not in ("train", "clean", "ad"):
            raise ValueError(f"view must be train, clean or ad, got {view!r}")
        self.examples, self.cfg, self.view = examples, cfg, view
        self.index = {lab: i for i, lab in enumerate(labels)}
        self.ad_probability = ad_probability
        self._rng = random.Random(seed)

    @classmethod
    def from_split(cls, split: str, labels: list[str] | None = None, cfg: PreprocessConfig | None = None, **kw):
        return cls(data.load_split(split), labels or data.classes(), cfg or PreprocessConfig(), **kw)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        ex = self.examples[i]
        seed = self._rng.randrange(1 << 30) if self.view == "train" else 0
        array = render(ex.file(), ex.sha256, ViewSpec(self.view, seed), self.cfg, self.ad_probability)
        return torch.from_numpy(array), self.index[ex.cls]
