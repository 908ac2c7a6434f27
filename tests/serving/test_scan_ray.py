"""The Ray engine on a real local Ray cluster started here: same records as the local engine."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from serving.scan.api import scan
from serving.scan.outputs import read_rows

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray", reason="install the 'ray' extra: pip install -e '.[ray]'")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture()
def crawl(tmp_path, shared_data, manifest) -> Path:
    """~30 real photos plus a duplicate, a truncated, an empty and a non-image file, and a
    Parquet manifest carrying two photos as bytes with seller metadata."""
    folder = tmp_path / "crawl"
    (folder / "photos").mkdir(parents=True)
    for i, row in enumerate(manifest[::500][:28]):
        shutil.copy(shared_data / row["path"], folder / "photos" / f"{i:02d}.jpg")
    first = (folder / "photos" / "00.jpg").read_bytes()
    (folder / "photos" / "dup.jpg").write_bytes(first)
    (folder / "photos" / "truncated.jpg").write_bytes(first[: len(first) // 3])
    (folder / "photos" / "empty.jpg").write_bytes(b"")
    (folder / "photos" / "text.jpg").write_text("no image here")

    import pyarrow as pa
    import pyarrow.parquet as pq

    ads = [
        {"image": (folder / "photos" / f"0{i}.jpg").read_bytes(), "seller": f"s{i}", "price": 5.0 * i} for i in (1, 2)
    ]
    pq.write_table(pa.Table.from_pylist(ads), folder / "ads.parquet")
    return folder


def rows_of(path: Path) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "scanned_at"} for row in read_rows(path)]


def assert_same_records(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for key in x:
            if isinstance(x[key], float):
                assert x[key] == pytest.approx(y[key], abs=1e-6), (x["path"], key)
            else:
                assert x[key] == y[key], (x["path"], key)


def test_ray_engine_records_equal_the_local_engine(ray_cluster, crawl, tiny_bundle, tmp_path):
    inputs = [str(crawl / "photos"), str(crawl / "ads.parquet")]
    local = scan(inputs, [tmp_path / "local.jsonl"], model=str(tiny_bundle), engine="local", workers=2)
    on_ray = scan(inputs, [tmp_path / "ray.jsonl"], model=str(tiny_bundle), engine="ray", workers=2, batch_size=8)
    assert local.info.total == on_ray.info.total == 34
    assert on_ray.new == 34
    ray_rows = rows_of(tmp_path / "ray.jsonl")
    assert_same_records(ray_rows, rows_of(tmp_path / "local.jsonl"))
    reasons = {Path(r["path"]).name: r["error_reason"] for r in ray_rows}
    assert (reasons["truncated.jpg"], reasons["empty.jpg"], reasons["text.jpg"]) == (
        "truncated",
        "empty",
        "not_an_image",
    )
    assert [r["seller"] for r in ray_rows[-2:]] == ["s1", "s2"]


def test_ray_engine_continues_a_scan_the_local_engine_began(ray_cluster, crawl, tiny_bundle, tmp_path):
    photos = sorted((crawl / "photos").glob("*.jpg"))
    half = crawl / "half.txt"
    half.write_text("\n".join(str(p) for p in photos[: len(photos) // 2]))
    db = tmp_path / "shared.db"
    scan([str(half)], [tmp_path / "half.jsonl"], db=db, model=str(tiny_bundle), engine="local", workers=1)
    resumed = scan(
        [str(crawl / "photos")], [tmp_path / "resumed.jsonl"], db=db, model=str(tiny_bundle), engine="ray", workers=2
    )
    assert (resumed.done_before, resumed.new) == (len(photos) // 2, len(photos) - len(photos) // 2)

    scan([str(crawl / "photos")], [tmp_path / "full.jsonl"], model=str(tiny_bundle), engine="local")
    assert_same_records(rows_of(tmp_path / "resumed.jsonl"), rows_of(tmp_path / "full.jsonl"))
