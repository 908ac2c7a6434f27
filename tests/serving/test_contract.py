"""The OpenAPI tells the truth: Schemathesis generates requests from the app's own schema
(valid and invalid) and checks every answer against it — no server error, only documented
statuses, content types and bodies. A bounded run (a few hundred requests) on the real app
with the tiny bundle and a real admin key."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from tiny_model import make_tiny_bundle

from serving.app import create_app
from serving.settings import Settings
from serving.store import Store

schemathesis = pytest.importorskip("schemathesis")
from schemathesis import checks  # noqa: E402

FOLDER = Path(tempfile.mkdtemp(prefix="wildscan-contract-"))
SETTINGS = Settings(model=str(make_tiny_bundle(FOLDER / "models")), data_dir=FOLDER / "var")
with Store(SETTINGS.db_path) as _store:
    KEY = _store.add_key("contract", role="admin")
APP = create_app(SETTINGS)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)

# positive_data_acceptance would call a schema-valid upload that is not an image a failure;
# whether bytes are an image is what the endpoint decides (a documented 415/422).
EXCLUDED = [checks.positive_data_acceptance]


@pytest.fixture(scope="module", autouse=True)
def running():
    with TestClient(APP):  # the lifespan: the model is loaded as in a real start
        yield


@schema.parametrize()
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_every_answer_matches_the_openapi(case):
    case.call_and_validate(headers={"Authorization": f"Bearer {KEY}"}, excluded_checks=EXCLUDED)
