"""Decimal amounts from platform payloads -> integer minor units, by ISO 4217 exponent.

Platforms send money as strings ("19.99") or JSON numbers (WooCommerce's line ``price``). Bodies
are parsed with ``parse_float=Decimal`` so no amount ever passes through a binary float.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

# ISO 4217 minor-unit exponents that differ from 2 (currencies in active use).
_EXPONENT: dict[str, int] = {
    **dict.fromkeys(
        "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF".split(), 0
    ),
    **dict.fromkeys("BHD IQD JOD KWD LYD OMR TND".split(), 3),
    **dict.fromkeys("CLF UYW".split(), 4),
}


MAX_DIGITS = 30
"""Digits before the point that a number from a payload may have (1e30 at most): more is no
amount, quantity or rate, and turning ``1e2000000`` into an integer would take minutes of CPU."""


class AmountError(ValueError):
    """An amount that is not a finite decimal or has more decimals than its currency allows."""


def exponent(currency: str) -> int:
    """Number of decimals of ``currency`` (2 for most)."""
    return _EXPONENT.get(currency.upper(), 2)


def to_decimal(value: Any) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise AmountError(f"{value!r} is not an amount")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int | str):
        try:
            result = Decimal(str(value).strip())
        except InvalidOperation as exc:
            raise AmountError(f"{value!r} is not an amount") from exc
    elif isinstance(value, float):  # never produced by our parser; exact repr if it happens
        result = Decimal(repr(value))
    else:
        raise AmountError(f"{value!r} is not an amount")
    if not result.is_finite():
        raise AmountError(f"{value!r} is not a finite amount")
    if result.adjusted() >= MAX_DIGITS:
        raise AmountError(f"{str(value)[:40]!r} is out of range")
    return result


def to_minor(value: Any, currency: str) -> int:
    """``"19.99"`` EUR -> 1999; ``"1000"`` JPY -> 1000; ``"19.999"`` EUR -> AmountError."""
    scaled = to_decimal(value).scaleb(exponent(currency))
    if scaled != scaled.to_integral_value():
        raise AmountError(f"{value!r} has more decimals than {currency} allows")
    return int(scaled)
