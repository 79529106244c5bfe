"""Hold rules match an order when every condition they set holds (no database)."""

from __future__ import annotations

from oms.orders.hold_rules import HoldRuleView, matching

FACTS = {
    "payment_method": "bank_transfer",
    "currency": "EUR",
    "total": 50_000,
    "country": "AT",
    "risk_level": None,
}


def _rule(name: str, **conditions: object) -> HoldRuleView:
    base: dict[str, object] = {
        "payment_methods": None,
        "min_totals": None,
        "countries": None,
        "risk_levels": None,
    }
    return HoldRuleView(name=name, reason="fraud_review", note=None, **{**base, **conditions})  # type: ignore[arg-type]


def test_every_set_condition_must_hold() -> None:
    rules = [
        _rule(
            "all", payment_methods=("bank_transfer",), min_totals={"EUR": 50_000}, countries=("AT",)
        ),
        _rule("threshold-not-reached", min_totals={"EUR": 50_001}),
        _rule("other-currency-only", min_totals={"USD": 1}),
        _rule("card", payment_methods=("card",)),
        _rule("country", countries=("DE", "AT")),
        _rule("risky", risk_levels=("high",)),
    ]
    assert [r.name for r in matching(rules, **FACTS)] == ["all", "country"]  # type: ignore[arg-type]
    high = {**FACTS, "risk_level": "high"}
    assert [r.name for r in matching(rules, **high)] == ["all", "country", "risky"]  # type: ignore[arg-type]
