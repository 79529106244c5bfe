"""ISO 4217 currency and ISO 3166-1 country code validation (data from pycountry)."""

from __future__ import annotations

from functools import lru_cache

import pycountry


@lru_cache(maxsize=1)
def _currencies() -> frozenset[str]:
    return frozenset(c.alpha_3 for c in pycountry.currencies)


@lru_cache(maxsize=1)
def _countries() -> frozenset[str]:
    return frozenset(c.alpha_2 for c in pycountry.countries)


def is_currency(code: str) -> bool:
    return code in _currencies()


def is_country(code: str) -> bool:
    return code in _countries()


def normalize_currency(value: str) -> str:
    code = value.strip().upper()
    if not is_currency(code):
        raise ValueError(f"'{value}' is not an ISO 4217 currency code")
    return code


def normalize_country(value: str) -> str:
    code = value.strip().upper()
    if not is_country(code):
        raise ValueError(f"'{value}' is not an ISO 3166-1 alpha-2 country code")
    return code
