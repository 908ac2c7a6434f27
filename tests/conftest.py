import csv
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/ helpers (tiny_model)

from vision.settings import photos_dir  # noqa: E402

SHARED = photos_dir()  # $WILDSCAN_PHOTOS, else ../shared/data (vision.settings)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED / "manifest.csv").exists():
        pytest.fail(f"shared photos not found at {SHARED} (set WILDSCAN_PHOTOS)")
    return SHARED


@pytest.fixture(scope="session")
def manifest(shared_data) -> list[dict]:
    with open(shared_data / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="session")
def photo(shared_data, manifest):
    """Path of the first real photo with a given fine label."""

    def find(label: str, index: int = 0) -> Path:
        rows = [r for r in manifest if r["label"] == label]
        return shared_data / rows[index]["path"]

    return find


@pytest.fixture()
def tiny_bundle(tmp_path) -> Path:
    from tiny_model import make_tiny_bundle

    return make_tiny_bundle(tmp_path / "models")


@pytest.fixture(scope="session")
def shipped_model_dir() -> Path:
    return REPO / "models"
