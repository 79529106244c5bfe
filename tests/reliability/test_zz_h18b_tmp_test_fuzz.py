"""Schema fuzzing: schemathesis generates requests (valid and invalid) for every operation of
the committed OpenAPI document and sends them, with a real API key, to the app in-process.

Checks on every response: no 5xx, the status code is documented, the content type is
documented, and the body conforms to the documented schema. Path parameters are either
generated or taken from real resources (so the fuzzer gets past 404 into the state machine,
payments, returns, webhooks...). CI runs a few examples per operation with a fixed seed;
`bench/fuzz.py` runs many more, with random seeds, every role and the coverage phase.

Environment (read by bench/fuzz.py): OMS_FUZZ_EXAMPLES, OMS_FUZZ_SEED, OMS_FUZZ_ROLE (admin,
storefront, storefront_web, fulfillment), OMS_FUZZ_COVERAGE=1, OMS_FUZZ_REPORT=<json path>.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from oms.config import Settings
from oms.main import create_app
from tests.reliability.conftest import World, build_world, truncate_all

# a dev dependency (pyproject's dev extra); the skip reason says what to install if it is missing
schemathesis = pytest.importorskip("schemathesis", reason="pip install schemathesis==4.32.5")
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

OPENAPI = Path("/tmp/h18b-openapi-mine.json")
EXAMPLES = int(os.environ.get("OMS_FUZZ_EXAMPLES", "6"))
SEED = int(os.environ.get("OMS_FUZZ_SEED", "9"))  # fixed in CI: reproducible
ROLE = os.environ.get("OMS_FUZZ_ROLE", "admin")
COVERAGE = os.environ.get("OMS_FUZZ_COVERAGE") == "1"
REPORT = os.environ.get("OMS_FUZZ_REPORT")
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]


class LateApp:
    """The ASGI app under test, bound by a fixture once the test database exists."""

    def __init__(self) -> None:
        self.app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        assert self.app is not None, "the fuzz_world fixture binds the app"
        await self.app(scope, receive, send)


TARGET = LateApp()
STATE: dict[str, Any] = {}
SEEN: Counter[tuple[str, int]] = Counter()  # (operation, status) -> responses

config = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "generation": {"mode": "all", "max-examples": EXAMPLES, "database": "none"},
        "phases": {"coverage": {"enabled": COVERAGE}, "stateful": {"enabled": False}},
    }
)
schema = schemathesis.openapi.from_path(OPENAPI, config=config)
schema.app = TARGET


@schema.hook
def flatmap_path_parameters(
    context: schemathesis.HookContext, path_parameters: dict[str, Any] | None
) -> st.SearchStrategy[dict[str, Any] | None]:
    """Half the time, point path parameters at resources that exist (not for DELETE: the
    world must survive for the operations fuzzed after it)."""
    world: World | None = STATE.get("world")
    if not path_parameters or world is None or context.operation.method.upper() == "DELETE":
        return st.just(path_parameters)
    real = {k: world.ids[k] for k in path_parameters if k in world.ids}
    if not real:
        return st.just(path_parameters)
    return st.one_of(
        st.just(path_parameters),
        st.fixed_dictionaries({k: st.sampled_from(v) for k, v in real.items()}).map(
            lambda chosen: {**path_parameters, **chosen}
        ),
    )


@schema.hook
def after_call(
    context: schemathesis.HookContext, case: schemathesis.Case, response: schemathesis.Response
) -> None:
    SEEN[(case.operation.label, response.status_code)] += 1


@pytest.fixture(scope="module")
async def fuzz_world(
    app: FastAPI,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> AsyncIterator[World]:
    """Real resources in a clean database, and a second app instance for schemathesis (it
    runs the app in its own event loop thread)."""
    from schemathesis.python import asgi

    await truncate_all(engine)
    world = await build_world(app, sessionmaker)
    STATE["world"] = world
    TARGET.app = create_app(settings)
    try:
        yield world
    finally:
        asgi.shutdown_lifespans()  # disposes the fuzzed app's engine in its own event loop
        TARGET.app = None
        STATE.clear()
        if REPORT:
            _write_report(REPORT)


def _write_report(path: str) -> None:
    rows = [{"operation": op, "status": s, "count": n} for (op, s), n in SEEN.items()]
    Path(path).write_text(json.dumps(sorted(rows, key=lambda r: (r["operation"], r["status"]))))


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_every_operation_conforms(case: schemathesis.Case, fuzz_world: World) -> None:
    case.call_and_validate(headers=fuzz_world.headers(ROLE), checks=CHECKS)
