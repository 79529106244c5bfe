"""The framework floor for ``bench/load.py --floor``: the database ceiling's transaction
(``_ceiling.place_one``, the same SQL and arguments) served by the design card's stack and
nothing else: uvicorn (uvloop, httptools; oms's worker count), one FastAPI route whose body is
validated by oms's own ``OrderCreate``, a plain asyncpg pool of oms's size per worker, and the
response document encoded with orjson.

No middleware, no dependency injection beyond the body and two headers, no ORM, no routing
(the ceiling's stand-in), no logging, no metrics. Whatever this app costs per order on top of
the ceiling is what any FastAPI service sending oms's SQL pays; oms's own ratio to the ceiling
cannot be better than this app's. Settings from the environment variable ``OMS_FLOOR`` (JSON:
``dsn``, ``pool_size``, ``key_prefix_db``, ``secret_hash``, ``key_scope``).

Run by ``bench/load.py`` as ``uvicorn _floor_app:app`` with ``bench/`` as the app directory.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import asyncpg
import orjson
from _ceiling import Context, _Rollback, _sample_explanation, place_one
from fastapi import FastAPI, Header, Request, Response

from oms.orders.schemas import OrderCreate

SPEC: dict[str, Any] = json.loads(os.environ.get("OMS_FLOOR", "{}"))


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    size = int(SPEC.get("pool_size", 8))
    app.state.pool = await asyncpg.create_pool(SPEC["dsn"], min_size=size, max_size=size)
    app.state.ctx = Context(
        SPEC["key_prefix_db"], SPEC["secret_hash"], SPEC["key_scope"], _sample_explanation()
    )
    yield
    await app.state.pool.close()


app = FastAPI(lifespan=lifespan, openapi_url=None)


@app.get("/readyz")
async def readyz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/v1/orders", status_code=201)
async def create_order(
    data: OrderCreate,
    request: Request,
    authorization: Annotated[str, Header()],
    idempotency_key: Annotated[str, Header(alias="Idempotency-Key")],
) -> Response:
    body = data.model_dump(mode="json")
    try:
        async with request.app.state.pool.acquire() as conn:
            doc = await place_one(conn, body, idempotency_key, request.app.state.ctx)
    except _Rollback as exc:
        return Response(
            orjson.dumps({"type": "about:blank", "title": str(exc), "status": 409}),
            status_code=409,
            media_type="application/problem+json",
        )
    return Response(orjson.dumps(doc), status_code=201, media_type="application/json")
