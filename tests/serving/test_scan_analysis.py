"""serving.scan.analysis: the notebook tables of a scan, from known rows and from a real scan
of the demo crawl (training.demo_crawl) with the tiny model."""

import pytest

from serving.scan import analysis as scan_analysis
from training import demo_crawl

ROWS = [
    {
        "path": "a.jpg",
        "label": "ivory",
        "score": 0.9,
        "flagged": True,
        "seller": "s2",
        "platform": "p1",
        "cluster_id": 1,
        "cluster_size": 2,
        "score_ivory": 0.9,
        "score_ceramic_porcelain": 0.1,
        "error_reason": None,
    },
    {
        "path": "b.jpg",
        "label": "ivory",
        "score": 0.8,
        "flagged": True,
        "seller": "s1",
        "platform": "p1",
        "cluster_id": 1,
        "cluster_size": 2,
        "score_ivory": 0.8,
        "score_ceramic_porcelain": 0.2,
        "error_reason": None,
    },
    {
        "path": "c.jpg",
        "label": "ceramic_porcelain",
        "score": 0.7,
        "flagged": False,
        "seller": "s1",
        "platform": "p2",
        "cluster_id": 2,
        "cluster_size": 1,
        "score_ivory": 0.3,
        "score_ceramic_porcelain": 0.7,
        "error_reason": None,
    },
    {
        "path": "d.jpg",
        "label": "uncertain",
        "score": 0.35,
        "flagged": False,
        "seller": "s3",
        "platform": "p2",
        "cluster_id": 3,
        "cluster_size": 1,
        "score_ivory": 0.35,
        "score_ceramic_porcelain": 0.3,
        "error_reason": None,
    },
    {
        "path": "e.jpg",
        "label": None,
        "score": None,
        "flagged": False,
        "seller": "s3",
        "platform": "p2",
        "cluster_id": None,
        "cluster_size": None,
        "score_ivory": None,
        "score_ceramic_porcelain": None,
        "error_reason": "truncated",
    },
]


def test_scan_tables_from_rows():
    report = scan_analysis.scan_report(ROWS)
    assert scan_analysis.flagged_by_category(report).rows == [["ivory", "Elephant ivory (carving or object)", 2]]
    assert scan_analysis.flagged_by(report, "seller").rows == [["s1", 1, "ivory 1"], ["s2", 1, "ivory 1"]]
    assert scan_analysis.flagged_by(report, "platform").rows == [["p1", 2, "ivory 2"]]
    assert scan_analysis.cluster_table(report).rows == [[1, 2, 2, "ivory 2", 2, 1, "a.jpg"]]
    assert [r["path"] for r in scan_analysis.cluster_members(ROWS, 1)] == ["a.jpg", "b.jpg"]
    dist = scan_analysis.score_distribution(ROWS)
    assert dist["flagged"].tolist() == [0.9, 0.8] and dist["not flagged"].tolist() == [0.7]
    assert dist["uncertain"].tolist() == [0.35]
    assert scan_analysis.wildlife_scores(ROWS).tolist() == [0.9, 0.8, 0.3, 0.35]
    no_seller = scan_analysis.scan_report([{k: v for k, v in r.items() if k != "seller"} for r in ROWS])
    assert scan_analysis.flagged_by(no_seller, "seller").rows == []
    with pytest.raises(ValueError, match="'seller' or 'platform'"):
        scan_analysis.flagged_by(report, "price")


def test_demo_scan_runs_the_real_scanner(tiny_bundle, tmp_path, shared_data):
    per_class = {"ivory": 3, "ceramic_porcelain": 2, "goods_other": 2}
    manifest = demo_crawl.make_demo_manifest(tmp_path / "demo", per_class=per_class, reposts=1)
    out = scan_analysis.scan_manifest(
        manifest, tiny_bundle, outputs=("results.jsonl", "results.csv", "results.parquet")
    )
    rows = scan_analysis.load_results(out)
    assert len(rows) == 7 + 2 + 1  # photos, the re-posts of one, the truncated upload
    assert {"url", "title", "price", "seller", "platform", "captured_at"} <= set(rows[0])
    failures = [r for r in rows if r["error_reason"]]
    assert len(failures) == 1 and failures[0]["path"].endswith("broken_upload.jpg")
    original = rows[0]["cluster_id"]
    assert [r["cluster_id"] for r in rows[7:9]] == [original, original]  # same photo, and a re-encoded copy
    report = scan_analysis.scan_report(rows)
    assert scan_analysis.cluster_table(report).rows[0][:2] == [original, 3]
    assert scan_analysis.image_path(rows[0]) is not None and scan_analysis.image_path(failures[0]) is not None
    assert scan_analysis.image_path({"path": str(tmp_path / "gone.jpg")}) is None
    assert max(scan_analysis.row_image(rows[0], 64).size) == 64 and scan_analysis.row_image(failures[0]) is None
    for other in ("results.csv", "results.parquet"):  # every output format reads back the same
        again = scan_analysis.load_results(out.with_name(other))
        for key in ("label", "flagged", "score", "cluster_id", "cluster_size", "score_ivory", "seller"):
            assert [r[key] or None for r in again] == [r[key] or None for r in rows], (other, key)
