"""The one-way layers: every first-party import points down the chain, and no module imports itself in a circle.

The order is written once, in :data:`LAYERS`. Every import counts, function-level ones included
(deferring an import hides a cycle from Python, not from this test); imports of third-party
packages are not looked at, so a backend may still defer ``import coremltools`` to stay optional.
Backends are a layer of their own inside ``targets``: one never imports another.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Lowest first: a module may import from its own layer or any layer before it, never after.
LAYERS = ("srcore", "calibration", "targets", "pipeline", ("benchmarks", "apps"))
BACKENDS = {"coreml": "targets.coreml", "coreml_mil": "targets.coreml", "executorch": "targets.executorch",
            "tflite": "targets.tflite"}


def _rank(module: str) -> int | None:
    top = module.split(".")[0]
    for rank, layer in enumerate(LAYERS):
        if top in ((layer,) if isinstance(layer, str) else layer):
            return rank
    return None


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def first_party_imports(root: Path) -> dict[str, set[str]]:
    """Module -> the first-party modules it imports anywhere in its body (``from a import b`` counts as ``a.b``
    when ``a/b.py`` exists, else as ``a``)."""
    modules = {_module_name(p, root): p for top in ("srcore", "calibration", "targets", "pipeline", "benchmarks", "apps")
               for p in (root / top).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    found.add(full if full in modules else node.module)
        graph[name] = {m for m in found if _rank(m) is not None}
    return graph


def _backend(module: str) -> str | None:
    parts = module.split(".")
    return BACKENDS.get(parts[1]) if len(parts) > 1 and parts[0] == "targets" else None


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """Upward imports, imports between two backends, and import cycles, one line each."""
    problems = []
    for module, imported in sorted(graph.items()):
        for target in sorted(imported):
            if _rank(target) > _rank(module):
                problems.append(f"{module} imports {target}, a higher layer")
            elif _backend(module) and _backend(target) and _backend(module) != _backend(target):
                problems.append(f"backend {module} imports another backend, {target}")
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                problems.append("import cycle: " + " -> ".join(path[path.index(target):] + [target]))
            elif target in graph and not state.get(target):
                visit(target, path + [target])
        state[module] = 2

    for module in sorted(graph):
        if not state.get(module):
            visit(module, [module])
    return problems


def test_every_layer_is_a_regular_package():
    """setuptools' find_packages skips a folder without __init__.py: a wheel would lack it (namespace imports
    only work from a checkout)."""
    for top in ("srcore", "calibration", "targets", "pipeline"):
        for folder in [ROOT / top, *(p.parent for p in (ROOT / top).rglob("*.py"))]:
            assert (folder / "__init__.py").is_file(), f"{folder.relative_to(ROOT)} has no __init__.py"


def test_the_code_imports_only_downward_and_without_cycles():
    graph = first_party_imports(ROOT)
    assert len(graph) > 40 and "calibration.qmodel" in graph["targets.base"]
    assert layer_violations(graph) == []


def _tree(tmp_path: Path, files: dict[str, str]) -> dict[str, set[str]]:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return first_party_imports(tmp_path)


def test_an_upward_import_is_caught_even_inside_a_function(tmp_path):
    graph = _tree(tmp_path, {
        "srcore/model.py": "def f():\n    from calibration.qmodel import quantize_\n",
        "calibration/qmodel.py": "from srcore.model import f\n",
    })
    problems = layer_violations(graph)
    assert "srcore.model imports calibration.qmodel, a higher layer" in problems
    assert any(p.startswith("import cycle: ") for p in problems)


def test_a_cycle_inside_one_layer_and_a_backend_importing_another_are_caught(tmp_path):
    graph = _tree(tmp_path, {
        "targets/coreml.py": "import targets.coreml_mil\n",
        "targets/coreml_mil.py": "def g():\n    from targets.coreml import h\n",
        "targets/tflite.py": "from targets.executorch import lower\n",
        "targets/executorch.py": "",
    })
    problems = layer_violations(graph)
    assert "import cycle: targets.coreml -> targets.coreml_mil -> targets.coreml" in problems
    assert "backend targets.tflite imports another backend, targets.executorch" in problems
