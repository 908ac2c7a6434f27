"""A short run of the decoding fuzzer (``make fuzz`` runs thousands): mutated real photos in
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
    assert {name for name, _ in base} >= {"jpeg", "jpeg-progressive", "png", "gif", "webp", "bmp", "tiff"}
    outcomes = []
    for i in range(140):
        name, data = base[i % len(base)]
        kind, payload = fuzz_images.mutate(data, rng)
        assert payload != data or kind == "huge_size"
        outcomes.append(fuzz_images.run_case((f"{name}-{kind}", payload))[0])  # never raises
    assert set(outcomes) <= {"usable", *map(str, RECORD_REASONS)}
    assert "usable" in outcomes and len(set(outcomes)) >= 3  # the mutations reach several checks
