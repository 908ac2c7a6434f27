"""The README cannot drift from the code: its example record has the keys and nesting of a
real record, every gallery command and route is documented, and the decision rule it
describes names the bundle's real settings."""

import argparse
import json
import re
from pathlib import Path

from serving.app import create_app
from serving.settings import Settings
from vision.cli import build_parser, main
from vision.registry import create_model

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()


def readme_record() -> dict:
    block = README[README.index("A record (the same keys") :]
    text = block[block.index("```json") + len("```json") : block.index("```", block.index("```json") + 7)]
    return json.loads(text)


def shape(value):
    """Keys and nesting of a record; ``scores`` and ``references`` vary in content, not in kind."""
    if isinstance(value, dict):
        return {k: shape(v) if k not in ("scores",) else "dict" for k, v in value.items()}
    return type(value).__name__ if value is not None else "null"


def test_readme_record_has_the_keys_of_a_real_record(tiny_bundle, photo, capsys):
    assert main(["classify", str(photo("ivory_carving")), "--model", str(tiny_bundle)]) == 0
    real = json.loads(capsys.readouterr().out.splitlines()[0])
    documented = readme_record()
    assert set(documented) == set(real)
    assert set(documented["model"]) == set(real["model"])
    assert documented["model"]["version"] == create_model().config.version  # the shipped model's version


def test_every_gallery_command_and_route_is_documented():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    gallery = sub.choices["gallery"]
    verbs = next(a for a in gallery._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert set(verbs) >= {"add", "list", "remove", "export", "import", "negatives"}
    for verb in verbs:
        assert f"wildscan gallery {verb}" in README, verb
    app = create_app(Settings(allow_anonymous=True))
    paths = app.openapi()["paths"]
    routes = {(m.upper(), p) for p, ops in paths.items() if p.startswith("/v1/galleries") for m in ops}
    assert len(routes) == 6
    for method, path in routes:
        assert f"{method} {path}" in README, (method, path)


def test_the_decision_rule_names_the_bundles_settings():
    cfg = create_model().config
    rule = README[README.index("**How a label is decided**") :].split("\n\n")[0]
    assert f"{len(cfg.preprocess.crops)} 60 % crops" in rule.replace("five", "5")
    assert f"`uncertain` below\n{cfg.uncertain_below}" in rule or f"`uncertain` below {cfg.uncertain_below}" in rule
    assert cfg.possible_ratio == 0.5 and "at least half its threshold" in rule
    assert "matched_by: reference" in rule
    assert re.search(r"crops ran for \d+ %", rule)
