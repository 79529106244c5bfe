"""Concurrent transitions on one order: they never both win from the same state; losers get 409."""

from __future__ import annotations

import asyncio

import httpx

from tests.helpers import auth, order_body


async def _place(client: httpx.AsyncClient, keys: dict[str, str]) -> str:
    resp = await client.post("/v1/orders", json=order_body(), headers=auth(keys["storefront"]))
    return str(resp.json()["id"])


async def test_same_transition_concurrently_wins_once(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    order_id = await _place(client, keys)
    url = f"/v1/orders/{order_id}/transitions"
    responses = await asyncio.gather(
        *[client.post(url, json={"to": "paid"}, headers=auth(keys["admin"])) for _ in range(20)]
    )
    codes = [r.status_code for r in responses]
    assert codes.count(200) == 1, codes
    assert codes.count(409) == 19, codes
    history = (
        await client.get(f"/v1/orders/{order_id}/history", headers=auth(keys["admin"]))
    ).json()
    assert [h["to_status"] for h in history] == ["placed", "paid"]


async def test_competing_transitions_keep_a_consistent_history(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    for _ in range(5):
        order_id = await _place(client, keys)
        url = f"/v1/orders/{order_id}/transitions"
        bodies = [{"to": "paid"}, {"to": "cancelled"}] * 10
        responses = await asyncio.gather(
            *[client.post(url, json=b, headers=auth(keys["admin"])) for b in bodies]
        )
        codes = [r.status_code for r in responses]
        assert set(codes) <= {200, 409}, codes
        assert {r.json()["code"] for r in responses if r.status_code == 409} <= {
            "illegal_transition",
            "concurrent_modification",
        }
        history = (
            await client.get(f"/v1/orders/{order_id}/history", headers=auth(keys["admin"]))
        ).json()
        # every success is one history entry, and each starts where the previous one ended
        assert len(history) - 1 == codes.count(200)
        for before, after in zip(history, history[1:], strict=False):
            assert after["from_status"] == before["to_status"]
        final = (await client.get(f"/v1/orders/{order_id}", headers=auth(keys["admin"]))).json()
        assert final["status"] == history[-1]["to_status"]
        assert final["status"] in {"paid", "cancelled"}
        assert final["version"] == len(history)
