"""Listing scenes: put catalogue objects into real listing photos, for training and evaluation.

Every wildlife photo in the shared data is a studio, field or survey shot and every
real ad photo is a negative, so a model can learn "looks like a listing -> not wildlife".
:func:`listing_view` breaks that shortcut: it cuts the object out of a studio photo (a
tight matte from the plain backdrop, no halo), pastes it into a real listing photo from
the training split (marketplace ads, phone photos of clothes and leather goods, antique
shops) at 10-40 % of the frame, with a contact shadow, a colour cast towards the scene,
phone blur and JPEG; sometimes twice. Photos whose background is not plain (animals in
the field, reef patches) become collages with listing photos instead. Look-alike
objects get the same treatment as wildlife, so that "pasted" or "listing" does not
mean one answer; the treatment alone is not balanced, though: far more ivory photos than
figurines or antiques sit on a plain backdrop (69 % against 12-17 % of the training photos can be cut out), so
:func:`balanced_listing` can lend a class's cut-outs to its other photos' scene rows
(``"balanced_pasting"`` in the heads recipe). Deterministic for a given ``(key, seed)``.
"""

from __future__ import annotations

import io
import json
import multiprocessing as mp
import random
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from vision.preprocess import load_image

from . import data

# Fine labels whose real photos are listing scenes: the backgrounds objects are put into.
BACKGROUND_LABELS = ("marketplace_photo", "clothing_secondhand", "antique_object", "leather_goods")
BORDER = 0.04  # the outer band read as backdrop, as a fraction of the short side


def matte(img: Image.Image) -> tuple[Image.Image, tuple[int, int, int, int]] | None:
    """``(alpha, box)``: an ``L`` matte of the object on a plain studio backdrop, cropped to
    the object's box (left, top, right, bottom), or ``None`` when the backdrop is not plain
    or the object fills (or misses) the frame."""
    a = np.asarray(img.convert("RGB"), dtype=np.float32)
    h, w, _ = a.shape
    b = max(2, int(min(h, w) * BORDER))
    border = np.concatenate(
        [a[:b].reshape(-1, 3), a[-b:].reshape(-1, 3), a[:, :b].reshape(-1, 3), a[:, -b:].reshape(-1, 3)]
    )
    backdrop = np.median(border, axis=0)
    spread = float(np.percentile(np.linalg.norm(border - backdrop, axis=1), 90))
    if spread > 40:
        return None
    distance = np.linalg.norm(a - backdrop, axis=2)
    mask = Image.fromarray(((distance > max(28.0, 2.0 * spread)) * 255).astype(np.uint8), "L")
    mask = mask.filter(ImageFilter.MaxFilter(5)).filter(ImageFilter.MinFilter(5))  # close small gaps
    mask = mask.filter(ImageFilter.MinFilter(3)).filter(ImageFilter.MaxFilter(3))  # drop specks
    m = np.asarray(mask) > 127
    if not 0.05 < m.mean() < 0.85:
        return None
    ys, xs = np.nonzero(m)
    box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    return mask.filter(ImageFilter.GaussianBlur(1.0)).crop(box), box


def cutout(img: Image.Image) -> Image.Image | None:
    """The object as an RGBA image with a tight matte, or ``None`` (see :func:`matte`)."""
    found = matte(img)
    if found is None:
        return None
    alpha, box = found
    rgba = img.convert("RGB").crop(box).convert("RGBA")
    rgba.putalpha(alpha)
    return rgba


@lru_cache(maxsize=1)
def background_paths() -> tuple[str, ...]:
    """Training-split listing photos (paths relative to the shared data), in a fixed order."""
    return tuple(sorted(ex.path for ex in data.load_split("train") if ex.fine_label in BACKGROUND_LABELS))


def _background(rng: random.Random) -> Image.Image:
    paths = background_paths()
    return load_image((data.shared_data_dir() / rng.choice(paths)).read_bytes()).image


def paste(scene: Image.Image, obj: Image.Image, rng: random.Random) -> Image.Image:
    """Paste an RGBA ``obj`` into ``scene`` at 10-40 % of its area, with shadow and colour cast."""
    sw, sh = scene.size
    area = rng.uniform(0.10, 0.40) * sw * sh
    scale = min((area / (obj.width * obj.height)) ** 0.5, 0.95 * sw / obj.width, 0.95 * sh / obj.height)
    size = (max(8, int(obj.width * scale)), max(8, int(obj.height * scale)))
    obj = obj.resize(size, Image.Resampling.BICUBIC)
    if rng.random() < 0.5:
        obj = obj.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    x = rng.randint(0, sw - size[0])
    y = rng.randint(min(sh - size[1], int(0.25 * (sh - size[1]))), sh - size[1])  # on tables, shelves, laps
    rgb = np.asarray(obj.convert("RGB"), dtype=np.float32)
    cast = np.asarray(scene, dtype=np.float32).reshape(-1, 3).mean(0) / max(1.0, rgb.reshape(-1, 3).mean())
    strength = rng.uniform(0.0, 0.35)
    rgb = np.clip(rgb * ((1 - strength) + strength * cast / max(cast.mean(), 1e-3)), 0, 255)
    colored = Image.fromarray(rgb.astype(np.uint8)).convert("RGBA")
    colored.putalpha(obj.getchannel("A"))
    out = scene.copy()
    shadow_alpha = obj.getchannel("A").filter(ImageFilter.GaussianBlur(max(1.0, 0.05 * min(size))))
    shadow_alpha = shadow_alpha.point(lambda v, k=rng.uniform(0.3, 0.6): int(v * k))
    dx, dy = int(rng.uniform(-0.04, 0.04) * size[0]), int(rng.uniform(0.0, 0.06) * size[1])
    out.paste(Image.new("RGB", size, (0, 0, 0)), (x + dx, y + dy), shadow_alpha)
    out.paste(colored, (x, y), colored)
    return out


def collage(img: Image.Image, rng: random.Random) -> Image.Image:
    """``img`` as one tile of a 2- to 4-tile collage whose other tiles are listing photos."""
    tiles = [img] + [_background(rng) for _ in range(rng.choice((1, 2, 3)))]
    rng.shuffle(tiles)
    side = 224
    if len(tiles) == 2:
        layout = [(0, 0, side, side), (side, 0, side, side)]
        canvas = Image.new("RGB", (2 * side, side), (255, 255, 255))
    else:
        layout = [(0, 0, side, side), (side, 0, side, side), (0, side, side, side), (side, side, side, side)]
        canvas = Image.new("RGB", (2 * side, 2 * side), (255, 255, 255))
    gap = rng.choice((0, 2, 4))
    for tile, (x, y, w, h) in zip(tiles, layout):
        canvas.paste(tile.resize((w - gap, h - gap), Image.Resampling.BILINEAR), (x, y))
    return canvas


def phone_finish(img: Image.Image, rng: random.Random) -> Image.Image:
    """Phone blur and JPEG recompression."""
    if rng.random() < 0.6:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=rng.randint(40, 90))
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def listing_view(img: Image.Image, key: str, seed: int, always_paste: bool = False) -> tuple[Image.Image, str]:
    """A listing-scene view of ``img``; returns ``(view, how)`` with ``how`` one of
    ``pasted`` (cut out and pasted into a listing photo) or ``collage``. ``always_paste``:
    paste when the object can be cut out (the donor views of :func:`balanced_listing`)."""
    rng = random.Random(f"listing|{key}|{seed}")
    obj = cutout(img) if rng.random() < 0.8 or always_paste else None
    if obj is None:
        return phone_finish(collage(img, rng), rng), "collage"
    scene = _background(rng)
    for _ in range(2 if rng.random() < 0.2 else 1):
        scene = paste(scene, obj, rng)
    return phone_finish(scene, rng), "pasted"


def _can_cut(path: str) -> bool:
    return matte(load_image((data.shared_data_dir() / path).read_bytes()).image) is not None


def cuttable(examples: list[data.Example], cache: Path, workers: int = 2) -> set[str]:
    """The SHA-256 of the photos :func:`matte` can cut out, remembered in ``cache`` (JSON)."""
    known: dict[str, bool] = json.loads(cache.read_text()) if cache.exists() else {}
    todo = sorted({ex.sha256: ex.path for ex in examples if ex.sha256 not in known}.items())
    if todo:
        paths = [p for _, p in todo]
        if workers > 1:
            with mp.get_context("spawn").Pool(workers) as pool:
                found = pool.map(_can_cut, paths, chunksize=64)
        else:
            found = [_can_cut(p) for p in paths]
        known.update(zip([k for k, _ in todo], found))
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        tmp.write_text(json.dumps(known))
        tmp.replace(cache)
    return {k for k, ok in known.items() if ok}


def balanced_listing(
    examples: list[data.Example], seeds: list[int], can_cut: set[str], rate: float = 0.8, reuse: int = 4
) -> list[tuple[data.Example, str, int]]:
    """The listing-scene rows of ``examples`` for each seed, as ``(photo, kind, seed)``, with
    as many pasted scenes in every class as its cut-out photos allow.

    Only photos on a plain backdrop can be cut out: 69 % of the ivory photos but 12-17 % of
    the figurines and antiques, so plain listing scenes would make "an object pasted on a
    table" mean ivory. Here a photo that cannot be cut out gives its row, with probability
    ``rate``, to a pasted scene of a cut-out photo of the same class (``kind`` ``pasted``,
    a seed of its own); no cut-out photo is lent more than ``reuse`` times per seed (besides
    its own row). The row's label is unchanged: the donor is of the same class.
    """
    by_class: dict[str, list[int]] = {}
    for i, ex in enumerate(examples):
        by_class.setdefault(ex.cls, []).append(i)
    out = []
    for seed in seeds:
        rng = random.Random(f"balanced|{seed}")
        donor_of: dict[int, tuple[data.Example, int]] = {}  # by position: one photo may sit in two classes
        for cls in sorted(by_class):
            donors = [i for i in by_class[cls] if examples[i].sha256 in can_cut]
            takers = [i for i in by_class[cls] if examples[i].sha256 not in can_cut]
            rng.shuffle(donors)
            chosen = rng.sample(takers, min(round(rate * len(takers)), reuse * len(donors)))
            for k, i in enumerate(chosen):
                donor_of[i] = examples[donors[k % len(donors)]], 1000 * seed + k // len(donors)
        for i, ex in enumerate(examples):
            donor, view_seed = donor_of.get(i, (ex, seed))
            out.append((donor, "pasted" if i in donor_of else "listing", view_seed))
    return out


def contact_sheet(
    out,
    per_class: int = 6,
    classes=("ivory", "figurine", "ceramic_porcelain", "reptile_skin_product", "snake", "taxidermy"),
    tile: int = 160,
):
    """A PNG grid of listing scenes made from validation photos (rows: classes), for looking
    at the synthesis. It holds the shared photos, so it is written outside the repository."""
    from PIL import ImageDraw

    examples = data.load_split("val")
    rows = [[ex for ex in examples if ex.cls == cls][::7][:per_class] for cls in classes]
    sheet = Image.new("RGB", (per_class * tile, len(rows) * tile), "white")
    draw = ImageDraw.Draw(sheet)
    for r, row in enumerate(rows):
        for c, ex in enumerate(row):
            view, how = listing_view(load_image(ex.file().read_bytes()).image, ex.sha256, 0)
            view.thumbnail((tile - 4, tile - 4))
            sheet.paste(view, (c * tile + 2, r * tile + 2))
            draw.text((c * tile + 4, r * tile + 4), f"{ex.cls} · {how}", fill="yellow")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return Path(out)


if __name__ == "__main__":  # python -m training.listing OUT.png: a contact sheet of listing scenes
    import sys

    print(contact_sheet(sys.argv[1] if len(sys.argv) > 1 else "runs/listing_scenes.png"))
