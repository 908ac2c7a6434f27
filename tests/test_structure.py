"""The architecture, checked from the code itself: imports point training -> vision <- serving,
no module imports itself back through others, no module grows past 500 lines and no
function past 60, and only the settings modules read the environment.

Every import counts, including those inside functions: a function-level import is still a
dependency, it only hides it.
"""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("vision", "training", "serving")
# which package may import which (besides itself)
ALLOWED = {"vision": set(), "training": {"vision"}, "serving": {"vision"}}
MAX_LINES = 500
MAX_FUNCTION_LINES = 60
SETTINGS_MODULES = {"vision/settings.py", "serving/settings.py"}


def modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def imported_names(name: str, path: Path) -> set[str]:
    """Every module name an import statement in ``path`` refers to (relative imports resolved)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (a name resolves to its longest known prefix)."""
    known = modules()
    graph = {}
    for name, path in known.items():
        edges = set()
        for target in imported_names(name, path):
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                edges.add(target)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_imports_point_training_to_vision_from_serving():
    graph = import_graph()
    wrong = [
        f"{a} -> {b}"
        for a, targets in graph.items()
        for b in targets
        if b.split(".")[0] != a.split(".")[0] and b.split(".")[0] not in ALLOWED[a.split(".")[0]]
    ]
    assert not wrong, "imports against training -> vision <- serving:\n" + "\n".join(sorted(wrong))


def test_no_import_cycles():
    assert not cycles(import_graph())


def test_the_checks_see_a_cycle_and_a_wrong_edge():
    graph = {"vision.a": {"vision.b"}, "vision.b": {"vision.c"}, "vision.c": {"vision.a"}, "vision.d": set()}
    assert cycles(graph) == [["vision.a", "vision.b", "vision.c"]]
    names = imported_names("serving.routes.classify", REPO / "serving" / "routes" / "classify.py")
    assert "serving.deps" in names and "vision.runtime" in names  # relative and absolute imports resolved


@pytest.mark.parametrize("package", PACKAGES)
def test_modules_stay_short(package):
    long = {
        str(path.relative_to(REPO)): n
        for name, path in modules().items()
        if name.split(".")[0] == package and (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_functions_stay_short():
    long = []
    for path in modules().values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(long)


def test_only_the_settings_modules_read_the_environment():
    readers = sorted(
        str(path.relative_to(REPO))
        for path in modules().values()
        if "os.environ" in path.read_text() or "os.getenv" in path.read_text()
    )
    assert set(readers) <= SETTINGS_MODULES, readers
