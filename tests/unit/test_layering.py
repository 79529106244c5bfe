"""The layering rules of ARCHITECTURE.md, checked on the source: pure domains, thin routers."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "oms"
DOMAINS = sorted(SRC.glob("**/domain.py"))
ROUTERS = sorted(SRC.glob("**/router.py"))


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", DOMAINS, ids=lambda p: str(p.relative_to(SRC)))
def test_domains_import_only_the_standard_library_and_shared(path: Path) -> None:
    for name in _imports(path):
        top = name.split(".")[0]
        allowed = (
            top in sys.stdlib_module_names or top == "__future__" or name.startswith("oms.shared")
        )
        assert allowed, f"{path.relative_to(SRC)} imports {name}"


@pytest.mark.parametrize("path", ROUTERS, ids=lambda p: str(p.relative_to(SRC)))
def test_routers_do_not_query_or_reach_into_other_contexts_storage(path: Path) -> None:
    context = path.relative_to(SRC).parent.as_posix().replace("/", ".")
    for name in _imports(path):
        assert not name.startswith("sqlalchemy"), f"{path.relative_to(SRC)} imports {name}"
        if name.endswith(".models"):
            assert name == f"oms.{context}.models", f"{path.relative_to(SRC)} imports {name}"


def test_nothing_imports_routers_main_or_cli() -> None:
    for path in SRC.glob("**/*.py"):
        if path.name in {"main.py", "cli.py"}:
            continue
        for name in _imports(path):
            assert not name.endswith(".router"), f"{path.relative_to(SRC)} imports {name}"
            assert name not in {"oms.main", "oms.cli"}, f"{path.relative_to(SRC)} imports {name}"
