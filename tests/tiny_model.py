"""A tiny ONNX model built with onnx.helper (no torch), for fast runtime tests.

Graph: image (N,3,S,S) -> GlobalAveragePool -> Flatten -> embedding (N,3) = mean RGB in
normalised units -> MatMul W + b -> logits (N,4). With the weights below a bright, warm
photo scores high on ``ivory``, a blue one on ``reef_coral``, a dark one on
``goods_other``: simple, but it responds to real pixels, so tests can tell images apart.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from vision.bundle import BundleConfig, save_bundle_config
from vision.preprocess import PreprocessConfig

TINY_LABELS = ["ivory", "reef_coral", "ceramic_porcelain", "goods_other"]
# rows: R, G, B (normalised mean); columns: labels
TINY_W = np.array([[4.0, -3.0, 1.0, -2.0], [2.0, 1.0, 1.0, -2.0], [-1.0, 5.0, 1.0, -2.0]], dtype=np.float32)
TINY_B = np.array([0.0, -1.0, 0.5, 0.0], dtype=np.float32)


def build_tiny_onnx(path: Path, size: int = 32) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, size, size])
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", len(TINY_LABELS)])
    embedding = helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", 3])
    nodes = [
        helper.make_node("GlobalAveragePool", ["image"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["embedding"], axis=1),
        helper.make_node("MatMul", ["embedding", "W"], ["mm"]),
        helper.make_node("Add", ["mm", "B"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [image],
        [logits, embedding],
        initializer=[numpy_helper.from_array(TINY_W, "W"), numpy_helper.from_array(TINY_B, "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def tiny_logits(batch: np.ndarray) -> np.ndarray:
    """The same computation in numpy (the test oracle)."""
    return batch.mean(axis=(2, 3)) @ TINY_W + TINY_B


def make_tiny_bundle(folder: Path, name: str = "tiny.test", size: int = 32, crops=(), **config) -> Path:
    onnx_path = build_tiny_onnx(folder / f"{name}.onnx", size)
    cfg = BundleConfig(
        name=name,
        version="0.0.1",
        labels=list(TINY_LABELS),
        preprocess=PreprocessConfig(input_size=size, crops=crops),
        embedding_dim=3,
        **{"thresholds": {"ivory": 0.6, "reef_coral": 0.6}, **config},
    )
    save_bundle_config(onnx_path, cfg)
    return onnx_path


CASCADE_CROPS = ((0.0, 0.0, 0.5, 0.5), (0.5, 0.5, 1.0, 1.0))


def make_cascade_bundle(folder: Path, crops_from: float, **config) -> Path:
    """A one-vs-rest tiny bundle with two quarter crops, ivory read at its best view, and
    thresholds nothing reaches: the crops run exactly when a trigger scores ``crops_from``."""
    settings = {"object_labels": ["ivory"], "thresholds": {"ivory": 0.9999, "reef_coral": 0.9999}, **config}
    return make_tiny_bundle(folder, crops=CASCADE_CROPS, score_mode="sigmoid", crops_from=crops_from, **settings)


def framed_photo(path: Path, size: int, at: tuple[int, int], background: tuple[int, int, int]) -> bytes:
    """PNG bytes of a dark listing-like ``size`` x ``size`` frame with the real photo at
    ``path`` filling one quarter, its top-left corner at pixel ``at``."""
    frame = Image.new("RGB", (size, size), background)
    frame.paste(Image.open(path).convert("RGB").resize((size // 2, size // 2)), at)
    out = io.BytesIO()
    frame.save(out, "PNG")
    return out.getvalue()
