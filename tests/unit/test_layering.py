"""Imports flow one way (AGENTS.md): checked on the source, so a stray import fails here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "aifactory"

# package -> packages it must never import
FORBIDDEN = {
    "api": {"portal", "cli", "agents", "server"},
    "broker": {"db", "services", "agents", "api", "executors"},
    "domain": {"db", "services", "agents", "api", "executors", "broker", "portal", "cli"},
    "services": {"api", "portal", "cli", "agents", "server"},
    "db": {"services", "api", "portal", "cli", "agents"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        names = (
            [node.module or ""]
            if isinstance(node, ast.ImportFrom)
            else [a.name for a in node.names]
            if isinstance(node, ast.Import)
            else []
        )
        for name in names:
            parts = name.split(".")
            if parts[0] == "aifactory" and len(parts) > 1:
                found.add(parts[1])
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_layer_imports_nothing_above_it(package: str) -> None:
    wrong = {
        f"{path.relative_to(SRC)} imports aifactory.{name}"
        for path in (SRC / package).rglob("*.py")
        for name in _imports(path) & FORBIDDEN[package]
    }
    assert sorted(wrong) == []
