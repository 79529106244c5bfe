"""Delivery promises, pure: cut-offs, working days, holidays, time zones (around midnight and
the DST changes), transit in carrier days, incoming supply, the transit table's lookup."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest

from oms.promises.domain import (
    CalendarError,
    Supply,
    TransitRow,
    TransitTime,
    WarehouseCalendar,
    add_carrier_days,
    earliest_ship_date,
    end_of_day,
    handling_starts,
    latest,
    promise,
    ship_date_from_supply,
    supply_for,
    transit_for,
)

BERLIN = WarehouseCalendar(timezone="Europe/Berlin", cutoff=time(14, 0), handling_days=0)
NEW_YORK = WarehouseCalendar(timezone="America/New_York", cutoff=time(15, 0), handling_days=0)
TOKYO = WarehouseCalendar(timezone="Asia/Tokyo", cutoff=time(12, 0), handling_days=0)

# 2026-03-02 is a Monday
MON, TUE, WED, THU, FRI, SAT, SUN = (date(2026, 3, d) for d in range(2, 9))


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_before_the_cutoff_ships_today_after_it_the_next_working_day() -> None:
    # Berlin is UTC+1 in March before the 29th: 12:59 UTC = 13:59 local, 13:00 UTC = 14:00
    assert earliest_ship_date(BERLIN, utc(2026, 3, 2, 12, 59)) == MON
    assert earliest_ship_date(BERLIN, utc(2026, 3, 2, 13, 0)) == TUE  # at the cut-off: too late


def test_friday_after_cutoff_and_the_weekend_ship_on_monday() -> None:
    assert earliest_ship_date(BERLIN, utc(2026, 3, 6, 15, 0)) == date(2026, 3, 9)
    assert earliest_ship_date(BERLIN, utc(2026, 3, 7, 9, 0)) == date(2026, 3, 9)
    assert earliest_ship_date(BERLIN, utc(2026, 3, 8, 9, 0)) == date(2026, 3, 9)


def test_handling_days_count_working_days_only() -> None:
    two = WarehouseCalendar(timezone="Europe/Berlin", handling_days=2)
    assert earliest_ship_date(two, utc(2026, 3, 5, 8, 0)) == date(2026, 3, 9)  # Thu +2 = Mon
    assert earliest_ship_date(two, utc(2026, 3, 5, 14, 0)) == date(2026, 3, 10)  # from Fri


def test_holidays_are_skipped_for_the_start_and_the_handling() -> None:
    cal = WarehouseCalendar(
        timezone="Europe/Berlin", handling_days=1, holidays=frozenset({TUE, WED})
    )
    assert earliest_ship_date(cal, utc(2026, 3, 2, 8, 0)) == THU  # Mon + 1 working day
    assert earliest_ship_date(cal, utc(2026, 3, 3, 8, 0)) == FRI  # starts Thu, +1


def test_saturday_working_warehouse() -> None:
    cal = WarehouseCalendar(
        timezone="Europe/Berlin", handling_days=0, working_days=frozenset({1, 2, 3, 4, 5, 6})
    )
    assert earliest_ship_date(cal, utc(2026, 3, 7, 9, 0)) == SAT
    assert earliest_ship_date(cal, utc(2026, 3, 7, 14, 0)) == date(2026, 3, 9)


def test_the_warehouse_zone_decides_the_day_not_utc_around_midnight() -> None:
    # 23:30 UTC on Monday is already Tuesday 08:30 in Tokyo: before Tokyo's cut-off -> Tuesday
    assert earliest_ship_date(TOKYO, utc(2026, 3, 2, 23, 30)) == TUE
    # 03:30 UTC on Tuesday is still Monday 22:30 in New York: after its cut-off -> Tuesday
    assert earliest_ship_date(NEW_YORK, utc(2026, 3, 3, 3, 30)) == TUE
    # 19:59 UTC Monday = 14:59 New York: before its 15:00 cut-off -> Monday
    assert earliest_ship_date(NEW_YORK, utc(2026, 3, 2, 19, 59)) == MON
    # and the same instants in UTC itself would say otherwise
    plain = WarehouseCalendar(timezone="UTC", cutoff=time(15, 0), handling_days=0)
    assert earliest_ship_date(plain, utc(2026, 3, 2, 19, 59)) == TUE


def test_a_friday_evening_in_new_york_is_saturday_in_utc() -> None:
    # Friday 21:00 New York (EST, UTC-5) = Saturday 02:00 UTC: past the cut-off -> Monday
    assert earliest_ship_date(NEW_YORK, utc(2026, 3, 7, 2, 0)) == date(2026, 3, 9)
    # Friday 10:00 New York = Friday 15:00 UTC: before the cut-off there -> Friday
    assert earliest_ship_date(NEW_YORK, utc(2026, 3, 6, 15, 0)) == FRI


def test_cutoff_across_the_spring_dst_change() -> None:
    # Europe/Berlin moves to UTC+2 on Sunday 2026-03-29. Monday 30th: cut-off 14:00 = 12:00 UTC
    assert earliest_ship_date(BERLIN, utc(2026, 3, 30, 11, 59)) == date(2026, 3, 30)
    assert earliest_ship_date(BERLIN, utc(2026, 3, 30, 12, 0)) == date(2026, 3, 31)
    # the Friday before, still UTC+1: 14:00 local = 13:00 UTC
    assert earliest_ship_date(BERLIN, utc(2026, 3, 27, 12, 30)) == date(2026, 3, 27)


def test_cutoff_across_the_autumn_dst_change_in_new_york() -> None:
    # America/New_York returns to UTC-5 on Sunday 2026-11-01. Monday 2nd: 15:00 = 20:00 UTC
    assert earliest_ship_date(NEW_YORK, utc(2026, 11, 2, 19, 59)) == date(2026, 11, 2)
    assert earliest_ship_date(NEW_YORK, utc(2026, 11, 2, 20, 0)) == date(2026, 11, 3)
    # the Friday before, UTC-4: 15:00 = 19:00 UTC
    assert earliest_ship_date(NEW_YORK, utc(2026, 10, 30, 19, 0)) == date(2026, 11, 2)


def test_ship_by_is_the_end_of_the_local_ship_date() -> None:
    assert end_of_day(BERLIN, MON) == utc(2026, 3, 2, 23, 0)  # UTC+1
    assert end_of_day(BERLIN, date(2026, 3, 28)) == utc(2026, 3, 28, 23, 0)  # before the change
    assert end_of_day(BERLIN, date(2026, 3, 29)) == utc(2026, 3, 29, 22, 0)  # UTC+2 after it
    assert end_of_day(TOKYO, MON) == utc(2026, 3, 2, 15, 0)
    assert end_of_day(NEW_YORK, MON) == utc(2026, 3, 3, 5, 0)


def test_ship_by_when_the_local_midnight_does_not_exist() -> None:
    # America/Santiago skips 2026-09-06 00:00 (24:00 on the 5th is 01:00 on the 6th): the
    # 5th ends at the jump, 04:00 UTC; and an order placed just after it is on the 6th
    santiago = WarehouseCalendar(timezone="America/Santiago", cutoff=time(12, 0), handling_days=0)
    assert end_of_day(santiago, date(2026, 9, 5)) == utc(2026, 9, 6, 4, 0)
    p = promise(santiago, at=utc(2026, 9, 5, 15, 0), transit=None)  # 11:00 local, Saturday
    assert p.ship_date == date(2026, 9, 7)  # Monday (Mon-Fri calendar)
    # from the 6th Santiago is UTC-3: 14:59 UTC is 11:59 local, 15:00 UTC the cut-off
    assert earliest_ship_date(santiago, utc(2026, 9, 7, 14, 59)) == date(2026, 9, 7)
    assert earliest_ship_date(santiago, utc(2026, 9, 7, 15, 0)) == date(2026, 9, 8)


def test_transit_counts_carrier_days_monday_to_friday() -> None:
    assert add_carrier_days(THU, 1) == FRI
    assert add_carrier_days(FRI, 1) == date(2026, 3, 9)
    assert add_carrier_days(FRI, 3) == date(2026, 3, 11)
    assert add_carrier_days(SAT, 1) == date(2026, 3, 9)
    assert add_carrier_days(MON, 0) == MON


def test_promise_window_from_stock() -> None:
    cal = WarehouseCalendar(timezone="Europe/Berlin", handling_days=1)
    p = promise(cal, at=utc(2026, 3, 5, 9, 0), transit=TransitTime(1, 3))  # Thu before cut-off
    assert p.ship_date == FRI
    assert p.ship_by == utc(2026, 3, 6, 23, 0)
    assert (p.deliver_from, p.deliver_by) == (date(2026, 3, 9), date(2026, 3, 11))
    assert p.source == "stock"
    none = promise(cal, at=utc(2026, 3, 5, 9, 0), transit=None)
    assert none.deliver_from is None and none.deliver_by is None


def test_promise_from_incoming_supply() -> None:
    cal = WarehouseCalendar(timezone="Europe/Berlin", handling_days=1)
    at = utc(2026, 3, 2, 9, 0)
    # arriving Saturday: handled from Monday the 9th, ships Tuesday the 10th
    assert ship_date_from_supply(cal, at, SAT) == date(2026, 3, 10)
    # supply "expected" in the past (late) never promises before an order placed now
    assert ship_date_from_supply(cal, at, date(2026, 2, 1)) == TUE
    p = promise(cal, at=at, transit=TransitTime(2, 2), expected_on=WED)
    assert (p.ship_date, p.deliver_by, p.source) == (THU, date(2026, 3, 9), "incoming")


def test_supply_for_a_backorder_is_first_in_first_out() -> None:
    supplies = [Supply("B", 5, date(2026, 3, 20)), Supply("A", 3, date(2026, 3, 10))]
    assert supply_for(supplies, missing=3).expected_on == date(2026, 3, 10)  # type: ignore[union-attr]
    pick = supply_for(supplies, missing=4)
    assert pick is not None and (pick.warehouse, pick.expected_on) == ("B", date(2026, 3, 20))
    # 3 units already promised to orders waiting before: the first arrival is theirs
    assert supply_for(supplies, missing=1, ahead=3).expected_on == date(2026, 3, 20)  # type: ignore[union-attr]
    assert supply_for(supplies, missing=9) is None


def test_transit_table_prefers_the_country_then_the_highest_band_not_above() -> None:
    rows = [
        TransitRow("*", 0, TransitTime(3, 6)),
        TransitRow("DE", 0, TransitTime(1, 2)),
        TransitRow("DE", 2, TransitTime(2, 3)),
    ]
    assert transit_for(rows, country="DE", band=0) == TransitTime(1, 2)
    assert transit_for(rows, country="DE", band=1) == TransitTime(1, 2)
    assert transit_for(rows, country="DE", band=5) == TransitTime(2, 3)
    assert transit_for(rows, country="FR", band=1) == TransitTime(3, 6)
    assert transit_for(rows[1:], country="FR", band=1) is None
    assert transit_for([TransitRow("DE", 3, TransitTime(1, 1))], country="DE", band=0) is None


def test_latest_promise_is_the_last_to_arrive() -> None:
    a = promise(BERLIN, at=utc(2026, 3, 2, 9, 0), transit=TransitTime(1, 1))
    b = promise(BERLIN, at=utc(2026, 3, 2, 9, 0), transit=TransitTime(1, 4))
    c = promise(BERLIN, at=utc(2026, 3, 2, 9, 0), transit=None)
    assert latest([a, b]) == b
    assert latest([a, c]) == c  # an unknown delivery date is the latest
    assert latest([]) is None


def test_bad_calendars_are_refused() -> None:
    with pytest.raises(CalendarError):
        WarehouseCalendar(timezone="Mars/Olympus")
    with pytest.raises(CalendarError):
        WarehouseCalendar(working_days=frozenset())
    with pytest.raises(CalendarError):
        WarehouseCalendar(working_days=frozenset({0, 8}))
    with pytest.raises(CalendarError):
        TransitTime(3, 2)
    with pytest.raises(ValueError, match="aware"):
        handling_starts(BERLIN, datetime(2026, 3, 2, 9, 0))  # noqa: DTZ001


def test_a_calendar_of_holidays_only_gives_up_instead_of_looping() -> None:
    cal = WarehouseCalendar(
        working_days=frozenset({1}),
        holidays=frozenset(MON + timedelta(days=7 * i) for i in range(200)),
    )
    with pytest.raises(CalendarError):
        earliest_ship_date(cal, utc(2026, 3, 2, 9, 0))
