"""The engine stands alone: nothing in mediacache/ or evolution/ imports the chat app
(or the service's config/ and ops/), so any Django project can install it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SERVICE_PACKAGES = {"chat", "config", "ops"}


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", ["mediacache", "evolution"])
def test_engine_imports_nothing_of_the_service(package):
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            name for name in imported_modules(path) if name.split(".")[0] in SERVICE_PACKAGES
        )
        for path in (ROOT / package).rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_evolution_client_needs_no_django():
    for path in (ROOT / "evolution").rglob("*.py"):
        assert not any(name.split(".")[0] == "django" for name in imported_modules(path)), path
