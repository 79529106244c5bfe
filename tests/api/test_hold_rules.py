"""Hold rules: CRUD, and orders placed on a channel held by the rules that match them."""

from __future__ import annotations

import httpx

from tests.helpers import auth, order_body

BANK_ABROAD = {
    "reason": "fraud_review",
    "note": "big bank transfer abroad",
    "payment_methods": ["bank_transfer"],
    "min_totals": {"EUR": 5000},
    "countries": ["AT"],
}


def _abroad(**changes: object) -> dict[str, object]:
    body = order_body(**{"payment_method": "bank_transfer", **changes})
    body["shipping_address"] = {**body["shipping_address"], "country": "AT", "city": "Wien"}
    body["shipping_address"].pop("postal_code")
    return body


async def test_rules_hold_matching_orders_and_name_themselves(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    admin = auth(keys["admin"])
    resp = await client.put("/v1/hold-rules/web/big-abroad", json=BANK_ABROAD, headers=admin)
    assert resp.status_code == 201, resp.text
    again = await client.put("/v1/hold-rules/web/big-abroad", json=BANK_ABROAD, headers=admin)
    assert again.status_code == 200 and again.json()["id"] == resp.json()["id"]
    listed = (await client.get("/v1/hold-rules?channel=web", headers=admin)).json()
    assert [r["name"] for r in listed] == ["big-abroad"]

    held = await client.post("/v1/orders", json=_abroad(), headers=auth(keys["storefront"]))
    assert held.status_code == 201, held.text
    order = held.json()
    assert [(h["reason"], h["rule"], h["active"]) for h in order["holds"]] == [
        ("fraud_review", "big-abroad", True)
    ]
    read = (await client.get(f"/v1/orders/{order['id']}", headers=admin)).json()
    assert read["holds"] == order["holds"]
    history = (await client.get(f"/v1/orders/{order['id']}/history", headers=admin)).json()
    assert [e["kind"] for e in history] == ["transition", "hold_placed"]

    # one condition fails: not held (card; at home; small total; another channel)
    for body in (
        _abroad(payment_method="card"),
        order_body(payment_method="bank_transfer"),
        _abroad(lines=[{"sku": "MUG-01", "quantity": 1, "unit_price": 100}], shipping_fee=0),
        _abroad(channel="pos"),
    ):
        resp = await client.post("/v1/orders", json=body, headers=admin)
        assert resp.status_code == 201, resp.text
        assert resp.json()["holds"] == []

    # the same through an idempotent placement: the stored answer shows the hold
    hdr = {**auth(keys["storefront"]), "Idempotency-Key": "k-1"}
    first = await client.post("/v1/orders", json=_abroad(), headers=hdr)
    replay = await client.post("/v1/orders", json=_abroad(), headers=hdr)
    assert first.json()["holds"][0]["rule"] == "big-abroad"
    assert replay.json() == first.json()

    assert (await client.delete("/v1/hold-rules/web/big-abroad", headers=admin)).status_code == 204
    resp = await client.post("/v1/orders", json=_abroad(), headers=admin)
    assert resp.json()["holds"] == []
    gone = await client.get("/v1/hold-rules/web/big-abroad", headers=admin)
    assert gone.status_code == 404 and gone.json()["code"] == "hold_rule_not_found"


async def test_bad_rules_are_refused(client: httpx.AsyncClient, keys: dict[str, str]) -> None:
    admin = auth(keys["admin"])
    for body in (
        {"reason": "fraud_review"},  # no condition
        {"payment_methods": ["barter"]},
        {"min_totals": {"EURO": 1}},
        {"countries": ["Germany"]},
        {"risk_levels": ["extreme"]},
        {"countries": ["DE"], "surprise": 1},
    ):
        resp = await client.put("/v1/hold-rules/web/r1", json=body, headers=admin)
        assert resp.status_code == 422, (body, resp.text)
    bad_name = await client.put("/v1/hold-rules/web/Bad Name", json=BANK_ABROAD, headers=admin)
    assert bad_name.status_code == 422
    sf = await client.put(
        "/v1/hold-rules/web/r1", json=BANK_ABROAD, headers=auth(keys["storefront"])
    )
    assert sf.status_code == 403
    assert (await client.get("/v1/hold-rules", headers=admin)).json() == []
