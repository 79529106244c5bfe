"""The race matrix's registry is complete: every writing route of the app is either raced by
operations of ``OPS`` (``RACED_ROUTES``) or listed, with the reason, as changing no order
(``NOT_RACED``). A route added without joining either fails here, before a race finds it.

Reads the app's route table (method and path template, as FastAPI serves them); needs no
database."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import fastapi.routing
import pytest

from oms.config import Settings
from oms.main import create_app
from tests.races.test_race_matrix import BY_NAME, NOT_RACED, RACED_ROUTES, WORKER_OPS

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@pytest.fixture(scope="module")
def writing_routes() -> set[tuple[str, str]]:
    """(method, path template) of every route that writes, console included."""
    app = create_app(
        Settings(
            database_url="postgresql+asyncpg://unused@127.0.0.1:1/unused", console_enabled=True
        )
    )
    routes: Iterable[Any] = app.routes
    flatten = getattr(fastapi.routing, "iter_route_contexts", None)  # routers included lazily
    if flatten is not None:
        routes = flatten(app.routes)
    out = set()
    for route in routes:
        for method in (getattr(route, "methods", None) or set()) & WRITES:
            out.add((method, route.path))
    assert len(out) > 50, sorted(out)  # the table was read (not an empty or partial view)
    return out


def test_every_writing_route_is_raced_or_excluded(writing_routes: set[tuple[str, str]]) -> None:
    unlisted = sorted(writing_routes - RACED_ROUTES.keys() - NOT_RACED.keys())
    assert not unlisted, (
        "writing routes neither raced (RACED_ROUTES, with their operations in OPS) nor "
        f"excluded (NOT_RACED, with the reason): {unlisted}"
    )


def test_the_lists_name_routes_that_exist(writing_routes: set[tuple[str, str]]) -> None:
    stale = sorted((RACED_ROUTES.keys() | NOT_RACED.keys()) - writing_routes)
    assert not stale, f"listed, but the app has no such writing route: {stale}"
    both = sorted(RACED_ROUTES.keys() & NOT_RACED.keys())
    assert not both, f"both raced and excluded: {both}"


def test_raced_routes_name_operations_of_the_matrix() -> None:
    unknown = {route: ops for route, ops in RACED_ROUTES.items() if set(ops) - BY_NAME.keys()}
    assert not unknown, f"operations not in OPS: {unknown}"
    assert all(RACED_ROUTES.values()), "a raced route names no operation"


def test_every_operation_is_a_route_or_a_worker_job() -> None:
    reached = {name for ops in RACED_ROUTES.values() for name in ops} | set(WORKER_OPS)
    assert set(WORKER_OPS) <= BY_NAME.keys(), set(WORKER_OPS) - BY_NAME.keys()
    orphans = sorted(BY_NAME.keys() - reached)
    assert not orphans, f"operations of OPS that no listed route or worker job is: {orphans}"
