"""The core's modules import in any order: no import cycle, so no TYPE_CHECKING workarounds for one."""

import ast
import subprocess
import sys

import pytest
from plugin_kit import PROJECT

CORE = PROJECT / "core"


def runtime_imports(module: str) -> set[str]:
    """The core modules ``core/<module>.py`` imports when it is loaded (``if`` blocks such as TYPE_CHECKING aside)."""
    tree = ast.parse((CORE / f"{module}.py").read_text())
    found = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("core."):
            found.add(node.module.split(".")[1])
    return found


def test_no_import_cycle_among_core_modules():
    graph = {path.stem: runtime_imports(path.stem) for path in CORE.glob("*.py")}
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for dep in sorted(graph.get(module, ())):
            assert state.get(dep) != "open", "import cycle: " + " -> ".join([*path[path.index(dep):], dep])
            if dep not in state:
                visit(dep, [*path, dep])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


@pytest.mark.parametrize("module", ["core.app", "core.base", "core.loader", "core.openapi", "core.plugin", "core.services", "core.cli"])
def test_each_module_imports_first_in_a_fresh_interpreter(module):
    result = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=PROJECT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
