"""Hand-written SQL kept as package files (``<context>/sql/<name>.sql``), read once.

A context's database functions live in its ``sql/`` folder, one ``CREATE OR REPLACE FUNCTION``
per file named after the function: the source of truth. A migration installs a frozen copy of
each, and ``tests/integration/test_db_functions.py`` compares the functions of a migrated
database with these files, so the two cannot drift.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_FUNCTION = re.compile(
    r"\A(?:\s*--[^\n]*\n)*\s*CREATE\s+OR\s+REPLACE\s+FUNCTION\s+([a-z_][a-z0-9_]*)\s*\(",
    re.IGNORECASE,
)


@cache
def sql_file(package: str, name: str) -> str:
    """The text of ``<package>/sql/<name>.sql`` (read once per process)."""
    return resources.files(package).joinpath("sql", f"{name}.sql").read_text(encoding="utf-8")


def sql_names(package: str) -> list[str]:
    """The names (without ``.sql``) of the package's SQL files, sorted."""
    folder = resources.files(package).joinpath("sql")
    if not folder.is_dir():
        return []
    return sorted(p.name[:-4] for p in folder.iterdir() if p.name.endswith(".sql"))


def function_name(sql: str) -> str | None:
    """The function a ``CREATE OR REPLACE FUNCTION`` file creates (after leading ``--``
    comments), or None if the text is something else."""
    match = _FUNCTION.match(sql)
    return match.group(1).lower() if match else None
