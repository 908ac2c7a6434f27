"""Failure reasons: every one the code can report is a member of ``vision.errors.Reason``,
the README lists exactly the reasons a record can carry, and each refusal maps to one status."""

import ast
import re
from pathlib import Path

import pytest

from serving.errors import status_of
from vision.errors import RECORD_REASONS, ImageError, Reason, WildscanError

REPO = Path(__file__).resolve().parents[2]


def reason_literals() -> dict[str, set[str]]:
    """Reason strings written in the code: ``"reason": "..."`` in dicts, ``reason = "..."``,
    ``reason="..."`` and the second argument of ``*Error(...)`` / ``api_error(...)``."""
    found: dict[str, set[str]] = {}
    for package in ("vision", "serving", "training"):
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                values = []
                if isinstance(node, ast.Dict):
                    values += [
                        v for k, v in zip(node.keys, node.values) if isinstance(k, ast.Constant) and k.value == "reason"
                    ]
                elif isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "reason" for t in node.targets):
                    values.append(node.value)
                elif isinstance(node, ast.Call):
                    name = getattr(node.func, "id", "") or getattr(node.func, "attr", "")
                    if (name.endswith("Error") or name == "api_error") and len(node.args) > 1:
                        values.append(node.args[1])
                    values += [kw.value for kw in node.keywords if kw.arg == "reason"]
                for value in values:
                    if isinstance(value, ast.Constant) and isinstance(value.value, str):
                        found.setdefault(value.value, set()).add(str(path.relative_to(REPO)))
    return found


def test_every_reason_in_the_code_is_a_member():
    literals = reason_literals()
    assert len(literals) > 20  # the scan sees the code's reasons
    unknown = {r: sorted(where) for r, where in literals.items() if r not in set(Reason)}
    assert not unknown, f"reasons missing from vision.errors.Reason: {unknown}"


def test_the_readme_lists_the_record_reasons():
    text = REPO.joinpath("README.md").read_text()
    paragraph = text[text.index("An unreadable input never stops a run") :].split("\n\n")[0]
    listed = set(re.findall(r"`([a-z_]+)`", paragraph)) - {"reason", "message", "error"}
    assert listed == {str(r) for r in RECORD_REASONS}


def test_unknown_reasons_are_refused_and_known_ones_stay_strings():
    with pytest.raises(ValueError):
        WildscanError("x", "no_such_reason")
    error = ImageError("cut off", "truncated")
    assert error.reason is Reason.TRUNCATED and error.as_dict() == {"reason": "truncated", "message": "cut off"}


@pytest.mark.parametrize(
    ("reason", "status"), [("too_large", 413), ("not_an_image", 415), ("truncated", 422), ("unknown_category", 404),
                           ("no_negative_pool", 409), ("corrupt", 422)],
)  # fmt: skip
def test_one_status_per_reason(reason, status):
    assert status_of(reason) == status
