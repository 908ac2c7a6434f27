"""Decoding and preprocessing on real photos and on every kind of bad input."""

import io
import struct
import zlib

import numpy as np
import pytest
from memory import reset_peak, status_mib
from PIL import Image

from vision.errors import ImageError
from vision.preprocess import (
    PreprocessConfig,
    load_for_model,
    load_image,
    normalize,
    resize_for_model,
    to_model_input,
)

CFG = PreprocessConfig()


def jpeg_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90, **kw)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height``, followed by a tiny (bogus) IDAT."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    )


@pytest.fixture()
def real(photo) -> Image.Image:
    return Image.open(photo("snake_live")).convert("RGB")


def test_real_photo_decodes_to_rgb_and_normalises(photo):
    data = photo("ivory_carving").read_bytes()
    tensor, decoded = load_for_model(data, CFG)
    assert decoded.format == "JPEG" and decoded.image.mode == "RGB"
    assert (decoded.width, decoded.height) == Image.open(io.BytesIO(data)).size
    assert tensor.shape == (3, 224, 224) and tensor.dtype == np.float32
    assert -1.0 <= tensor.min() < tensor.max() <= 1.0


def test_normalise_matches_the_textbook_formula(real):
    cfg = PreprocessConfig(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    pixels = np.asarray(resize_for_model(real, cfg))
    expected = ((pixels / 255.0 - cfg.mean) / cfg.std).transpose(2, 0, 1)
    np.testing.assert_allclose(normalize(pixels, cfg), expected, atol=1e-5)


@pytest.mark.parametrize("mode", ["squash", "center_crop", "letterbox"])
def test_every_resize_mode_gives_the_input_size(real, mode):
    cfg = PreprocessConfig(resize_mode=mode, crop_pct=0.875)
    assert to_model_input(real, cfg).shape == (3, 224, 224)


def test_center_crop_matches_timm_eval_transform(real):
    """Our numpy + Pillow path reproduces timm's eval transform for the same settings."""
    transforms = pytest.importorskip("timm.data").create_transform
    tf = transforms(input_size=(3, 224, 224), interpolation="bicubic", mean=(0.5,) * 3, std=(0.5,) * 3, crop_pct=0.875)
    ours = to_model_input(real, PreprocessConfig(resize_mode="center_crop", crop_pct=0.875))
    theirs = tf(real).numpy()
    assert np.abs(ours - theirs).mean() < 0.01


def test_fast_jpeg_path_stays_within_stated_tolerance(real):
    big = real.resize((1600, 1200), Image.Resampling.BICUBIC)
    data = jpeg_bytes(big)
    fast, decoded_fast = load_for_model(data, CFG, fast=True)
    full, decoded_full = load_for_model(data, CFG, fast=False)
    assert decoded_fast.image.size[0] < 1600  # the reduced DCT decode really happened
    assert (decoded_fast.width, decoded_fast.height) == (decoded_full.width, decoded_full.height) == (1600, 1200)
    assert np.abs(fast - full).mean() < 0.02


@pytest.mark.parametrize("mode", ["squash", "center_crop", "letterbox"])
def test_the_fast_resize_stays_close_to_pillows_bicubic(real, mode):
    """OpenCV's linear resize (measured, not adopted by 2.0.1) against Pillow's bicubic on a real
    photo, as it comes and enlarged to 1600x1200 (as a PNG would arrive: no DCT-reduced decode)."""
    for image in (real, real.resize((1600, 1200), Image.Resampling.BICUBIC)):
        ours = resize_for_model(image, PreprocessConfig(resize_mode=mode, crop_pct=0.875, interpolation="linear"))
        pillow = resize_for_model(image, PreprocessConfig(resize_mode=mode, crop_pct=0.875))
        assert ours.shape == pillow.shape == (224, 224, 3) and ours.dtype == np.uint8
        assert np.abs(ours.astype(np.float32) - pillow).mean() < 5  # of 255; a 7x shrink without the reduction: 18


def test_large_shrinks_average_instead_of_aliasing():
    """One-pixel black and white stripes shrunk 7x must turn grey: the whole-factor box
    reduction before OpenCV's resize (which samples only a few pixels) sees to that."""
    import cv2

    stripes = np.zeros((1200, 1600, 3), np.uint8)
    stripes[:, ::2] = 255
    ours = resize_for_model(Image.fromarray(stripes), PreprocessConfig(interpolation="linear"))
    assert abs(ours.mean() - 127.5) < 3 and ours.std() < 15  # an odd factor (7) leaves 3 or 4 white of 7
    sampled = cv2.resize(stripes, (224, 224), interpolation=cv2.INTER_LINEAR)
    assert sampled.std() > 60  # what the reduction prevents


def test_unknown_interpolation_is_refused():
    with pytest.raises(ValueError, match="interpolation"):
        PreprocessConfig(interpolation="sinc")


def test_exif_rotated_photo_is_turned_upright(real):
    exif = Image.Exif()
    exif[0x0112] = 6  # camera held sideways: rotate 90 degrees clockwise to view
    data = jpeg_bytes(real, exif=exif.tobytes())
    decoded = load_image(data)
    assert (decoded.width, decoded.height) == (real.height, real.width)
    upright = real.transpose(Image.Transpose.ROTATE_270)
    diff = np.abs(np.asarray(decoded.image, np.float32) - np.asarray(upright, np.float32)).mean()
    assert diff < 6  # JPEG noise only; the wrong rotation differs by far more
    wrong = np.abs(
        np.asarray(decoded.image, np.float32) - np.asarray(real.transpose(Image.Transpose.ROTATE_90), np.float32)
    ).mean()
    assert wrong > 3 * diff


def test_png_with_alpha_is_composited_on_white(real):
    rgba = real.convert("RGBA")
    alpha = Image.new("L", real.size, 0)
    alpha.paste(255, (0, 0, real.width // 2, real.height))
    rgba.putalpha(alpha)
    buf = io.BytesIO()
    rgba.save(buf, "PNG")
    out = np.asarray(load_image(buf.getvalue()).image)
    assert out.shape[2] == 3
    assert (out[:, -5:] == 255).all()  # transparent half is white
    assert not (out[:, :5] == 255).all()


def test_cmyk_jpeg_becomes_rgb(real):
    decoded = load_image(jpeg_bytes(real.convert("CMYK")))
    assert decoded.image.mode == "RGB"
    assert np.abs(np.asarray(decoded.image, np.float32) - np.asarray(real, np.float32)).mean() < 20


def test_16_bit_png_keeps_its_contrast():
    ramp = (np.linspace(0, 65535, 64 * 64).reshape(64, 64)).astype(np.uint16)
    buf = io.BytesIO()
    Image.fromarray(ramp).save(buf, "PNG")
    out = np.asarray(load_image(buf.getvalue()).image)
    assert out.dtype == np.uint8 and out.shape == (64, 64, 3)
    assert out.min() <= 2 and out.max() >= 253  # full range, not clipped to white


def test_animated_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (40, 30), c) for c in ((200, 0, 0), (0, 200, 0), (0, 0, 200))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    out = np.asarray(load_image(buf.getvalue()).image)
    assert out[..., 0].mean() > 150 and out[..., 1].mean() < 50


def test_palette_png_becomes_rgb(real):
    buf = io.BytesIO()
    real.convert("P", palette=Image.Palette.ADAPTIVE).save(buf, "PNG")
    assert load_image(buf.getvalue()).image.mode == "RGB"


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda real: b"", "empty"),
        (lambda real: b"this is a text file, not a photo\n" * 10, "not_an_image"),
        (lambda real: b"%PDF-1.7\n" + b"0" * 100, "unsupported_format"),
        (lambda real: jpeg_bytes(real)[:2000], "truncated"),
        (lambda real: png_header_only(20_000, 20_000), "too_many_pixels"),
        (lambda real: png_header_only(8_000, 6_000), "too_many_pixels"),
    ],
    ids=["empty", "text-as-jpg", "pdf", "truncated-jpeg", "20000x20000", "48-megapixel"],
)
def test_bad_input_is_refused_with_a_reason(real, make, reason):
    with pytest.raises(ImageError) as err:
        load_image(make(real))
    assert err.value.reason == reason
    assert len(err.value.message) > 10  # a sentence, not a code


def test_pixel_cap_is_checked_before_decoding():
    """The 20000x20000 header is refused although its pixel data is bogus: nothing was decoded."""
    with pytest.raises(ImageError) as err:
        load_image(png_header_only(20_000, 20_000), max_pixels=10**12)
    assert err.value.reason in ("too_many_pixels", "corrupt", "truncated")
    with pytest.raises(ImageError) as err:
        load_image(png_header_only(1_500, 1_500))
    assert err.value.reason != "too_many_pixels"  # under every cap: refused later, for its data


def test_byte_limit(real):
    with pytest.raises(ImageError) as err:
        load_image(jpeg_bytes(real), max_bytes=100)
    assert err.value.reason == "too_large"


def test_corrupt_jpeg_body_is_refused_not_crashed(real):
    data = bytearray(jpeg_bytes(real))
    data[600:1600] = b"\xff" * 1000
    try:
        decoded = load_image(bytes(data))
    except ImageError as e:
        assert e.reason in ("corrupt", "truncated")
    else:  # libjpeg may recover from damage; then the result must still be a usable image
        assert decoded.image.size == real.size


def test_pdq_of_the_reduced_decode_matches_the_full_size_hash(shared_data, manifest):
    """A scan hashes the model-size image of the DCT-reduced decode on PDQ's 64x64 grid; that
    must stay the 'same picture' as the full-size photo, and far from other photos."""
    from vision.hashing import PDQ_MATCH_DISTANCE, pdq_distance, pdq_hash

    reduced, full = [], []
    for row in manifest[::1200]:  # 13 photos across the classes
        with Image.open(shared_data / row["path"]) as im:
            big = im.convert("RGB").resize((1600, 1200), Image.Resampling.BICUBIC)
        data = jpeg_bytes(big)
        _, decoded = load_for_model(data, CFG, fast=True)
        assert decoded.image.size[0] < 1600
        reduced.append(pdq_hash(decoded.pdq_source(CFG))[0])  # the 224 px model input
        full.append(pdq_hash(load_image(data).image, max_side=1600)[0])
    same = [pdq_distance(a, b) for a, b in zip(reduced, full)]
    assert max(same) <= PDQ_MATCH_DISTANCE
    others = [pdq_distance(a, b) for i, a in enumerate(reduced) for b in reduced[i + 1 :]]
    assert min(others) > 2 * PDQ_MATCH_DISTANCE


def test_pdq_is_never_taken_from_a_model_input_too_small_to_hash(real):
    from vision.hashing import pdq_hash

    data = jpeg_bytes(real)
    _, big = load_for_model(data, CFG)
    assert big.pdq_source(CFG) is big.model_pixels and big.model_pixels.shape == (224, 224, 3)
    tiny = PreprocessConfig(input_size=32)
    _, small = load_for_model(data, tiny)
    assert small.pdq_source(tiny) is small.image and min(small.image.size) >= 128
    with pytest.raises(ValueError, match="uint8"):
        pdq_hash(big.model_pixels.astype(np.float32))


def gif_claiming(width: int, height: int) -> bytes:
    """A tiny GIF whose header claims ``width`` x ``height`` (one 1x1 frame inside)."""
    import struct

    header = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    return header + frame + b"\x3b"


def test_decode_memory_is_capped_from_the_header_before_decoding():
    from vision.preprocess import DEFAULT_MAX_DECODED_BYTES, decode_cost

    bomb = gif_claiming(6324, 6324)  # 40 MP, under the pixel cap; a palette image on its way to RGB
    assert len(bomb) < 100 and decode_cost("P", 6324, 6324) > DEFAULT_MAX_DECODED_BYTES
    with pytest.raises(ImageError, match="of memory") as refused:
        load_image(bomb)
    assert refused.value.reason == "too_many_pixels"
    small = gif_claiming(640, 480)
    assert load_image(small).image.size == (640, 480)  # an ordinary GIF still decodes
    assert decode_cost("RGB", 8000, 5000) <= DEFAULT_MAX_DECODED_BYTES  # a 40 MP RGB photo is within it


def test_absurd_proportions_and_pixels_out_of_proportion_to_the_file_are_refused_before_decoding(real):
    thin = png_header_only(1, 39_999_999)  # under the 40 MP cap; it once took 0.84 GB to decode
    reset_peak()
    before = status_mib("VmRSS")
    with pytest.raises(ImageError, match="50:1") as refused:
        load_image(thin)
    assert refused.value.reason == "bad_dimensions"
    assert status_mib("VmHWM") - before < 50  # refused from the header: its pixels were never decoded
    dense = png_header_only(6000, 6000)  # 36 MP and 108 MB of RGB claimed by a 100-byte file
    assert len(dense) < 200
    with pytest.raises(ImageError, match="pixels per byte") as refused:
        load_image(dense)
    assert refused.value.reason == "too_many_pixels"
    banner = real.resize((3000, 100))  # 30:1, a wide banner photo: still a photo
    assert load_image(jpeg_bytes(banner)).image.size == (3000, 100)
    with pytest.raises(ImageError) as refused:
        load_image(jpeg_bytes(real.resize((3000, 50))))  # 60:1
    assert refused.value.reason == "bad_dimensions"
