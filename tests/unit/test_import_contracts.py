"""The layering of ARCHITECTURE.md is held by import-linter contracts (pyproject.toml
``[tool.importlinter]``); CI runs ``lint-imports`` and so does this test. The other tests keep the
contracts complete as the code grows: a new third-party package, domain module, router or context
`models` module is covered or the test says which contract to extend."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


@cache
def _graph() -> grimp.ImportGraph:
    return grimp.build_graph("oms", include_external_packages=True, cache_dir=None)


@cache
def _contracts() -> dict[str, dict[str, Any]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {c["id"]: c for c in config["contracts"]}


def _matching(expressions: list[str]) -> set[str]:
    graph = _graph()
    out: set[str] = set()
    for expression in expressions:
        if "*" in expression:
            out |= graph.find_matching_modules(expression)
        elif expression in graph.modules:
            out.add(expression)
    return out


def test_lint_imports_keeps_every_contract() -> None:
    result = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("contract", ["pure-domains", "pure-routing"])
def test_pure_modules_are_denied_every_third_party_package(contract: str) -> None:
    """Contracts list what is forbidden; purity means "the standard library only", so every
    third-party package oms imports anywhere must be on the list."""
    tops = {m.split(".")[0] for m in _graph().modules}
    third_party = tops - set(sys.stdlib_module_names) - {"oms"}
    missing = third_party - set(_contracts()[contract]["forbidden_modules"])
    assert not missing, f"add {sorted(missing)} to forbidden_modules of contract {contract!r}"


def test_every_domain_and_routing_module_is_classified() -> None:
    """Every ``*.domain`` module is held pure; every routing module is pure or named impure."""
    pure_domains = _matching(_contracts()["pure-domains"]["source_modules"])
    pure_routing = _matching(_contracts()["pure-routing"]["source_modules"])
    domains = _graph().find_matching_modules("oms.**.domain")
    assert "oms.orders.domain" in domains
    assert domains <= pure_domains | pure_routing
    routing = _graph().find_children("oms.routing")
    impure = set(_contracts()["pure-routing"]["forbidden_modules"])
    unclassified = routing - pure_routing - impure
    assert not unclassified, f"add {sorted(unclassified)} to a pure-routing list"


@pytest.mark.parametrize("contract", ["pure-domains", "pure-routing", "foundations"])
def test_foundations_and_pure_modules_are_denied_every_other_oms_package(contract: str) -> None:
    forbidden = set(_contracts()[contract]["forbidden_modules"])
    sources = set(_contracts()[contract]["source_modules"])
    for top in _graph().find_children("oms"):
        if top == "oms.shared" or any(s == top or s.startswith(top + ".") for s in sources):
            continue
        assert top in forbidden or f"{top}.*" in forbidden, f"{contract}: forbid {top}"


def test_every_router_is_thin_and_unimported() -> None:
    routers = {m for m in _graph().find_descendants("oms") if m.rsplit(".", 1)[-1] == "router"}
    assert routers, "no routers found: is the graph built from the right package?"
    assert routers <= _matching(_contracts()["thin-routers"]["source_modules"])
    assert routers <= _matching(_contracts()["entry-points"]["protected_modules"])


def test_every_models_module_belongs_to_its_context() -> None:
    """Each ``models`` module is protected: only its own context (and oms.flows) imports it."""
    models = {m for m in _graph().find_descendants("oms") if m.rsplit(".", 1)[-1] == "models"}
    protected: set[str] = set()
    for contract in _contracts().values():
        if contract["id"].startswith("own-models-"):
            protected |= _matching(contract["protected_modules"])
    unprotected = models - protected - {"oms.models"}  # oms.models: every table, for Alembic
    assert not unprotected, f"add an own-models contract for {sorted(unprotected)}"
