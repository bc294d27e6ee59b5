"""No test module imports another: what tests share lives in factories.py and conftest.py."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, relative imports spelled out from the tests package."""
    package = ".".join(path.relative_to(TESTS.parent).parent.parts)
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            # `from tests import test_x` and `from . import test_x` import test_x too.
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def test_no_test_module_imports_another() -> None:
    offenders = {
        f"{path.relative_to(TESTS.parent)} imports {module}"
        for path in TESTS.rglob("*.py")
        if "node_modules" not in path.parts
        for module in imported_modules(path)
        if module.rpartition(".")[2].startswith("test_")
    }
    assert not offenders, sorted(offenders)
