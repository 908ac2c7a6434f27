"""The agreement check for a preprocessing change, on the shipped bundle and real photos."""

import json

import pytest


@pytest.mark.slow
def test_agreement_reproduces_the_bundles_own_figures_and_sees_the_change(shipped_model_dir):
    from training.agreement import check

    result = check(None, "linear", limit_per_class=1, progress=False)
    assert result["change"] == {"interpolation": {"reference": "bicubic", "candidate": "linear"}}  # the bundle's own
    shipped = json.loads((shipped_model_dir / "efficientnet_lite0.wildtrade_v1.eval" / "devads.json").read_text())
    ads = result["views"]["dev_ads"]
    assert ads["photos"] == sum(shipped["photos"].values())
    assert ads["ivory_f1"]["reference"] == shipped["shipped_rule"]["f1"]  # the reference is the bundle as evaluated
    assert ads["ivory_auc"]["reference"] == shipped["ivory_auc"]
    for view in ("clean", "ad", "listing", "dev_ads"):
        found = result["views"][view]
        assert 0.8 <= found["top1_agreement"] <= 1.0 and 0.9 <= found["flag_agreement"] <= 1.0
        assert 0.0 < found["mean_max_probability_change"] <= found["max_probability_change"] <= 1.0  # it did change
