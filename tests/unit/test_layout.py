"""The engine's parts import only the parts below them: the README's "Layout" table is the
rule, and this test reads it from there, so the table and the code cannot drift apart."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENGINE = ROOT / "mediacache"
_ROW = re.compile(r"^\| (`mediacache/.*?`) \|[^|]*\| (.*) \|$")


def layout_rules() -> dict[str, set[str]]:
    """unit -> the engine units it may import, from the README's "Layout" table.

    A unit is a sub-package (``serving``) or a top-level module (``engine``); ``*``
    in the last column means any part of the engine (the composition modules).
    """
    section = ROOT.joinpath("README.md").read_text().split("\n## Layout\n", 1)[1]
    rules: dict[str, set[str]] = {}
    for line in section.split("\n## ", 1)[0].splitlines():
        match = _ROW.match(line)
        if match is None:
            continue
        allowed = set(re.findall(r"`(\w+)`", match.group(2)))
        for part in re.findall(r"`mediacache/([\w.]+)/?`", match.group(1)):
            rules[part.removesuffix(".py")] = {"*"} if "*" in match.group(2) else allowed
    return rules


def unit_of(module: str) -> str | None:
    """``mediacache.serving.app`` -> ``serving``; ``mediacache.engine`` -> ``engine``."""
    parts = module.split(".")
    if parts[0] != "mediacache" or len(parts) < 2:
        return None
    return parts[1]


class _WithoutTypeOnlyBlocks(ast.NodeTransformer):
    def visit_If(self, node: ast.If) -> ast.AST | list[ast.stmt]:
        test = node.test
        if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
            isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
        ):
            return node.orelse
        return self.generic_visit(node)


def package_of(path: Path) -> list[str]:
    """``mediacache/serving/app.py`` -> ["mediacache", "serving"]."""
    return list(path.relative_to(ROOT).parts[:-1])


def runtime_imports(path: Path, package: list[str]) -> set[str]:
    """Modules a file imports when it runs, at any depth (``if TYPE_CHECKING:`` blocks
    left out), relative imports made absolute; ``from a import b`` gives ``a`` and ``a.b``."""
    tree = _WithoutTypeOnlyBlocks().visit(ast.parse(path.read_text(), filename=str(path)))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            anchor = package[: len(package) - node.level + 1] if node.level else []
            base = ".".join([*anchor, *([node.module] if node.module else [])])
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def test_the_table_covers_every_part_of_the_engine():
    rules = layout_rules()
    units = {p.name for p in ENGINE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    units |= {p.stem for p in ENGINE.glob("*.py")}
    assert units - set(rules) == set(), "add these to the README's Layout table"
    assert set(rules) - units == set(), "the README's Layout table names parts that do not exist"


def test_no_part_imports_one_it_may_not():
    rules = layout_rules()
    offences = []
    for path in sorted(ENGINE.rglob("*.py")):
        unit = path.relative_to(ENGINE).parts[0].removesuffix(".py")
        allowed = rules[unit]
        if "*" in allowed:
            continue
        for module in sorted(runtime_imports(path, package_of(path))):
            target = unit_of(module)
            if target is None or target == unit or target in allowed:
                continue
            offences.append(f"{path.relative_to(ROOT)} imports {module} ({unit} -> {target})")
    assert offences == []


def test_the_checker_sees_relative_nested_and_skips_type_only_imports(tmp_path):
    """The rule is only as good as its parser."""
    sample = tmp_path / "probe.py"
    source = (
        "from typing import TYPE_CHECKING\n"
        "from ..tiers import lru\n"
        "if TYPE_CHECKING:\n    from mediacache.engine import Engine\n"
        "def f():\n    from .app import MediaApp\n"
    )
    sample.write_text(source)
    found = runtime_imports(sample, ["mediacache", "serving"])
    assert {"mediacache.tiers.lru", "mediacache.serving.app.MediaApp"} <= found
    assert not any(m.startswith("mediacache.engine") for m in found)
