"""Hostile input through the real app: every request is either rejected with a 4xx problem
(and nothing is stored), or accepted and stored exactly as sent. Never a 5xx, never a stack
trace, SQL, a key or the hostile input itself echoed back in an error.

Free text (names, address lines, notes, attributes) is *meant* to hold any Unicode and any
SQL-looking text: it is accepted and read back byte for byte (queries are parameterized).
Constrained fields (SKU, channel, currency, country, ids) reject them with 422.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tests.helpers import assert_stock_invariants, auth, order_body, stock

NASTY_TEXT = [
    "Zoë Ångström-Łukasz 山田太郎 محمد",  # Latin, CJK, Arabic
    "🚀📦 \U0001f9d1\u200d\U0001f4bb family: \U0001f468\u200d\U0001f469\u200d\U0001f467",  # ZWJ
    "e\u0301\u0301\u0301 a\u20dd \u202eRTL override\u202c \u200bzero\u200bwidth",
    "𝕳𝖊𝖑𝖑𝖔 \U00010348 \U0010fffd",  # astral planes
    "'; DROP TABLE orders; --",
    '" OR 1=1 --',
    "1); DELETE FROM stock_levels WHERE (1=1",
    "$1 $$ E'\\x00' %s %(name)s {0} ${jndi:ldap://x}",
    "<script>alert(1)</script>",
    "Robert'); SELECT pg_sleep(30); --",
]
NEVER_IN_ERRORS = ("Traceback", 'File "', "sqlalchemy", "asyncpg", "SELECT ", "INSERT ", "UPDATE ")


@pytest.fixture(autouse=True)
async def default_stock(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await stock(sessionmaker, "BER", {"TSHIRT-RED-M": 10_000, "MUG-01": 10_000}, city="Berlin")


@pytest.fixture
async def storefront(client: httpx.AsyncClient, keys: dict[str, str]) -> dict[str, str]:
    return auth(keys["storefront"])


async def _count(engine: AsyncEngine, table: str) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text(f'SELECT count(*) FROM "{table}"'))).scalar_one())


@pytest.fixture
async def nothing_stored(engine: AsyncEngine) -> AsyncIterator[None]:
    """The test must leave orders, their outbox events and idempotency keys as they were."""
    tables = ("orders", "order_lines", "outbox_events", "idempotency_keys", "allocations")
    before = {t: await _count(engine, t) for t in tables}
    yield
    assert {t: await _count(engine, t) for t in tables} == before
    await assert_stock_invariants(engine)


def assert_clean_problem(
    resp: httpx.Response, status: int | tuple[int, ...], *secrets: str, limit: int = 65_536
) -> dict[str, Any]:
    """A 4xx problem+json, small, echoing none of ``secrets`` and no internals."""
    statuses = (status,) if isinstance(status, int) else status
    assert resp.status_code in statuses, resp.text[:500]
    assert resp.headers["content-type"] == "application/problem+json"
    assert len(resp.content) < limit, f"error body of {len(resp.content)} bytes"
    body = resp.text
    for secret in secrets:
        assert secret not in body, f"the error echoes {secret[:40]!r}"
    for marker in NEVER_IN_ERRORS:
        assert marker not in body, f"the error leaks {marker!r}: {body[:300]}"
    problem: dict[str, Any] = resp.json()
    assert problem["status"] == resp.status_code and problem["code"]
    return problem


# ---- size ---------------------------------------------------------------------------------------


@pytest.mark.usefixtures("nothing_stored")
async def test_huge_bodies_are_refused_early(
    client: httpx.AsyncClient, storefront: dict[str, str]
) -> None:
    """A 20 MB body (declared, or streamed without a length) is 413 without reading it all."""
    huge = b'{"notes": "' + b"A" * 20_000_000 + b'"}'
    started = time.perf_counter()
    resp = await client.post(
        "/v1/orders", content=huge, headers=storefront | {"content-type": "application/json"}
    )
    assert_clean_problem(resp, 413, "AAAAAAAAAA")
    sent: list[int] = []

    async def stream() -> AsyncIterator[bytes]:
        for _ in range(200):
            sent.append(1)
            yield b"B" * 100_000

    resp = await client.post(
        "/v1/orders", content=stream(), headers=storefront | {"content-type": "application/json"}
    )
    assert_clean_problem(resp, 413, "BBBBBBBBBB")
    assert len(sent) < 10, "the body was read far past the limit"
    assert time.perf_counter() - started < 5


@pytest.mark.usefixtures("nothing_stored")
async def test_deep_json_is_refused(client: httpx.AsyncClient, storefront: dict[str, str]) -> None:
    """Nesting that would blow the parser's recursion, at the top level or inside a field."""
    headers = storefront | {"content-type": "application/json"}
    for depth in (10_000, 100_000):
        body = b'{"a":' * depth + b"1" + b"}" * depth
        resp = await client.post("/v1/orders", content=body, headers=headers)
        assert_clean_problem(resp, (400, 413, 422))
        nested = json.dumps(order_body(notes="x"))[:-1] + ', "attributes": {"k": '
        body = nested.encode() + b"[" * depth + b"]" * depth + b"}}"
        resp = await client.post("/v1/orders", content=body, headers=headers)
        assert_clean_problem(resp, (400, 413, 422))


async def test_moderately_deep_attributes_round_trip(
    client: httpx.AsyncClient, storefront: dict[str, str]
) -> None:
    """Free-form `attributes` nested 100 deep are stored and read back unchanged."""
    value: Any = "leaf"
    for _ in range(100):
        value = {"k": value}
    resp = await client.post(
        "/v1/orders", json=order_body(attributes={"deep": value}), headers=storefront
    )
    assert resp.status_code == 201, resp.text
    got = await client.get(f"/v1/orders/{resp.json()['id']}", headers=storefront)
    assert got.json()["attributes"] == {"deep": value}


@pytest.mark.usefixtures("nothing_stored")
async def test_thousands_of_lines_are_422_with_a_bounded_answer(
    client: httpx.AsyncClient, storefront: dict[str, str]
) -> None:
    lines = [{"sku": f"S-{i}", "quantity": 1, "unit_price": 1} for i in range(5_000)]
    resp = await client.post("/v1/orders", json=order_body(lines=lines), headers=storefront)
    problem = assert_clean_problem(resp, 422, "S-4999")
    assert problem["code"] == "validation_error"
    bad = [{"sku": "!", "quantity": -1, "unit_price": -1}] * 250  # 250 lines, all invalid
    resp = await client.post("/v1/orders", json=order_body(lines=bad), headers=storefront)
    assert_clean_problem(resp, 422)


# ---- text ---------------------------------------------------------------------------------------


def _every_text_field(value: str, i: int) -> dict[str, Any]:
    """An order whose every free-text string field holds ``value``."""
    return order_body(
        external_reference=f"ref-{i}",
        customer={"id": value, "email": f"u{i}@example.com"},
        shipping_address={
            "name": value,
            "lines": [value, value],
            "city": value,
            "postal_code": value[:32],
            "region": value,
            "country": "DE",
        },
        notes=value,
        attributes={value: value, "list": [value], "nested": {"v": value}},
        lines=[{"sku": "MUG-01", "quantity": 1, "unit_price": 850, "name": value[:200]}],
    )


async def test_unicode_and_sql_text_is_stored_exactly(
    client: httpx.AsyncClient, storefront: dict[str, str], engine: AsyncEngine
) -> None:
    """Any Unicode (ZWJ emoji, RTL override, combining marks, astral planes) and SQL-looking
    text in every free-text field is accepted and read back byte for byte; the database is
    intact afterwards (the SQL was data, not code)."""
    for i, value in enumerate(NASTY_TEXT):
        resp = await client.post("/v1/orders", json=_every_text_field(value, i), headers=storefront)
        assert resp.status_code == 201, (value, resp.text[:500])
        order = (await client.get(f"/v1/orders/{resp.json()['id']}", headers=storefront)).json()
        addr = order["shipping_address"]
        assert order["customer"]["id"] == value
        assert [addr["name"], addr["city"], addr["region"], *addr["lines"]] == [value] * 5
        assert addr["postal_code"] == value[:32]
        assert order["notes"] == value and order["lines"][0]["name"] == value[:200]
        assert order["attributes"] == {value: value, "list": [value], "nested": {"v": value}}
        listed = await client.get("/v1/orders", params={"customer_id": value}, headers=storefront)
        assert [o["id"] for o in listed.json()["items"]] == [order["id"]]
    assert await _count(engine, "orders") == len(NASTY_TEXT)
    assert await _count(engine, "stock_levels") == 2
    await assert_stock_invariants(engine)


CONSTRAINED = {
    "sku": lambda v: order_body(lines=[{"sku": v, "quantity": 1, "unit_price": 1}]),
    "channel": lambda v: order_body(channel=v),
    "currency": lambda v: order_body(currency=v),
    "country": lambda v: order_body(
        shipping_address=order_body()["shipping_address"] | {"country": v}
    ),  # noqa: E501
    "email": lambda v: order_body(customer={"email": v}),
    "payment_method": lambda v: order_body(payment_method=v),
}


@pytest.mark.usefixtures("nothing_stored")
@pytest.mark.parametrize("field", list(CONSTRAINED))
async def test_hostile_text_in_constrained_fields_is_422(
    field: str, client: httpx.AsyncClient, storefront: dict[str, str]
) -> None:
    for value in NASTY_TEXT:
        resp = await client.post("/v1/orders", json=CONSTRAINED[field](value), headers=storefront)
        assert_clean_problem(resp, 422)


@pytest.mark.usefixtures("nothing_stored")
async def test_nul_and_lone_surrogates_are_422(
    client: httpx.AsyncClient, storefront: dict[str, str]
) -> None:
    """Postgres cannot store NUL, and a lone surrogate is not UTF-8: refused, not a 500."""
    headers = storefront | {"content-type": "application/json"}
    for raw in ("a\\u0000b", "\\ud800", "x\\udfffy", "\\u0000"):
        for field in ("notes", "customer_id", "attr_key", "attr_value", "city"):
            body = order_body()
            marker = "@@MARKER@@"
            if field == "customer_id":
                body["customer"] = {"id": marker}
            elif field == "attr_key":
                body["attributes"] = {marker: 1}
            elif field == "attr_value":
                body["attributes"] = {"k": marker}
            elif field == "city":
                body["shipping_address"] = body["shipping_address"] | {"city": marker}
            else:
                body[field] = marker
            content = json.dumps(body).replace(marker, raw).encode()
            resp = await client.post("/v1/orders", content=content, headers=headers)
            assert_clean_problem(resp, (400, 422))
    resp = await client.get(
        "/v1/orders", params={"customer_id": "a\x00b", "channel": "w\x00"}, headers=storefront
    )
    assert_clean_problem(resp, 422)


async def test_sql_looking_query_parameters_are_data(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    admin = auth(keys["admin"])
    for value in NASTY_TEXT:
        for path, params in (
            ("/v1/orders", {"customer_id": value}),
            ("/v1/orders", {"customer_email": value}),
            ("/v1/orders", {"channel": value}),
            ("/v1/inventory/levels", {"sku": value[:64], "warehouse": value[:32]}),
            ("/v1/inventory/movements", {"sku": value[:64]}),
            ("/v1/inventory/availability", {"sku": value[:64]}),
            ("/v1/webhooks/inbox", {"external_reference": value}),
        ):
            resp = await client.get(path, params=params, headers=admin)
            if resp.status_code != 200:
                assert_clean_problem(resp, 422)
    assert await _count(engine, "stock_levels") == 2


# ---- numbers ------------------------------------------------------------------------------------

BAD_NUMBERS: dict[str, Any] = {
    # (pydantic's lax mode reads "1", true and 1.0 as 1: coercion, not a hostile number)
    "quantity": [-1, 0, 10_001, 10**30, 1.5, "1.5", None, 1e308, -(2**63)],
    "unit_price": [-1, 10**12 + 1, 10**40, 19.99, "NaN", -0.0001],
    "tax_rate_bps": [-1, 10_001, 2**63, 2**64],
}


@pytest.mark.usefixtures("nothing_stored")
async def test_negative_enormous_and_non_integer_numbers_are_422(
    client: httpx.AsyncClient, storefront: dict[str, str]
) -> None:
    for field, values in BAD_NUMBERS.items():
        for value in values:
            line = {"sku": "MUG-01", "quantity": 1, "unit_price": 1} | {field: value}
            resp = await client.post(
                "/v1/orders", json=order_body(lines=[line]), headers=storefront
            )
            assert_clean_problem(resp, 422)
    for fee in (-1, 10**12 + 1, 10**100):
        resp = await client.post(
            "/v1/orders", json=order_body(shipping_fee=fee), headers=storefront
        )
        assert_clean_problem(resp, 422)
    headers = storefront | {"content-type": "application/json"}
    for literal in ("NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1" * 5000):
        address = json.dumps(order_body()["shipping_address"])[:-1]
        address += f', "latitude": {literal}, "longitude": {literal}}}'
        content = json.dumps(order_body(shipping_address={"@": 1})).replace('{"@": 1}', address)
        resp = await client.post("/v1/orders", content=content.encode(), headers=headers)
        assert_clean_problem(resp, (400, 422), "1" * 100)


async def test_largest_valid_order_fits_its_columns(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    """250 lines of 10 000 units at the highest price and tax: totals fit (bigint), no 500."""
    admin = auth(keys["admin"])
    policy = {"allow_backorder": True}
    assert (await client.put("/v1/routing-policies/web", json=policy, headers=admin)).is_success
    # known SKUs without units (a level at 0; an unknown SKU is 422 unknown_sku): backordered
    empty = {"rows": [{"warehouse": "BER", "sku": f"BIG-{i}", "on_hand": 0} for i in range(250)]}
    assert (await client.post("/v1/inventory/bulk", json=empty, headers=admin)).is_success
    lines = [
        {"sku": f"BIG-{i}", "quantity": 10_000, "unit_price": 10**12, "tax_rate_bps": 10_000}
        for i in range(250)
    ]
    body = order_body(lines=lines, shipping_fee=10**12)
    resp = await client.post("/v1/orders", json=body, headers=admin)
    assert resp.status_code in (201, 409), resp.text[:500]
    if resp.status_code == 201:
        assert resp.json()["totals"]["total"] == 250 * 2 * 10**16 + 10**12


async def _largest_orders_possible(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    """Backorders allowed on `web`, and 500 known SKUs without units (BIG-0...BIG-499)."""
    policy = {"allow_backorder": True}
    assert (await client.put("/v1/routing-policies/web", json=policy, headers=admin)).is_success
    empty = {"rows": [{"warehouse": "BER", "sku": f"BIG-{i}", "on_hand": 0} for i in range(500)]}
    assert (await client.post("/v1/inventory/bulk", json=empty, headers=admin)).is_success


def _biggest_lines(skus: range) -> list[dict[str, Any]]:
    return [
        {"sku": f"BIG-{i}", "quantity": 10_000, "unit_price": 10**12, "tax_rate_bps": 10_000}
        for i in skus
    ]


async def test_one_customer_can_place_the_largest_order_again_and_again(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    """Each order fits its columns, but the customer's running total (for the top-customers
    report) passed 2^63 - 1 at the second one: every later order of that customer was a 500,
    and so were the reports summing the day's revenue."""
    admin = auth(keys["admin"])
    await _largest_orders_possible(client, admin)
    body = order_body(lines=_biggest_lines(range(250)), shipping_fee=10**12)
    for _ in range(3):
        resp = await client.post("/v1/orders", json=body, headers=admin)
        assert resp.status_code == 201, resp.text[:500]
    # and the reports summing them answer (their figures stop at the largest bigint)
    for report in ("top-customers", "top-products", "top-channels", "top-countries", "daily"):
        resp = await client.get(f"/v1/reports/{report}", headers=admin)
        assert resp.status_code == 200, (report, resp.text[:500])


async def test_an_edit_cannot_grow_an_order_past_the_line_limit(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    """An order has at most 250 lines when placed, and so after an edit: adding 250 more at
    the highest price made totals past 2^63 - 1 (a 500 from the database, even for a preview);
    it is 422 `too_many_lines` and nothing changes."""
    admin = auth(keys["admin"])
    await _largest_orders_possible(client, admin)
    body = order_body(lines=_biggest_lines(range(250)), shipping_fee=10**12)
    order = (await client.post("/v1/orders", json=body, headers=admin)).json()
    edit = {"expected_version": order["version"], "add_lines": _biggest_lines(range(250, 500))}
    for dry_run in ("true", "false"):
        resp = await client.post(
            f"/v1/orders/{order['id']}/edits",
            json=edit,
            params={"dry_run": dry_run},
            headers=admin,
        )
        assert assert_clean_problem(resp, 422)["code"] == "too_many_lines"
    after = (await client.get(f"/v1/orders/{order['id']}", headers=admin)).json()
    assert after["version"] == order["version"] and len(after["lines"]) == 250
    await assert_stock_invariants(engine)


async def test_stock_cannot_be_pushed_past_its_column(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    """Receiving the maximum again and again ends in a 4xx, not an integer overflow 500."""
    admin = auth(keys["admin"])
    adj = {"warehouse": "BER", "sku": "HUGE-1", "type": "receive", "quantity": 100_000_000}
    statuses = []
    for _ in range(25):
        resp = await client.post("/v1/inventory/adjustments", json=adj, headers=admin)
        statuses.append(resp.status_code)
        if resp.status_code != 201:
            assert_clean_problem(resp, (409, 422))
            break
    assert statuses[-1] != 201, "2.5 billion units accepted"
    await assert_stock_invariants(engine)


CODE_PATHS = (  # operations whose only parameter is a warehouse, store or supplier code
    ("GET", "/v1/warehouses/{code}"),
    ("GET", "/v1/warehouses/{code}/calendar"),
    ("DELETE", "/v1/warehouses/{code}/calendar"),
    ("GET", "/v1/suppliers/{code}"),
    ("GET", "/v1/stores/{code}/policy"),
    ("DELETE", "/v1/reorder-policies/{warehouse}"),
)


async def test_nul_in_a_code_in_the_path_is_a_documented_422(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    """A NUL in a path code cannot be sent to Postgres: 422, and the operation documents it
    (it used to be an undocumented 422 ``invalid_character`` from the database)."""
    from oms.cli import openapi_document

    paths = openapi_document()["paths"]
    admin = auth(keys["admin"])
    for method, template in CODE_PATHS:
        path = template.replace("{code}", "A%00B").replace("{warehouse}", "A%00B")
        resp = await client.request(method, path, headers=admin)
        assert_clean_problem(resp, 422)
        assert "422" in paths[template][method.lower()]["responses"], (method, template)


# ---- timestamps ---------------------------------------------------------------------------------

# years at the ends of what Python and Postgres hold, with offsets that push them past the end
EXTREME_TIMES = (
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59.999999Z",
    "9999-12-31T23:00:00-01:00",
    "9999-12-31T23:59:59-14:00",
)
TIME_QUERIES = (
    ("/v1/orders", "created_from"),
    ("/v1/orders", "created_to"),
    ("/v1/inventory/levels", "as_of"),
    ("/v1/webhooks/inbox", "received_from"),
    ("/v1/reports/daily", "from"),
    ("/v1/reports/top-products.csv", "to"),
    ("/v1/waves", "before"),
)


async def test_extreme_timestamps_in_queries_are_422(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    """Every timestamp query parameter refuses years 1 and 9999 (and offsets past them) with a
    422, not a 500 from the driver or from Python's arithmetic."""
    admin = auth(keys["admin"])
    for path, name in TIME_QUERIES:
        for value in EXTREME_TIMES:
            resp = await client.get(path, params={name: value}, headers=admin)
            problem = assert_clean_problem(resp, 422)
            assert problem["code"] == "validation_error", (path, name, value)


async def test_extreme_timestamps_in_a_simulation_window_are_422(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    admin = auth(keys["admin"])
    proposed = {"max_shipments": 2, "waves": False}
    for start, end in (
        (EXTREME_TIMES[0], "2026-01-01T00:00:00Z"),
        (EXTREME_TIMES[1], EXTREME_TIMES[4]),
        ("2026-01-01T00:00:00Z", EXTREME_TIMES[3]),
    ):
        body = {"channel": "web", "from": start, "to": end, "proposed": proposed}
        resp = await client.post("/v1/routing/simulations", json=body, headers=admin)
        assert_clean_problem(resp, 422)
    assert await _count(engine, "orders") == 0


# ---- content types ------------------------------------------------------------------------------


@pytest.mark.usefixtures("nothing_stored")
async def test_wrong_content_types_are_415_or_400(
    client: httpx.AsyncClient, storefront: dict[str, str]
) -> None:
    good = json.dumps(order_body()).encode()
    for content_type in (
        "text/plain",
        "application/xml",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/octet-stream",
        "",
    ):
        headers = storefront | ({"content-type": content_type} if content_type else {})
        resp = await client.post("/v1/orders", content=good, headers=headers)
        problem = assert_clean_problem(resp, 415)
        assert problem["code"] == "unsupported_media_type"
    latin1 = (
        json.dumps(order_body(notes="Zoë")).encode().replace(b"Zo\\u00eb", "Zoë".encode("latin-1"))
    )
    resp = await client.post(
        "/v1/orders",
        content=latin1,
        headers=storefront | {"content-type": "application/json; charset=latin-1"},
    )
    assert assert_clean_problem(resp, 400)["code"] == "malformed_json"
    for garbage in (b"\xff\xfe\x00", b"null", b"[]", b'"order"', b"{}", b"1e999999"):
        resp = await client.post(
            "/v1/orders", content=garbage, headers=storefront | {"content-type": "application/json"}
        )
        assert_clean_problem(resp, (400, 422))


async def test_hostile_request_ids_and_keys_are_not_reflected(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    """A request id that is not a short token is replaced; a hostile key is just 401."""
    for rid in ("a\r\nSet-Cookie: x=1", "x" * 500, "<script>", "ok-id-1"):
        resp = await client.get("/v1/orders", headers=auth(keys["admin"]) | {"X-Request-ID": rid})
        assert resp.status_code == 200
        assert (
            resp.headers["x-request-id"] == rid
            if rid == "ok-id-1"
            else resp.headers["x-request-id"] != rid
        )
    for token in (
        "oms_' OR 1=1 --_x",
        "oms_" + "a" * 10_000 + "_b",
        "oms__",
        "oms_a_b_c",
        "oms_\xe9_x",
    ):
        resp = await client.get("/v1/orders", headers={"X-API-Key": token.encode("latin-1")})
        assert_clean_problem(resp, 401, token)
