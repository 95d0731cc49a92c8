"""The house (docs/layout.md): folders that show the layers, imports that point one way (no circle, nothing that runs
back up, in a function or at the top of a file), no file over 300 lines."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

# Lower rank first; a module may import only modules of its own rank or lower. The package's __init__ (the public
# names) and the entry points (scripts/, lab/) sit on top.
RANKS = {"lightning_models.checks": 0, "lightning_models.util": 0, "datamodules": 1, "lightning_models": 1, "lightning_models.callbacks": 2,
         "lightning_models.training": 3, "lightning_models.inference": 4, "lightning_models.workflows": 5,
         "scripts": 6, "lab": 6}
FOLDERS = ["lightning_models", "datamodules", "scripts", "lab"]
MAX_LINES = 300


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def rank(module: str) -> int | None:
    """The rank of the longest layer name that ``module`` falls under; a package's ``__init__`` ranks above its layer."""
    if module in {"lightning_models", "datamodules"}:
        return 6 if module == "lightning_models" else RANKS["datamodules"]
    names = [name for name in RANKS if module == name or module.startswith(name + ".")]
    return RANKS[max(names, key=len)] if names else None


def sources() -> dict[str, Path]:
    return {module_name(path): path for folder in FOLDERS for path in sorted((ROOT / folder).rglob("*.py"))}


def imports(path: Path, known: set[str]) -> set[str]:
    """The project modules ``path`` imports, anywhere in the file (``from package import module`` counts the module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name in known}


def graph() -> dict[str, set[str]]:
    modules = sources()
    return {name: imports(path, set(modules)) - {name} for name, path in modules.items()}


def test_every_module_sits_in_a_layer():
    unplaced = [name for name in sources() if rank(name) is None]
    assert not unplaced, f"modules in no layer of RANKS: {unplaced}"


def test_imports_point_down_and_never_back_up():
    upward = [f"{source} (rank {rank(source)}) imports {target} (rank {rank(target)})"
              for source, targets in graph().items() for target in sorted(targets) if rank(target) > rank(source)]
    assert not upward, "imports that run back up a layer:\n" + "\n".join(upward)


def test_no_import_circle():
    edges, state, cycles = graph(), {}, []

    def visit(node, path):
        state[node] = "open"
        for target in sorted(edges[node]):
            if state.get(target) == "open":
                cycles.append(" -> ".join([*path[path.index(target):], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import circles:\n" + "\n".join(cycles)


@pytest.mark.parametrize("folder", FOLDERS)
def test_no_file_over_300_lines(folder):
    long = {str(path.relative_to(ROOT)): n for path in (ROOT / folder).rglob("*.py")
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"files over {MAX_LINES} lines: {long}"


def test_no_sys_path_edits():
    edits = [str(path.relative_to(ROOT)) for path in sources().values() if "sys.path" in path.read_text()]
    assert not edits, f"sys.path edited in {edits}; install the project (pip install -e .) instead"


def test_every_module_imports_first_in_a_fresh_process():
    """A circle through a package's ``__init__`` shows only at run time, and only when the right module comes first:
    import each module first, the project's modules forgotten between imports (torch and Lightning stay loaded)."""
    modules = [name for name in sources() if not name.startswith(("scripts", "lab"))]
    program = f"""
import importlib, sys, traceback
import torch, pytorch_lightning
failed = []
for name in {modules!r}:
    for loaded in [m for m in sys.modules if m.split(".")[0] in ("lightning_models", "datamodules")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception as error:
        failed.append(f"{{name}}: {{type(error).__name__}}: {{error}}")
print("\\n".join(failed))
sys.exit(1 if failed else 0)
"""
    done = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, "modules that fail when imported first:\n" + done.stdout + done.stderr[-2000:]
