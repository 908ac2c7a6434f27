"""A small fake crawl of shared photos (notebook 03, scan tests): a CSV manifest with made-up
ad metadata, reposts and one broken file, for :func:`serving.scan.analysis.scan_manifest`."""

from __future__ import annotations

import random
from pathlib import Path

from vision.preprocess import load_image
from vision.tables import is_wildlife

from . import data

DEMO_CLASSES = {
    "ivory": 6,
    "ceramic_porcelain": 5,
    "figurine": 3,
    "reef_coral": 3,
    "reptile_skin_product": 3,
    "leather_goods": 3,
    "big_cat": 2,
    "toy": 3,
    "animal_print": 2,
    "parrot": 2,
    "snake": 2,
    "goods_other": 4,
    "clothing": 2,
}
DEMO_SELLERS = [
    "antik_hanse",
    "curio_lux",
    "brocante_du_nord",
    "vintage_vondel",
    "oma_erbstuecke",
    "lot_trader",
    "deco_maison",
    "zeldzaam_nl",
]
DEMO_PLATFORMS = ["marketplace-a.example", "classifieds-b.example", "auction-c.example"]
DEMO_TITLES = [
    "Old carved piece, estate sale",
    "Vintage decor item",
    "Rare collector's object",
    "Handmade, as new",
    "Antique, good condition",
    "Souvenir from travels",
    "Must go this week",
    "Unique gift",
]


def make_demo_manifest(
    folder: Path, *, per_class: dict[str, int] | None = None, split: str = "test", reposts: int = 3, seed: int = 7
) -> Path:
    """A small fake crawl of shared photos as a CSV manifest in ``folder``; returns its path.

    Photos of ``split`` (``per_class`` of each class, chosen by SHA-256 order) get made-up
    ad metadata (url, title, price, currency, seller, platform, captured_at). The first
    ``reposts`` wildlife photos are posted again by two other sellers, one of them as a
    smaller re-encoded copy (near-duplicate clusters), and one truncated file is added
    (a failure row). Deterministic for a given ``seed``.
    """
    import csv

    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    per_class = DEMO_CLASSES if per_class is None else per_class
    by_class: dict[str, list[data.Example]] = {}
    for ex in sorted(data.load_split(split), key=lambda e: e.sha256):
        by_class.setdefault(ex.cls, []).append(ex)
    chosen = [ex for cls, n in per_class.items() for ex in by_class.get(cls, [])[:n]]
    paths = [str(ex.file()) for ex in chosen]
    for ex in [ex for ex in chosen if is_wildlife(ex.cls)][:reposts]:
        paths.append(str(ex.file()))
        copy = folder / "reposted" / f"{ex.sha256[:12]}.jpg"
        copy.parent.mkdir(exist_ok=True)
        img = load_image(ex.file().read_bytes()).image
        img.resize((max(32, img.width * 3 // 4), max(32, img.height * 3 // 4)), Image.BILINEAR).save(copy, quality=70)
        paths.append(str(copy))
    broken = folder / "broken_upload.jpg"
    whole = chosen[0].file().read_bytes() if chosen else b""
    broken.write_bytes(whole[: len(whole) // 2])
    paths.append(str(broken))

    manifest = folder / "crawl.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["path", "url", "title", "price", "currency", "seller", "platform", "captured_at"])
        for n, path in enumerate(paths):
            platform = rng.choice(DEMO_PLATFORMS)
            writer.writerow(
                [
                    path,
                    f"https://{platform}/ad/{100200 + n}",
                    rng.choice(DEMO_TITLES),
                    f"{rng.uniform(5, 900):.2f}",
                    "EUR",
                    rng.choice(DEMO_SELLERS),
                    platform,
                    f"2025-03-{1 + n % 28:02d}T{rng.randint(0, 23):02d}:00:00Z",
                ]
            )
    return manifest
