"""The layer table of ARCHITECTURE.md, enforced: no import runs up a layer, and the serving
path never imports training, evaluation, the CLI's other commands, torch or transformers.

Every import counts, inside functions and under ``TYPE_CHECKING`` too: a lazy import that
runs up a layer is still an arrow up.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("lsp", "indexer", "model", "lint_bridge")

# Each layer and the project layers it may import (itself always). Mirrors ARCHITECTURE.md.
RUNTIME, CHECKPOINTS, FACTORY = "model.runtime", "model.checkpoints", "model.factory"
MODEL_SERVING = (RUNTIME, CHECKPOINTS, FACTORY)
LAYERS: dict[str, tuple[str, ...]] = {
    "indexer": (),
    "lint_bridge": ("indexer",),
    RUNTIME: (),
    CHECKPOINTS: (RUNTIME,),
    FACTORY: (RUNTIME, CHECKPOINTS),
    "lsp.core": (*MODEL_SERVING, "indexer", "lint_bridge"),
    # Training uses the completion core (prompts, the cleaning of candidate text) so that a
    # student learns exactly what the server shows; the core never imports training.
    "model.training": ("lsp.core", *MODEL_SERVING, "indexer", "lint_bridge"),
    "lsp.server": ("lsp.core", *MODEL_SERVING, "indexer", "lint_bridge"),
    "lsp.evaluation": ("lsp.core", *MODEL_SERVING, "model.training", "indexer", "lint_bridge"),
    "lsp.cli": (
        "lsp.server",
        "lsp.evaluation",
        "lsp.core",
        *MODEL_SERVING,
        "model.training",
        "indexer",
        "lint_bridge",
    ),
    # The packages' own __init__ modules import nothing of the project.
    "lsp": (),
    "model": (),
}
# Third-party imports a layer must never make (the completion core is protocol-free).
FORBIDDEN_THIRD_PARTY = {"lsp.core": ("pygls", "lsprotocol")}


def layer_of(module: str) -> str:
    """The longest layer name that ``module`` is, or lies inside."""
    matches = [name for name in LAYERS if module == name or module.startswith(name + ".")]
    return max(matches, key=len)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every absolute import in the file, at any depth."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            # ``from lsp.server import convert`` imports the module lsp.server.convert.
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def project_layer(imported: str) -> str | None:
    """The layer of an imported project module (None: not part of the project)."""
    if imported.split(".")[0] not in PACKAGES:
        return None
    return layer_of(imported)


def source_files() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def test_every_module_belongs_to_a_layer() -> None:
    for path in source_files():
        assert layer_of(module_name(path)) in LAYERS


def test_no_import_runs_up_a_layer() -> None:
    wrong: list[str] = []
    for path in source_files():
        own = layer_of(module_name(path))
        allowed = {own, *LAYERS[own]}
        for line, imported in imports_of(path):
            target = project_layer(imported)
            if target is not None and target not in allowed:
                rel = path.relative_to(ROOT)
                wrong.append(f"{rel}:{line}: {own} imports {imported} ({target})")
            top = imported.split(".")[0]
            if top in FORBIDDEN_THIRD_PARTY.get(own, ()):
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {own} imports {top}")
    assert wrong == [], "\n".join(wrong)


def test_the_table_catches_an_arrow_up(tmp_path: Path) -> None:
    """The check itself can fail: a runtime module importing a checkpoint module is caught."""
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from model.checkpoints.manifest import Manifest\n")
    [(line, imported)] = [i for i in imports_of(probe) if i[1] == "model.checkpoints.manifest"]
    assert line == 2 and project_layer(imported) not in {RUNTIME, *LAYERS[RUNTIME]}


SERVING_NEVER = (
    "torch",
    "transformers",
    "peft",
    "sentence_transformers",
    "model.training",
    "lsp.evaluation",
)


@pytest.mark.timeout(120)
def test_the_serving_path_imports_no_training_evaluation_or_torch() -> None:
    """What ``apprentice serve`` imports, in a fresh interpreter, up to a built server."""
    probe = (
        "import sys\n"
        "from lsp.cli import build_parser\n"
        "build_parser().parse_args(['serve'])\n"
        "from lsp.server.language_server import build_server\n"
        "build_server()\n"
        f"never = {SERVING_NEVER!r}\n"
        "print('\\n'.join(sorted(m for m in sys.modules if m.split('.')[0] in never\n"
        "    or any(m == n or m.startswith(n + '.') for n in never))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=110
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


def test_the_eval_parser_offers_the_placements_the_task_cutter_knows() -> None:
    from lsp.cli.evaluate import PLACEMENT_CHOICES
    from model.training.holes import LINE_PLACEMENTS

    assert PLACEMENT_CHOICES == LINE_PLACEMENTS


def _module_level(body: list[ast.stmt]) -> list[ast.stmt]:
    """Statements run at import, with those under ``if`` (``TYPE_CHECKING`` too) and ``try``."""
    found: list[ast.stmt] = []
    for node in body:
        found.append(node)
        if isinstance(node, ast.If | ast.Try):
            found += _module_level([*node.body, *node.orelse])
    return found


def top_level_imports(path: Path) -> set[str]:
    """Project modules a module imports at its top (not inside functions)."""
    found: set[str] = set()
    for node in _module_level(ast.parse(path.read_text(encoding="utf-8")).body):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        found.update(n for n in names if n.split(".")[0] in PACKAGES)
    return found


def test_no_module_imports_itself_back_through_others() -> None:
    """No import cycle among modules (``pipeline`` and ``timing`` used to import each other)."""
    modules = {module_name(path): path for path in source_files()}
    graph = {
        name: {m for m in top_level_imports(path) if m in modules and m != name}
        for name, path in modules.items()
    }
    cycles: list[str] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for nxt in sorted(graph[name]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*path[path.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == [], "\n".join(cycles)
