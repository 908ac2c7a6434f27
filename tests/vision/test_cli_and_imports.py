"""The CLI (in-process through main(argv)) and the torch-free inference path (fresh interpreters)."""

import json
import subprocess
import sys

import pytest

from vision.cli import main

EXPECTED_COMMANDS = {
    "classify",
    "scan",
    "report",
    "serve",
    "keys",
    "gallery",
    "train",
    "evaluate",
    "export",
    "data",
    "models",
}


def test_classify_prints_one_record_per_image(tiny_bundle, photo, tmp_path, capsys):
    bad = tmp_path / "truncated.jpg"
    bad.write_bytes(photo("ivory_carving").read_bytes()[:1500])
    code = main(["classify", str(photo("ivory_carving")), str(bad), "--model", str(tiny_bundle)])
    out = capsys.readouterr()
    assert code == 1  # an input could not be used: the shell can tell
    records = [json.loads(line) for line in out.out.splitlines()]
    assert [r["error"] is None for r in records] == [True, False]
    assert records[1]["error"]["reason"] == "truncated"
    assert "Traceback" not in out.err and "1 of 2 images could not be read" in out.err


def test_classify_a_missing_file_is_a_failure_record_and_exit_1(tiny_bundle, tmp_path, capsys):
    code = main(["classify", str(tmp_path / "missing.jpg"), "--model", str(tiny_bundle)])
    out = capsys.readouterr()
    assert code == 1
    assert json.loads(out.out)["error"]["reason"] == "unreadable"


def test_classify_expands_folders(tiny_bundle, photo, tmp_path, capsys):
    (tmp_path / "sub").mkdir()
    for i, label in enumerate(["orchid", "snake_live"]):
        (tmp_path / "sub" / f"{i}.jpg").write_bytes(photo(label).read_bytes())
    assert main(["classify", str(tmp_path), "--model", str(tiny_bundle)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_unknown_model_is_a_clear_error(capsys, photo):
    assert main(["classify", str(photo("orchid")), "--model", "no_such_model"]) == 1
    assert "unknown model 'no_such_model'" in capsys.readouterr().err


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    missing = {c for c in EXPECTED_COMMANDS if f"    {c} " not in text}
    assert not missing
    assert "unavailable" not in text


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_help_imports_nothing_heavy():
    """``wildscan --help`` parses without importing torch, onnxruntime, timm or numpy: it answers at once."""
    mods = _modules_after("from vision.cli import build_parser\nbuild_parser().format_help()")
    assert not {"torch", "onnxruntime", "timm", "numpy", "fastapi", "ray"} & mods


def test_inference_path_never_imports_torch(tiny_bundle, photo):
    """Every module of vision and serving imported, and a photo classified, in a fresh
    interpreter: torch, timm and training stay out."""
    code = f"""
import importlib, pkgutil
import vision, serving
for pkg in (vision, serving):
    for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        if "ray" in info.name:
            continue  # the Ray engine is an optional extra, checked where Ray is installed
        importlib.import_module(info.name)
from vision.registry import create_model
assert create_model({str(tiny_bundle)!r}).predict_files([{str(photo("orchid"))!r}])[0].ok
"""
    mods = _modules_after(code)
    assert "vision.runtime" in mods and "onnxruntime" in mods
    assert "torch" not in mods and "timm" not in mods and "training" not in mods


@pytest.mark.parametrize(
    "argv, says",
    [
        (["export", "{tmp}/no-run"], "expected a run folder"),
        (["train", "--config", "{tmp}/no.json"], "expected a recipe"),
        (["evaluate", "--model", "no-such-model"], "unknown model"),
        (["evaluate", "--feedback", "{tmp}/nowhere"], "feedback.csv not found"),
        (["report", "{tmp}/missing.csv"], "results file not found"),
        (["scan", "{tmp}/missing-dir", "--out", "{tmp}/r.csv"], "input not found"),
        (["scan", "{tmp}", "--out", "{tmp}/r.txt"], "cannot tell the format"),
        (["gallery", "add", "no_such_category", "{tmp}/x.jpg"], "unknown category"),
        (["feedback", "export", "{tmp}/out"], "no audit database"),
    ],
)
def test_every_command_refuses_bad_input_in_one_line(argv, says, tmp_path, capsys, monkeypatch):
    from vision.cli import main

    monkeypatch.setenv("WILDSCAN_DATA_DIR", str(tmp_path / "var"))
    assert main([a.format(tmp=tmp_path) for a in argv]) == 1
    err = capsys.readouterr().err.strip()
    assert says in err and "Traceback" not in err and len(err.splitlines()) == 1, err
