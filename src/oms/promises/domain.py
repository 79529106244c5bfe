"""Delivery promises, pure: when a shipment can leave its warehouse and when it arrives.

Standard library only (``zoneinfo`` for the warehouses' time zones). The rules:

* A warehouse works on its **working days** (ISO weekdays, 1 = Monday) except its
  **holidays**, in its own IANA **time zone**.
* An order that reaches the warehouse on a working day before its daily **cut-off** (local
  time) is handled from that day; after the cut-off, or on a day off, from the next working
  day. **Handling time** is counted in working days from there: 0 ships the same day, 1 the
  next working day, and so on. That day is the **earliest ship date**.
* Units that are not on hand (a backorder) wait for incoming supply: from its **expected
  date** (the first working day on or after it) handling time is counted the same way, and
  never earlier than an order placed now would ship.
* A shipment must leave by the end of its ship date, local time (``ship_by``, an instant).
* **Transit** is a number of days, minimum and maximum, by destination country and distance
  band (an admin's table; ``*`` for any country): counted in carrier days, Monday to Friday,
  after the ship date. The delivery window is [ship date + min, ship date + max].
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

ANY_COUNTRY = "*"
"""A transit row for every destination country without a row of its own."""

CARRIER_DAYS = frozenset({1, 2, 3, 4, 5})
"""Days on which parcels travel and are delivered (ISO weekdays): Monday to Friday."""

MAX_SEARCH_DAYS = 3 * 366
"""How far a date search looks before giving up (a calendar closed for years)."""


class CalendarError(ValueError):
    """A calendar that cannot promise anything (no working day, unknown time zone...)."""


@cache
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones())


def check_timezone(name: str) -> ZoneInfo:
    """The IANA zone called ``name``; :class:`CalendarError` when there is none (only names
    of the time zone database: never a path, a directory or a file of another kind)."""
    if name not in _zone_names():
        raise CalendarError(f"unknown time zone '{name}'")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:  # pragma: no cover
        raise CalendarError(f"unknown time zone '{name}'") from exc


@dataclass(frozen=True, slots=True)
class WarehouseCalendar:
    """When a warehouse works and how long it takes to hand a parcel to the carrier."""

    timezone: str = "UTC"
    cutoff: time = time(14, 0)
    handling_days: int = 1
    working_days: frozenset[int] = frozenset({1, 2, 3, 4, 5})
    holidays: frozenset[date] = frozenset()

    def __post_init__(self) -> None:
        check_timezone(self.timezone)
        if not self.working_days or not self.working_days <= {1, 2, 3, 4, 5, 6, 7}:
            raise CalendarError("working days are ISO weekdays 1-7, at least one")
        if self.handling_days < 0:
            raise CalendarError("handling days cannot be negative")
        if self.cutoff.tzinfo is not None:
            raise CalendarError("the cut-off is a local time, without a zone")

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def is_working_day(self, day: date) -> bool:
        return day.isoweekday() in self.working_days and day not in self.holidays


DEFAULT_CALENDAR = WarehouseCalendar()
"""A warehouse without a calendar of its own: Monday to Friday, cut-off 14:00 UTC, one
working day of handling."""


@dataclass(frozen=True, slots=True)
class TransitTime:
    """Carrier days from the ship date to delivery, at least and at most."""

    min_days: int
    max_days: int

    def __post_init__(self) -> None:
        if not 0 <= self.min_days <= self.max_days:
            raise CalendarError("transit days: 0 <= min_days <= max_days")


@dataclass(frozen=True, slots=True)
class TransitRow:
    """One row of the transit table: to ``country`` (or ``*``), from distance band
    ``from_band`` up (until the next row's band)."""

    country: str
    from_band: int
    transit: TransitTime


@dataclass(frozen=True, slots=True)
class Promise:
    """What a shipment (or a line) is promised."""

    ship_date: date
    ship_by: datetime
    """The end of the ship date in the warehouse's zone (an instant, in UTC)."""
    deliver_from: date | None = None
    deliver_by: date | None = None
    """The delivery window; ``None`` when no transit time covers the destination."""
    source: str = "stock"
    """``stock`` (units on hand) or ``incoming`` (a backorder waiting for supply)."""
    supply_expected_on: date | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "ship_date": self.ship_date.isoformat(),
            "ship_by": self.ship_by.isoformat(),
            "deliver_from": None if self.deliver_from is None else self.deliver_from.isoformat(),
            "deliver_by": None if self.deliver_by is None else self.deliver_by.isoformat(),
            "source": self.source,
            "supply_expected_on": (
                None if self.supply_expected_on is None else self.supply_expected_on.isoformat()
            ),
        }


def next_working_day(cal: WarehouseCalendar, day: date, *, include: bool) -> date:
    """The first working day after ``day`` (or ``day`` itself when ``include`` and it is one)."""
    d = day if include else day + timedelta(days=1)
    for _ in range(MAX_SEARCH_DAYS):
        if cal.is_working_day(d):
            return d
        d += timedelta(days=1)
    raise CalendarError(f"no working day within {MAX_SEARCH_DAYS} days of {day}")


def add_working_days(cal: WarehouseCalendar, day: date, n: int) -> date:
    """``n`` working days after the working day ``day``."""
    d = day
    for _ in range(n):
        d = next_working_day(cal, d, include=False)
    return d


def add_carrier_days(day: date, n: int, days: frozenset[int] = CARRIER_DAYS) -> date:
    """``n`` carrier days after ``day`` (``day`` itself need not be one)."""
    d = day
    for _ in range(n):
        d += timedelta(days=1)
        while d.isoweekday() not in days:
            d += timedelta(days=1)
    return d


def handling_starts(cal: WarehouseCalendar, at: datetime) -> date:
    """The local working day from which an order reaching the warehouse at ``at`` is handled:
    today if it is a working day and ``at`` is before the cut-off, else the next working day."""
    if at.tzinfo is None:
        raise ValueError("at must be timezone-aware")
    local = at.astimezone(cal.zone)
    today = local.date()
    if cal.is_working_day(today) and local.time().replace(tzinfo=None) < cal.cutoff:
        return today
    return next_working_day(cal, today, include=False)


def earliest_ship_date(cal: WarehouseCalendar, at: datetime) -> date:
    """The earliest ship date of units on hand for an order placed at ``at``."""
    return add_working_days(cal, handling_starts(cal, at), cal.handling_days)


def ship_date_from_supply(cal: WarehouseCalendar, at: datetime, expected_on: date) -> date:
    """The earliest ship date of units expected to arrive on ``expected_on`` (local date):
    handling starts on the first working day on or after their arrival, and never before an
    order placed at ``at`` would be handled."""
    start = max(handling_starts(cal, at), next_working_day(cal, expected_on, include=True))
    return add_working_days(cal, start, cal.handling_days)


def end_of_day(cal: WarehouseCalendar, day: date) -> datetime:
    """The instant the local ``day`` ends in the warehouse's zone (the midnight after it), in
    UTC. Where that midnight does not exist (a DST change at 00:00, e.g. America/Santiago), the
    day ends at the jump: the offset before it applies (``fold=0``)."""
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=cal.zone).astimezone(UTC)


def transit_for(rows: Iterable[TransitRow], *, country: str, band: int) -> TransitTime | None:
    """The transit time to ``country`` from distance ``band``: the country's own rows before
    the ``*`` rows, and among them the one with the highest ``from_band`` not above ``band``."""
    best: dict[str, TransitRow] = {}
    for row in rows:
        if row.country not in (country, ANY_COUNTRY) or row.from_band > band:
            continue
        current = best.get(row.country)
        if current is None or row.from_band > current.from_band:
            best[row.country] = row
    chosen = best.get(country) or best.get(ANY_COUNTRY)
    return None if chosen is None else chosen.transit


def promise(
    cal: WarehouseCalendar,
    *,
    at: datetime,
    transit: TransitTime | None,
    expected_on: date | None = None,
) -> Promise:
    """The promise for units shipped from ``cal``'s warehouse for an order placed at ``at``:
    from stock on hand, or (``expected_on``) from incoming supply expected that day."""
    if expected_on is None:
        ship = earliest_ship_date(cal, at)
    else:
        ship = ship_date_from_supply(cal, at, expected_on)
    deliver_from = deliver_by = None
    if transit is not None:
        deliver_from = add_carrier_days(ship, transit.min_days)
        deliver_by = add_carrier_days(ship, transit.max_days)
    return Promise(
        ship_date=ship,
        ship_by=end_of_day(cal, ship),
        deliver_from=deliver_from,
        deliver_by=deliver_by,
        source="stock" if expected_on is None else "incoming",
        supply_expected_on=expected_on,
    )


def latest(promises: Sequence[Promise]) -> Promise | None:
    """The promise that arrives last (a line or order split over several shipments arrives
    when its last part does): by latest delivery date, then ship date."""
    if not promises:
        return None
    return max(
        promises,
        key=lambda p: (p.deliver_by or date.max, p.ship_date, p.ship_by),
    )


@dataclass(frozen=True, slots=True)
class Supply:
    """Units of a SKU expected at a warehouse on a date (a sent purchase order's line...)."""

    warehouse: str
    quantity: int
    expected_on: date


@dataclass(frozen=True, slots=True)
class SupplyPick:
    """The incoming supply a backorder waits for: the arrival that completes it."""

    warehouse: str
    expected_on: date


def supply_for(supplies: Sequence[Supply], *, missing: int, ahead: int = 0) -> SupplyPick | None:
    """The arrival that completes ``missing`` units after ``ahead`` units already promised to
    orders waiting before this one (first in, first out over arrivals by date); ``None`` when
    the supply expected is not enough."""
    need = ahead + missing
    got = 0
    for s in sorted(supplies, key=lambda s: (s.expected_on, s.warehouse)):
        got += s.quantity
        if got >= need:
            return SupplyPick(warehouse=s.warehouse, expected_on=s.expected_on)
    return None


@dataclass(frozen=True, slots=True)
class PromiseTables:
    """Every warehouse's calendar (by warehouse code) and the transit table: what promises are
    computed from (a plain value, cached per process)."""

    calendars: dict[str, WarehouseCalendar] = field(default_factory=dict)
    transit: tuple[TransitRow, ...] = ()

    def calendar(self, warehouse: str) -> WarehouseCalendar:
        """The calendar of the warehouse with this code (the default when it has none)."""
        return self.calendars.get(warehouse, DEFAULT_CALENDAR)

    def transit_for(self, *, country: str, band: int) -> TransitTime | None:
        return transit_for(self.transit, country=country, band=band)


def promise_shipments(
    tables: PromiseTables,
    *,
    at: datetime,
    country: str,
    bands: dict[str, int],
    pickup: bool = False,
) -> dict[str, Promise]:
    """The promise of each shipment of a plan, by warehouse code (``bands``: each shipping
    warehouse's distance band to the destination). Click and collect (``pickup``): ready for
    collection on the ship date."""
    out: dict[str, Promise] = {}
    for code, band in bands.items():
        transit = TransitTime(0, 0) if pickup else tables.transit_for(country=country, band=band)
        out[code] = promise(tables.calendar(code), at=at, transit=transit)
    return out


def promise_backorder(
    tables: PromiseTables,
    *,
    at: datetime,
    country: str,
    supplies: Sequence[Supply],
    bands: dict[str, int],
    missing: int,
    ahead: int = 0,
    pickup: bool = False,
) -> Promise | None:
    """The promise of ``missing`` backordered units from incoming supply (``supplies``, by
    warehouse code; ``ahead``: units orders placed before wait for): shipped from the warehouse
    whose arrival completes them. ``None`` when the supply expected is not enough."""
    pick = supply_for(supplies, missing=missing, ahead=ahead)
    if pick is None:
        return None
    band = bands.get(pick.warehouse, 0)
    transit = TransitTime(0, 0) if pickup else tables.transit_for(country=country, band=band)
    return promise(
        tables.calendar(pick.warehouse), at=at, transit=transit, expected_on=pick.expected_on
    )
