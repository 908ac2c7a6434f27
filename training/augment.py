"""Ad-style augmentation: make tidy catalogue photos look like marketplace listings.

Real sale posts differ from the shared photos: price tags and "SALE" banners,
watermarks and seller logos, collages, coloured cloth backgrounds and borders, phone
colour casts, heavy JPEG recompression and small thumbnails. :func:`ad_style` produces
those from any RGB photo, using only Pillow and numpy, so the same code builds the
training views and the deterministic "ad-style" evaluation view (seeded per photo).
"""

from __future__ import annotations

import io
import random

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont

_WORDS = [
    "SALE",
    "SOLD",
    "EUR 450",
    "GBP 120",
    "$ 89",
    "45,00 EUR",
    "VB 200",
    "NEW",
    "RARE",
    "ANTIQUE",
    "Antiek",
    "À VENDRE",
    "ZU VERKAUFEN",
    "TE KOOP",
    "Free shipping",
    "Livraison",
    "Versand",
    "OBO",
    "-50%",
    "Collection",
    "Vintage",
    "Top quality",
    "www.shop-antik.de",
    "@seller_123",
    "WhatsApp only",
    "Original",
    "Handmade",
    "Unique",
    "Lot 17",
    "Ref. 2291",
    "Nouveau",
    "Prix ferme",
    "Schnäppchen",
]
_CLOTH = [
    (120, 20, 40),
    (20, 40, 110),
    (15, 90, 50),
    (30, 30, 30),
    (200, 190, 170),
    (90, 60, 40),
    (140, 140, 150),
    (230, 230, 225),
    (170, 120, 60),
    (60, 20, 80),
]


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow built without FreeType
        return ImageFont.load_default()


def text_overlay(img: Image.Image, rng: random.Random) -> Image.Image:
    """A price tag or banner: a filled box with sale text somewhere on the photo."""
    img = img.copy()
    w, h = img.size
    draw = ImageDraw.Draw(img)
    for _ in range(rng.randint(1, 3)):
        font = _font(rng.randint(max(10, h // 16), max(12, h // 6)))
        text = rng.choice(_WORDS)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tw, th = right - left, bottom - top
        x = rng.randint(0, max(0, w - tw - 8))
        y = rng.choice([rng.randint(0, max(0, h // 5)), rng.randint(max(0, h - h // 4 - th), max(0, h - th - 8))])
        fill = rng.choice([(220, 20, 30), (255, 210, 0), (255, 255, 255), (0, 0, 0), (0, 120, 200)])
        if rng.random() < 0.7:
            draw.rectangle((x - 4, y - 4, x + tw + 8, y + th + 8), fill=fill)
            ink = (255, 255, 255) if sum(fill) < 400 else (0, 0, 0)
        else:
            ink = fill
        draw.text((x - left, y - top), text, font=font, fill=ink)
    return img


def watermark(img: Image.Image, rng: random.Random) -> Image.Image:
    """A semi-transparent seller name repeated across the photo."""
    base = img.convert("RGBA")
    w, h = base.size
    layer = Image.new("RGBA", (w * 2, h * 2), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    font = _font(rng.randint(max(10, h // 14), max(12, h // 7)))
    text = rng.choice(
        ["© shop", "antik-haus", "ivory-art.fr", "SAMPLE", "kleinanzeigen", "marktplaats", rng.choice(_WORDS)]
    )
    alpha = rng.randint(50, 120)
    color = rng.choice([(255, 255, 255), (0, 0, 0), (200, 200, 200)])
    step_x, step_y = max(40, w // 2), max(30, h // 4)
    for y in range(0, h * 2, step_y):
        for x in range((y // step_y % 2) * step_x // 2, w * 2, step_x):
            draw.text((x, y), text, font=font, fill=color + (alpha,))
    layer = layer.rotate(rng.uniform(-35, 35), resample=Image.Resampling.BILINEAR)
    layer = layer.crop((w // 2, h // 2, w // 2 + w, h // 2 + h))
    return Image.alpha_composite(base, layer).convert("RGB")


def gaussian_noise(size: tuple[int, int], sigma: float, rng: random.Random) -> Image.Image:
    """Grey Gaussian noise around 128, drawn from ``rng`` (an ``L`` image of ``size``).

    Not ``Image.effect_noise``: that draws from C's process-wide ``rand()``, which other
    libraries reseed (libzmq in a Jupyter kernel), so the "deterministic" ad-style
    evaluation view would change from run to run.
    """
    w, h = size
    values = np.random.default_rng(rng.getrandbits(64)).normal(128.0, sigma, (h, w))
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), "L")


def border(img: Image.Image, rng: random.Random) -> Image.Image:
    """Place the photo, smaller, on a coloured cloth-like or plain background."""
    w, h = img.size
    scale = rng.uniform(0.55, 0.9)
    inner = img.resize((max(8, int(w * scale)), max(8, int(h * scale))), Image.Resampling.BILINEAR)
    color = rng.choice(_CLOTH)
    canvas = Image.new("RGB", (w, h), color)
    if rng.random() < 0.6:  # cloth texture: noise, blurred
        noise = gaussian_noise((w, h), rng.uniform(20, 60), rng).convert("RGB")
        canvas = Image.blend(canvas, noise, 0.15).filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2)))
    x = rng.randint(0, w - inner.width)
    y = rng.randint(0, h - inner.height)
    canvas.paste(inner, (x, y))
    return canvas


def collage(img: Image.Image, rng: random.Random, others: list[Image.Image] | None = None) -> Image.Image:
    """A 2-up or 2x2 grid: the photo (large) beside other photos of the same listing."""
    w, h = img.size
    tiles = [img] + [rng.choice(others) if others else _jitter(img, rng) for _ in range(3)]
    canvas = Image.new("RGB", (w, h), (255, 255, 255))
    gap = rng.randint(0, 6)
    if rng.random() < 0.5:  # main photo takes 2/3 of the width, one strip beside it
        mw = int(w * 2 / 3)
        canvas.paste(tiles[0].resize((mw - gap, h)), (0, 0))
        canvas.paste(tiles[1].resize((w - mw, h // 2 - gap)), (mw, 0))
        canvas.paste(tiles[2].resize((w - mw, h - h // 2)), (mw, h // 2))
    else:
        hw, hh = w // 2, h // 2
        for k, tile in enumerate(tiles[:4]):
            canvas.paste(tile.resize((hw - gap, hh - gap)), ((k % 2) * hw, (k // 2) * hh))
    return canvas


def _jitter(img: Image.Image, rng: random.Random) -> Image.Image:
    w, h = img.size
    cw, ch = int(w * rng.uniform(0.5, 0.9)), int(h * rng.uniform(0.5, 0.9))
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    out = img.crop((x, y, x + cw, y + ch))
    return out.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else out


def colour_cast(img: Image.Image, rng: random.Random) -> Image.Image:
    """Phone lighting: warm/cool cast, brightness, contrast, saturation."""
    r, g, b = img.split()
    warm = rng.uniform(-25, 25)
    r = r.point(lambda v: max(0, min(255, v + warm)))
    b = b.point(lambda v: max(0, min(255, v - warm)))
    img = Image.merge("RGB", (r, g, b))
    img = ImageEnhance.Brightness(img).enhance(rng.uniform(0.7, 1.25))
    img = ImageEnhance.Contrast(img).enhance(rng.uniform(0.7, 1.2))
    return ImageEnhance.Color(img).enhance(rng.uniform(0.6, 1.3))


def recompress(img: Image.Image, rng: random.Random) -> Image.Image:
    """Heavy JPEG recompression, as re-uploads do."""
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=rng.randint(15, 60))
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def downscale(img: Image.Image, rng: random.Random) -> Image.Image:
    """A small thumbnail blown up again."""
    w, h = img.size
    s = rng.uniform(0.25, 0.55)
    small = img.resize((max(16, int(w * s)), max(16, int(h * s))), Image.Resampling.BILINEAR)
    return small.resize((w, h), Image.Resampling.BILINEAR)


def random_crop_flip(img: Image.Image, rng: random.Random) -> Image.Image:
    """Mild geometric jitter: crop 70-100 % of each side, maybe mirror."""
    w, h = img.size
    cw, ch = int(w * rng.uniform(0.7, 1.0)), int(h * rng.uniform(0.7, 1.0))
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    img = img.crop((x, y, x + cw, y + ch))
    return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else img


def ad_style(img: Image.Image, rng: random.Random, others: list[Image.Image] | None = None) -> Image.Image:
    """One random ad-style rendering of ``img`` (each effect with its own probability)."""
    img = img.convert("RGB")
    if rng.random() < 0.3:
        img = collage(img, rng, others)
    if rng.random() < 0.4:
        img = border(img, rng)
    if rng.random() < 0.6:
        img = colour_cast(img, rng)
    if rng.random() < 0.5:
        img = text_overlay(img, rng)
    if rng.random() < 0.3:
        img = watermark(img, rng)
    if rng.random() < 0.3:
        img = downscale(img, rng)
    if rng.random() < 0.6:
        img = recompress(img, rng)
    return img


def train_view(img: Image.Image, rng: random.Random, ad_probability: float = 0.7) -> Image.Image:
    """A training view: geometric jitter, then ad-style effects with ``ad_probability``."""
    img = random_crop_flip(img.convert("RGB"), rng)
    return ad_style(img, rng) if rng.random() < ad_probability else colour_cast(img, rng)


def eval_ad_view(img: Image.Image, key: str) -> Image.Image:
    """The deterministic ad-style evaluation view of one photo (seeded by ``key``)."""
    rng = random.Random(f"ad-view|{key}")
    img = img.convert("RGB")
    # every eval view gets at least three effects so the view is never the clean photo
    img = rng.choice([border, collage, colour_cast])(img, rng)
    img = text_overlay(img, rng)
    return recompress(ad_style(img, rng) if rng.random() < 0.5 else img, rng)
