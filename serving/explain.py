"""Occlusion saliency: which part of the photo the answer depends on (onnxruntime only).

A grey patch slides over a ``grid`` x ``grid`` lattice of the model input; for each
position the model runs on the occluded image, and the cell's importance is how much
the predicted label's probability drops. All ``grid**2`` occluded images plus the
original go through the model in one batched call, so the cost is bounded: 50 images
for the default 7 x 7 grid. The result is the grid (normalised to 0..1), the raw
drops, where the grid lies on the original photo, and a small PNG overlay.
"""

from __future__ import annotations

import base64
import io
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from vision.preprocess import PreprocessConfig, crop_views
from vision.taxonomy import UNCERTAIN

GREY = 0.5  # the occluder, in [0, 1] pixel units
OVERLAY_SIZE = 112


@dataclass(frozen=True)
class Explanation:
    """An occlusion heatmap for one image and one label.

    ``grid[r][c]`` is the importance of row ``r`` (top first), column ``c`` in 0..1
    (1 = the cell whose occlusion lowers the label's probability most); ``drops`` the
    raw probability drops; ``region`` is ``(x0, y0, x1, y1)``, where the grid's outer
    edges lie on the original photo as fractions of its width and height; ``overlay_png``
    a ``data:image/png`` URL of a translucent heatmap to stretch over that region. ``view``
    says which model input was explained: the crop that gave a label read at its best view
    its score (a small snake in a wide scene), else the whole photo (0).
    """

    label: str
    base_score: float
    grid: list[list[float]]
    drops: list[list[float]]
    max_drop: float
    region: tuple[float, float, float, float]
    overlay_png: str
    view: int = 0  # the model input explained: 0 the whole photo, k the k-th crop (``region`` is on it)

    def as_dict(self) -> dict:
        """JSON-ready fields (the API's ``explanation`` block)."""
        return asdict(self)


def occluded_batch(tensor: np.ndarray, grid: int, fill: np.ndarray, patch_scale: float = 2.0) -> np.ndarray:
    """``grid**2`` copies of a C x S x S tensor, each with one patch set to ``fill`` (per channel).

    Patch ``r * grid + c`` is centred on lattice cell ``(r, c)`` and is ``patch_scale``
    cells wide (clipped at the borders).
    """
    _, height, width = tensor.shape
    batch = np.repeat(tensor[None], grid * grid, axis=0)
    for r in range(grid):
        y0, y1 = _patch_span(r, grid, height, patch_scale)
        for c in range(grid):
            x0, x1 = _patch_span(c, grid, width, patch_scale)
            batch[r * grid + c, :, y0:y1, x0:x1] = fill[:, None, None]
    return batch


def _patch_span(index: int, grid: int, size: int, scale: float) -> tuple[int, int]:
    cell = size / grid
    centre = (index + 0.5) * cell
    half = max(1.0, cell * scale / 2)
    return max(0, round(centre - half)), min(size, round(centre + half))


def grey_fill(cfg: PreprocessConfig) -> np.ndarray:
    """The grey occluder in the model's normalised units, one value per channel."""
    return ((GREY - np.asarray(cfg.mean, np.float32)) / np.asarray(cfg.std, np.float32)).astype(np.float32)


def occlusion_drops(
    classifier, tensor: np.ndarray, label_index: int | None = None, grid: int = 7
) -> tuple[np.ndarray, int, float]:
    """``(drops grid x grid, label index, base probability)`` for one preprocessed tensor.

    ``label_index`` defaults to the model's top label. One call to ``classifier.run``.
    With crops in the preprocessing the whole photo (view 0) is explained.
    """
    tensor = tensor[0] if tensor.ndim == 4 else tensor
    batch = np.concatenate([tensor[None], occluded_batch(tensor, grid, grey_fill(classifier.preprocess))])
    logits, _ = classifier.run(batch)
    probs = classifier.probabilities(logits)
    index = int(np.argmax(probs[0])) if label_index is None else int(label_index)
    base = float(probs[0, index])
    drops = (base - probs[1:, index]).reshape(grid, grid)
    return drops, index, base


def scored_view(classifier, tensor: np.ndarray, source: Image.Image | None, index: int) -> tuple[np.ndarray, int]:
    """``(model input, view)``: the input whose score the result reports for label ``index``.
    A label read at its best view (``object_labels``) takes it from the crop that scored it
    highest when the cascade ran the crops for this photo; any other label, or a photo whose
    crops did not run, from the whole photo (view 0). ``tensor`` is the whole photo (3 x S x S)
    or every view (V x 3 x S x S); ``source`` the decoded photo when the crops were not made."""
    cfg = classifier.preprocess
    whole = tensor[0] if tensor.ndim == 4 else tensor
    best_view_label = classifier.labels[index] in classifier.config.object_labels
    if not cfg.crops or not best_view_label or cfg.resize_mode != "squash":
        return whole, 0
    if not classifier.needs_crops(classifier.probabilities(classifier.run(whole[None])[0]))[0]:
        return whole, 0  # the cascade did not run the crops: the whole photo's score was reported
    if tensor.ndim == 4:
        views = tensor
    elif source is not None:
        views = np.concatenate([whole[None], crop_views(source, cfg)])
    else:
        return whole, 0
    view = int(np.argmax(classifier.probabilities(classifier.run(views)[0])[:, index]))
    return views[view], view


def explain(
    classifier,
    tensor: np.ndarray,
    label: str | None,
    *,
    width: int,
    height: int,
    grid: int = 7,
    source: Image.Image | None = None,
) -> Explanation:
    """Explain ``label`` (the result's label; ``uncertain`` or ``None`` -> the top label) on the
    model input that gave its score (:func:`scored_view`; ``source``: the decoded photo, for
    crops prepared lazily).

    ``width`` and ``height`` are the original photo's, used to place the grid on it.
    """
    index = classifier.labels.index(label) if label and label != UNCERTAIN and label in classifier.labels else None
    view = 0
    if index is not None:
        tensor, view = scored_view(classifier, tensor, source, index)
    drops, index, base = occlusion_drops(classifier, tensor, index, grid)
    positive = np.clip(drops, 0.0, None)
    peak = float(positive.max())
    importance = positive / peak if peak > 1e-6 else np.zeros_like(positive)
    return Explanation(
        label=classifier.labels[index],
        base_score=round(base, 6),
        grid=np.round(importance.astype(np.float64), 4).tolist(),
        drops=np.round(drops.astype(np.float64), 6).tolist(),
        max_drop=round(peak, 6),
        region=tuple(classifier.preprocess.crops[view - 1])
        if view
        else grid_region(classifier.preprocess, width, height),
        overlay_png=png_data_url(heatmap_image(importance)),
        view=view,
    )


def grid_region(cfg: PreprocessConfig, width: int, height: int) -> tuple[float, float, float, float]:
    """Where the model input's square lies on the original photo, as fractions ``(x0, y0, x1, y1)``.

    ``squash`` covers the whole photo; ``center_crop`` a central part; ``letterbox``
    extends past the photo's short sides (values below 0 or above 1).
    """
    if cfg.resize_mode == "squash" or width <= 0 or height <= 0:
        return (0.0, 0.0, 1.0, 1.0)
    size = cfg.input_size
    if cfg.resize_mode == "center_crop":
        scale = cfg.decode_size / min(width, height)
        fx, fy = size / (width * scale), size / (height * scale)
    else:  # letterbox: the long side fills the square
        scale = size / max(width, height)
        fx, fy = size / (width * scale), size / (height * scale)
    return (round((1 - fx) / 2, 6), round((1 - fy) / 2, 6), round((1 + fx) / 2, 6), round((1 + fy) / 2, 6))


def heatmap_image(importance: np.ndarray, size: int = OVERLAY_SIZE) -> Image.Image:
    """A translucent RGBA heatmap (yellow to red, transparent where unimportant), smoothly upscaled."""
    small = Image.fromarray(np.asarray(importance, np.float32))
    v = np.clip(np.asarray(small.resize((size, size), Image.Resampling.BILINEAR)), 0.0, 1.0)
    rgba = np.empty((size, size, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[..., 1] = (220 * (1.0 - v)).astype(np.uint8)
    rgba[..., 2] = 0
    rgba[..., 3] = (190 * v).astype(np.uint8)
    return Image.fromarray(rgba)


def png_data_url(image: Image.Image) -> str:
    """``data:image/png;base64,...`` for a Pillow image."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
