"""A bounded run of the decoding fuzzer (``make fuzz`` runs 100,000): mutated real photos in
every accepted format always end as a usable image or a failure record with a named reason."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

from vision.errors import RECORD_REASONS

spec = importlib.util.spec_from_file_location(
    "fuzz_images", Path(__file__).parents[2] / "benchmarks" / "fuzz_images.py"
)
fuzz_images = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fuzz_images)


def test_mutated_photos_end_as_images_or_named_failures():
    rng = random.Random(7)
    base = fuzz_images.seeds(count=1)
    names = {name for name, _ in base}
    assert names >= {"jpeg", "jpeg-progressive", "png", "gif", "webp", "bmp", "tiff", "png-16bit", "jpeg-cmyk"}
    assert names >= {"gif-animated", "gif-bomb", "png-bomb"}
    for name, data in base:  # the unmutated seeds: every format decodes, the bombs are refused
        outcome = fuzz_images.run_case((name, data))[0]
        assert outcome == ("too_many_pixels" if name.endswith("bomb") else "usable"), name
    outcomes = []
    for i in range(2000):
        name, data = base[i % len(base)]
        kind, payload = fuzz_images.mutate(data, rng)
        assert payload != data or kind == "huge_size"
        outcomes.append(fuzz_images.run_case((f"{name}-{kind}", payload))[0])  # never raises
    assert set(outcomes) <= {"usable", *map(str, RECORD_REASONS)}
    assert "usable" in outcomes and len(set(outcomes)) >= 3  # the mutations reach several checks
