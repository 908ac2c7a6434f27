"""The research notebooks: committed without outputs, and each one runs top to bottom.

Outputs are stripped in git (``make strip-notebooks``): no stale numbers, small diffs; the
numbers are recomputed by running them, which the slow tests here do with nbclient, on the
shipped model, as a researcher would (parameters as committed).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = REPO / "notebooks"
NAMES = ["01_model_evaluation.ipynb", "02_error_analysis.ipynb", "03_scan_analysis.ipynb"]
SHIPPED_MODEL = REPO / "models" / "efficientnet_lite0.wildtrade_v1.onnx"
MIN_FIGURES = {"01_model_evaluation.ipynb": 4, "02_error_analysis.ipynb": 10, "03_scan_analysis.ipynb": 3}
# Headless, yet figures are rendered (by Agg) into the outputs. MPLBACKEND=Agg itself would
# make plt.show() a no-op inside the kernel: no figure would ever be drawn, so none checked.
HEADLESS_BACKEND = "module://matplotlib_inline.backend_inline"


def execute(path: Path, workdir: Path, parameters: dict | None = None, timeout: int = 900):
    """Run a copy of the notebook in ``workdir`` and return it executed; raises nbclient's
    ``CellExecutionError`` (with the cell's traceback) on the first error.

    ``parameters`` are injected as a cell after the one tagged ``parameters``, as papermill
    does, so the committed values stay untouched.
    """
    from nbclient import NotebookClient

    copy = workdir / path.name
    shutil.copy(path, copy)
    nb = nbformat.read(copy, as_version=4)
    if parameters:
        at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
        source = "\n".join(f"{name} = {value!r}" for name, value in parameters.items())
        nb.cells.insert(at + 1, nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]}))
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(workdir)}})
    try:
        client.execute()
    finally:
        nbformat.write(nb, copy)  # the executed copy, for a look after a failure
    return nb


def test_committed_notebooks_have_no_outputs():
    assert sorted(p.name for p in NOTEBOOK_DIR.glob("*.ipynb")) == NAMES
    for name in NAMES:
        nb = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
        nbformat.validate(nb)
        code = [c for c in nb.cells if c.cell_type == "code"]
        for k, cell in enumerate(code):
            assert cell.outputs == [] and cell.execution_count is None, (
                f"{name}, code cell {k + 1} has outputs: run `make strip-notebooks` before committing"
            )
        assert "parameters" in code[0].metadata.get("tags", []), f"{name}: the first code cell must hold the parameters"


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs(name, tmp_path, monkeypatch):
    """Each notebook executes without error (01 also asserts the model card's numbers)."""
    if not SHIPPED_MODEL.is_file():
        pytest.skip(f"the shipped model is not built yet ({SHIPPED_MODEL})")
    monkeypatch.setenv("MPLBACKEND", HEADLESS_BACKEND)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    nb = execute(NOTEBOOK_DIR / name, tmp_path)
    outputs = [o for c in nb.cells for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= MIN_FIGURES[name]  # figures really drawn
