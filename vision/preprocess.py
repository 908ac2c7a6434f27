"""Safe image decoding and the one preprocessing implementation (numpy, Pillow, OpenCV).

Training evaluation, export checks, the API and the scanner all call :func:`load_image`
and :func:`to_model_input`; training augmentation works on the decoded ``PIL.Image``
and then calls :func:`to_model_input` as well, so the pixels a model sees are produced
by exactly one piece of code.

Decoding refuses, with an :class:`~vision.errors.ImageError`: empty input, formats
outside the allow-list, images over the pixel cap (checked from the header, before any
pixel is decoded), truncated and corrupt files. It applies the EXIF orientation and
turns CMYK, palette, alpha, 16-bit and animated images into 8-bit RGB (first frame,
alpha composited on white).

Fast path: for JPEGs larger than needed, Pillow's ``draft()`` asks libjpeg for a
reduced-size DCT decode (1/2, 1/4 or 1/8) that still covers the model's input size. On
real photos upscaled to 1600x1200 the model input differs from a full decode by a mean
absolute difference below 0.02 in normalised units (range [-1, 1]); ``tests`` holds that
bound. Set ``fast=False`` to decode every pixel.

Resizing: ``interpolation`` names one of Pillow's filters (bundles up to 2.0.1 use
``bicubic``) or ``linear``: OpenCV's bilinear resize after a box reduction of each side by
the largest whole factor that keeps it at least the target size (what the DCT-reduced JPEG
decode already does). 0.15 ms per crawl-like photo against Pillow's bicubic 1.0 ms; the
bilinear step then shrinks by less than 2x, where it samples without averaging, so detail
finer than two pixels can still alias a little. Measured on the shipped model and not
adopted by it (model card, "Preprocessing change measured").
"""

from __future__ import annotations

import io
import warnings
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np
from PIL import Image

from .errors import ImageError, mib

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")  # MPO (multi-picture JPEG) opens as JPEG
DEFAULT_MAX_PIXELS = 40_000_000  # 40 MP: larger than any phone photo, far below a bomb
DEFAULT_MAX_BYTES = 25 * 1024 * 1024
# Memory a decode may take, estimated from the header before any pixel is decoded: a 2 KB GIF
# can claim 40 MP and cost close to a gigabyte on its way to RGB. 256 MiB admits a 40 MP RGB
# PNG; JPEGs are counted at their reduced (draft) decoding size.
DEFAULT_MAX_DECODED_BYTES = 256 * 2**20
PDQ_MIN_SIDE = 128  # the smallest image a record's PDQ hash is taken from
MAX_ASPECT = 50  # sides further apart than 50:1 are no photo (a 1 x 39,999,999 PNG took 0.84 GB)
# A header claiming more pixels than this per byte of file (above 4 MP) is a bomb or a damaged
# header: deflate (PNG, WebP lossless) cannot pack 3 bytes of RGB into less than 1/1000 byte.
MAX_PIXELS_PER_BYTE, PIXELS_PER_BYTE_FROM = 1000, 4_000_000
_BYTES_PER_PIXEL = {
    "1": 1, "L": 1, "P": 1, "LA": 2, "PA": 2, "La": 2, "RGB": 3, "YCbCr": 3, "LAB": 3, "HSV": 3,
    "RGBA": 4, "RGBa": 4, "CMYK": 4, "RGBX": 4, "I": 4, "F": 4, "I;16": 2, "I;16B": 2, "I;16L": 2,
}  # fmt: skip


def _check_decode_cost(img: Image.Image, limit: int | None) -> None:
    """Refuse, before decoding, an image whose decode would take more than ``limit`` bytes."""
    cost = decode_cost(img.mode, *img.size)
    if limit is not None and cost > limit:
        width, height = img.size
        raise ImageError(
            f"decoding this {width}x{height} {img.format or ''} image ({img.mode}) would take about "
            f"{mib(cost)} of memory; the limit is {mib(limit)}",
            "too_many_pixels",
        )


def _check_proportions(width: int, height: int, size: int) -> None:
    """Refuse, before decoding, absurd sides and pixel counts far out of proportion to the file."""
    if max(width, height) > MAX_ASPECT * max(1, min(width, height)):
        raise ImageError(
            f"the image is {width}x{height} pixels: sides more than {MAX_ASPECT}:1 apart are not a photo",
            "bad_dimensions",
        )
    pixels = width * height
    if pixels > PIXELS_PER_BYTE_FROM and pixels > MAX_PIXELS_PER_BYTE * size:
        raise ImageError(
            f"the header claims {width}x{height} = {pixels / 1e6:.0f} megapixels in a file of {size} bytes "
            f"(more than {MAX_PIXELS_PER_BYTE} pixels per byte): a decompression bomb or a damaged header",
            "too_many_pixels",
        )


def decode_cost(mode: str, width: int, height: int) -> int:
    """Peak bytes to decode one frame of ``mode`` and bring it to RGB: the decoded frame, the
    RGBA copy and composite that alpha and palette modes go through, and the RGB result."""
    native = _BYTES_PER_PIXEL.get(mode, 4)
    through_rgba = 8 if mode in ("P", "PA", "LA", "La", "RGBA", "RGBa") else 0
    return width * height * (native + through_rgba + 3)


RESIZE_MODES = ("squash", "center_crop", "letterbox")
_RESAMPLE = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
}
INTERPOLATIONS = (*_RESAMPLE, "linear")  # linear: a whole-factor box reduction, then OpenCV's bilinear
# For the whole process that imports vision: a 224 px resize gains nothing from threads, and
# scan workers and API requests already run one per core.
cv2.setNumThreads(1)


@dataclass(frozen=True)
class PreprocessConfig:
    """How a model wants its pixels. Stored in every bundle's JSON.

    ``resize_mode``: ``squash`` resizes the whole photo to a square (nothing is cut
    away: a small snake at the edge of a listing photo stays in view); ``center_crop``
    resizes the short side to ``input_size / crop_pct`` and cuts the centre;
    ``letterbox`` fits the long side and pads with the mean colour.
    """

    input_size: int = 224
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    resize_mode: str = "squash"
    crop_pct: float = 1.0
    interpolation: str = "bicubic"
    # Extra views after the whole photo: boxes (left, top, right, bottom) as fractions of
    # the photo, each resized like the whole photo. With crops the model input of a photo
    # is V x 3 x S x S (V = 1 + len(crops)) instead of 3 x S x S.
    crops: tuple[tuple[float, float, float, float], ...] = ()

    def __post_init__(self):
        if self.resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode {self.resize_mode!r}; choose from {', '.join(RESIZE_MODES)}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation {self.interpolation!r}; choose from {', '.join(INTERPOLATIONS)}")
        if not 0.1 <= self.crop_pct <= 1.0:
            raise ValueError(f"crop_pct must be in [0.1, 1], got {self.crop_pct}")
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        crops = tuple(tuple(float(v) for v in box) for box in self.crops)
        for box in crops:
            if len(box) != 4 or not (0 <= box[0] < box[2] <= 1 and 0 <= box[1] < box[3] <= 1):
                raise ValueError(f"a crop is (left, top, right, bottom) within [0, 1], got {box}")
        object.__setattr__(self, "crops", crops)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> PreprocessConfig:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)

    @property
    def decode_size(self) -> int:
        """Smallest short side a decoded image needs before resizing (crops included)."""
        if self.resize_mode == "center_crop":
            return round(self.input_size / self.crop_pct)
        smallest = min((min(r - left, b - t) for left, t, r, b in self.crops), default=1.0)
        return round(self.input_size / smallest)

    @property
    def views(self) -> int:
        """Model inputs per photo: the whole photo plus its crops."""
        return 1 + len(self.crops)

    def input_shape(self) -> tuple[int, ...]:
        """The shape of one photo's model input: 3 x S x S, or V x 3 x S x S with crops."""
        square = (3, self.input_size, self.input_size)
        return (self.views, *square) if self.crops else square


@dataclass
class DecodedImage:
    """An RGB image ready for the model, and what the original file said about itself."""

    image: Image.Image  # 8-bit RGB, EXIF orientation applied (maybe DCT-reduced)
    width: int  # of the original, after orientation
    height: int
    format: str
    info: dict = field(default_factory=dict)
    # the whole photo at the model's input size (uint8 HWC), set by load_for_model
    model_pixels: np.ndarray | None = None

    def pdq_source(self, cfg: PreprocessConfig) -> Image.Image | np.ndarray:
        """What the record's PDQ hash is taken from: the model-size image when it shows the
        whole photo (``squash``) at 128 px or more, about a third of the cost to hash; else
        the decoded photo (never below 128 px either: see :func:`load_for_model`)."""
        usable = cfg.resize_mode == "squash" and cfg.input_size >= PDQ_MIN_SIDE
        return self.model_pixels if usable and self.model_pixels is not None else self.image


def load_image(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int | None = DEFAULT_MAX_BYTES,
    max_decoded_bytes: int | None = DEFAULT_MAX_DECODED_BYTES,
    draft_size: int | None = None,
) -> DecodedImage:
    """Decode ``data`` into 8-bit RGB, safely.

    ``draft_size`` enables the reduced-size JPEG decode: the result keeps both sides
    at least that large. Raises :class:`ImageError` with a ``reason`` for every refusal.
    """
    if not data:
        raise ImageError("the file is empty (0 bytes)", "empty")
    if max_bytes is not None and len(data) > max_bytes:
        raise ImageError(f"the file is {mib(len(data))}; the limit is {mib(max_bytes)}", "too_large")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError as e:
        raise ImageError(f"the image has too many pixels to decode safely ({e})", "too_many_pixels") from e
    except Image.UnidentifiedImageError as e:
        raise ImageError(_not_an_image_message(data), _not_an_image_reason(data)) from e
    except Exception as e:  # header parsers raise assorted errors on garbage
        raise ImageError(f"the image header is damaged: {e}", "corrupt") from e

    width, height = img.size
    if width * height > max_pixels:
        raise ImageError(
            f"the image is {width}x{height} = {width * height / 1e6:.0f} megapixels; "
            f"the limit is {max_pixels / 1e6:.0f} megapixels",
            "too_many_pixels",
        )
    fmt = img.format or "unknown"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if draft_size and fmt in ("JPEG", "MPO"):
                img.draft("RGB", (draft_size, draft_size))
            _check_decode_cost(img, max_decoded_bytes)  # the first frame only is ever decoded
            _check_proportions(width, height, len(data))
            img.load()
            orientation = _exif_orientation(img)  # after the checks: a PNG's EXIF read decodes it all
            rgb = _to_rgb(img)
            if orientation in (2, 3, 4, 5, 6, 7, 8):
                rgb = _apply_orientation(rgb, orientation)
    except ImageError:
        raise
    except OSError as e:
        reason = "truncated" if "truncat" in str(e).lower() else "corrupt"
        what = "the file is cut off (truncated)" if reason == "truncated" else "the image data is damaged"
        raise ImageError(f"{what}: {e}", reason) from e
    except Exception as e:
        raise ImageError(f"the image data is damaged: {e}", "corrupt") from e
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return DecodedImage(image=rgb, width=width, height=height, format=fmt)


def to_model_input(image: Image.Image, cfg: PreprocessConfig, out: np.ndarray | None = None) -> np.ndarray:
    """Resize an RGB image as ``cfg`` says and return a normalised float32 CHW array."""
    return normalize(resize_for_model(image, cfg), cfg, out=out)


def resize_for_model(image: Image.Image, cfg: PreprocessConfig) -> np.ndarray:
    """The geometric half of preprocessing: an ``input_size`` square of uint8 RGB (HWC)."""
    size = cfg.input_size
    if image.mode != "RGB":
        image = image.convert("RGB")
    if cfg.resize_mode == "squash":
        return _resize(image, size, size, cfg.interpolation)
    w, h = image.size
    if cfg.resize_mode == "center_crop":
        # the same arithmetic as torchvision's Resize(short) + CenterCrop(size), which timm uses
        short = cfg.decode_size
        nw, nh = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
        left, top = round((nw - size) / 2.0), round((nh - size) / 2.0)
        return _resize(image, nw, nh, cfg.interpolation)[top : top + size, left : left + size]
    # letterbox
    scale = size / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    canvas = np.empty((size, size, 3), np.uint8)
    canvas[:] = [round(m * 255) for m in cfg.mean]
    top, left = (size - nh) // 2, (size - nw) // 2
    canvas[top : top + nh, left : left + nw] = _resize(image, nw, nh, cfg.interpolation)
    return canvas


def _resize(image: Image.Image, width: int, height: int, interpolation: str) -> np.ndarray:
    if interpolation != "linear":
        return np.asarray(image.resize((width, height), _RESAMPLE[interpolation], reducing_gap=3.0))
    factors = (max(1, image.width // width), max(1, image.height // height))
    if factors != (1, 1):
        image = image.reduce(factors)  # box average per axis, like the DCT-scaled decode; stays >= the target
    return cv2.resize(np.asarray(image), (width, height), interpolation=cv2.INTER_LINEAR)


def normalize(pixels: np.ndarray, cfg: PreprocessConfig, out: np.ndarray | None = None) -> np.ndarray:
    """uint8 HWC -> float32 CHW, ``(x/255 - mean) / std`` as one fused multiply-add."""
    scale = (1.0 / (255.0 * np.asarray(cfg.std, dtype=np.float32))).reshape(3, 1, 1)
    shift = (-np.asarray(cfg.mean, dtype=np.float32) / np.asarray(cfg.std, dtype=np.float32)).reshape(3, 1, 1)
    chw = pixels.transpose(2, 0, 1)
    if out is None:
        out = np.empty(chw.shape, dtype=np.float32)
    np.multiply(chw, scale, out=out, casting="unsafe")
    out += shift
    return out


def to_model_views(image: Image.Image, cfg: PreprocessConfig, pixels: np.ndarray | None = None) -> np.ndarray:
    """The whole photo and each of ``cfg.crops`` as model inputs: ``cfg.input_shape()``.
    ``pixels``: the whole photo already resized (:func:`resize_for_model`), when the caller has it."""
    whole = resize_for_model(image, cfg) if pixels is None else pixels
    if not cfg.crops:
        return normalize(whole, cfg)
    out = np.empty(cfg.input_shape(), dtype=np.float32)
    normalize(whole, cfg, out=out[0])
    crop_views(image, cfg, out=out[1:])
    return out


def crop_views(image: Image.Image, cfg: PreprocessConfig, out: np.ndarray | None = None) -> np.ndarray:
    """Each of ``cfg.crops`` of ``image`` (the decoded photo) as a model input: K x 3 x S x S."""
    w, h = image.size
    if out is None:
        out = np.empty((len(cfg.crops), 3, cfg.input_size, cfg.input_size), dtype=np.float32)
    for i, (left, top, right, bottom) in enumerate(cfg.crops):
        box = (
            round(left * w),
            round(top * h),
            max(round(right * w), round(left * w) + 1),
            max(round(bottom * h), round(top * h) + 1),
        )
        to_model_input(image.crop(box), cfg, out=out[i])
    return out


def load_for_model(
    data: bytes, cfg: PreprocessConfig, *, fast: bool = True, whole_only: bool = False, **limits
) -> tuple[np.ndarray, DecodedImage]:
    """Decode ``data`` and preprocess it: ``(model input, DecodedImage)``; the input is
    CHW float32, or V x CHW when ``cfg`` has crops (:func:`to_model_views`). ``whole_only``:
    the whole photo's input alone, from the same decoded image (the crops can be made later
    from ``DecodedImage.image`` by :func:`crop_views`, identical to the eager ones)."""
    # never decode below 128 px: the PDQ hash of the record may be taken from this image
    decoded = load_image(data, draft_size=max(cfg.decode_size, PDQ_MIN_SIDE) if fast else None, **limits)
    decoded.model_pixels = resize_for_model(decoded.image, cfg)
    if whole_only:
        return normalize(decoded.model_pixels, cfg), decoded
    return to_model_views(decoded.image, cfg, pixels=decoded.model_pixels), decoded


# --- helpers -------------------------------------------------------------------------------


def _exif_orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(0x0112, 1) or 1)
    except Exception:  # a broken EXIF block is not a reason to refuse the photo
        return 1


def _apply_orientation(img: Image.Image, orientation: int) -> Image.Image:
    method = {
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_270,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_90,
    }[orientation]
    return img.transpose(method)


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB; alpha is composited on white."""
    if getattr(img, "n_frames", 1) > 1:
        img.seek(0)
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img)
        if arr.dtype != np.uint8:
            peak = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
            arr = np.clip(arr.astype(np.float32) * (255.0 / peak) + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        top = float(arr.max(initial=0.0)) or 1.0
        arr = np.clip(arr * (255.0 / top if top > 1.0 else 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "RGBa", "La", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


_KNOWN_SIGNATURES = (
    (b"ftypheic", "HEIC"),
    (b"ftypheix", "HEIC"),
    (b"ftypmif1", "HEIF"),
    (b"ftypavif", "AVIF"),
    (b"%PDF", "PDF"),
    (b"PK\x03\x04", "ZIP"),
    (b"<svg", "SVG"),
    (b"<?xml", "XML/SVG"),
)


def _sniff(data: bytes) -> str | None:
    head = data[:64]
    for signature, name in _KNOWN_SIGNATURES:
        if signature in head:
            return name
    return None


_IMAGE_SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF8", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


def claimed_format(data: bytes) -> str | None:
    """The allowed format whose signature the data starts with, if any."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return next((name for signature, name in _IMAGE_SIGNATURES if data.startswith(signature)), None)


def _not_an_image_reason(data: bytes) -> str:
    if claimed_format(data):
        return "corrupt"
    return "unsupported_format" if _sniff(data) else "not_an_image"


def _not_an_image_message(data: bytes) -> str:
    allowed = "JPEG, PNG, WebP, GIF, BMP or TIFF"
    claimed = claimed_format(data)
    if claimed:
        return f"the file starts like a {claimed} image but its header is damaged"
    kind = _sniff(data)
    if kind:
        return f"{kind} files are not supported; send a {allowed} image"
    return f"not a {allowed} image (the file's content is not a recognised image)"
