"""Date-times that clients send (query parameters and bodies): ISO 8601 text only, in a sane
range, with a UTC offset.

A number is not read as a Unix time, and a year outside 1970-9000 is a 422: the database and
Python's own arithmetic (a UTC offset added to year 1 or 9999) would otherwise fail with a 500.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, AwareDatetime, BeforeValidator

MIN_YEAR = 1970
MAX_YEAR = 9000
RULE = f"ISO 8601 with a UTC offset (`Z` or `+01:00`), years {MIN_YEAR}-{MAX_YEAR}"
"""What a :data:`Timestamp` accepts, to quote in a parameter's or field's description."""

D = TypeVar("D", date, datetime)

_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}([Tt ]|$)")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _iso_text(value: Any) -> Any:
    """Only ISO 8601 text (or a datetime from Python code): no Unix times, no booleans."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and _ISO.match(value):
        return value
    raise ValueError("expected an ISO 8601 date-time such as 2025-01-31T12:00:00Z")


def _iso_date_text(value: Any) -> Any:
    """Only an ISO 8601 calendar date (or a date from Python code): no Unix times."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str) and _ISO_DATE.match(value):
        return value
    raise ValueError("expected an ISO 8601 date such as 2025-01-31")


def in_range(value: D) -> D:
    """``value`` unchanged if its year is within the supported range (so that moving it to UTC,
    or a month either way, stays within what Python and Postgres can represent)."""
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise ValueError(f"must be between the years {MIN_YEAR} and {MAX_YEAR}")
    return value


Timestamp = Annotated[AwareDatetime, BeforeValidator(_iso_text), AfterValidator(in_range)]
"""A point in time a client sends: ISO 8601 text with a UTC offset, years 1970-9000."""

LocalTimestamp = Annotated[datetime, BeforeValidator(_iso_text), AfterValidator(in_range)]
"""Like :data:`Timestamp`, but the UTC offset may be left out (the caller picks a zone)."""

Day = Annotated[date, BeforeValidator(_iso_date_text), AfterValidator(in_range)]
"""A calendar day a client sends: ``YYYY-MM-DD``, years 1970-9000."""
