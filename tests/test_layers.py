"""The layering of docs/architecture.md, enforced: each package imports only the layers below it.

The check reads the source (no imports run), so a forbidden import fails here even where it
sits inside a function.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Package -> the darwin packages it may import (docs/architecture.md, "Layers").
ALLOWED: dict[str, frozenset[str]] = {
    "protocol": frozenset(),
    "model": frozenset({"protocol"}),
    "ledger": frozenset({"protocol"}),
    "verifier": frozenset({"protocol", "model"}),
    "net": frozenset({"protocol"}),
    "home": frozenset({"protocol"}),
    "heap": frozenset(),
    "gossip": frozenset({"protocol", "model", "ledger", "verifier", "net"}),
    "node": frozenset({"protocol", "model", "ledger", "verifier", "net", "gossip", "home", "heap"}),
    # explorer: the `darwin` command (client/cli.py) dispatches `darwin explore` to it.
    "client": frozenset(
        {"protocol", "model", "ledger", "verifier", "net", "gossip", "home", "heap", "explorer"}
    ),
    # gossip: the proof store (darwin.gossip.proof_store) is where a home keeps fraud proofs.
    "explorer": frozenset({"protocol", "ledger", "verifier", "gossip", "home"}),
    "simulations": frozenset({"protocol", "ledger", "verifier", "client"}),
}
# Folders of top-level packages; darwin/ itself holds home.py, heap.py and the entry points.
FOLDERS = {name: ROOT / name for name in ALLOWED if name not in ("home", "heap")}


def darwin_imports(source: str) -> set[str]:
    """The darwin packages a module's source imports (``darwin.X...`` -> ``X``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == "darwin":
                names = [f"darwin.{alias.name}" for alias in node.names]
        found.update(name.split(".")[1] for name in names if name.startswith("darwin."))
    return found


def forbidden(package: str, source: str) -> set[str]:
    """What ``source``, a module of ``package``, imports that its layer may not."""
    return darwin_imports(source) - ALLOWED[package] - {package}


def _modules() -> list[tuple[str, Path]]:
    # A package's __main__ is an entry point (``python -m``): it sits above every layer.
    pairs = [(package, path) for package, folder in FOLDERS.items()
             for path in sorted(folder.rglob("*.py")) if path.name != "__main__.py"]
    pairs += [(name, ROOT / "darwin" / f"{name}.py") for name in ("home", "heap")]
    return pairs


def _module_id(value: object) -> str:
    return str(value.relative_to(ROOT)) if isinstance(value, Path) else str(value)


@pytest.mark.parametrize(("package", "path"), _modules(), ids=_module_id)
def test_every_module_imports_only_the_layers_below_it(package: str, path: Path) -> None:
    assert forbidden(package, path.read_text()) == set()


@pytest.mark.parametrize(("package", "source", "bad"), [
    ("client", "from darwin.node.serving.push import PushLinks\n", {"node"}),
    ("client", "def f():\n    import darwin.node.server\n", {"node"}),
    ("protocol", "from darwin import model\n", {"model"}),
    ("net", "from darwin.gossip.verdicts import publish_or_log\n", {"gossip"}),
    ("verifier", "from darwin.ledger import Ledger\n", {"ledger"}),
    ("home", "import darwin.ledger\n", {"ledger"}),
])
def test_a_forbidden_import_is_caught(package: str, source: str, bad: set[str]) -> None:
    assert forbidden(package, source) == bad


def test_relative_and_third_party_imports_are_not_layers() -> None:
    assert darwin_imports("from . import x\nimport torch\nfrom .errors import E\n") == set()
