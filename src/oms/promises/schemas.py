"""Request and response bodies of warehouse calendars and the transit table."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from oms.shared.timestamps import Day

Weekday = Annotated[int, Field(ge=1, le=7)]
LocalTime = Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]
"""A local time of day, ``HH:MM``, without an offset."""


class CalendarWrite(BaseModel):
    """A warehouse's working calendar: what its delivery promises are computed from."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "timezone": "Europe/Berlin",
                    "cutoff": "14:00",
                    "handling_days": 1,
                    "working_days": [1, 2, 3, 4, 5],
                    "holidays": ["2026-12-25", "2026-12-26"],
                }
            ]
        },
    )

    timezone: str = Field(
        min_length=1, max_length=64, description="IANA time zone", examples=["Europe/Berlin"]
    )
    cutoff: LocalTime = Field(
        description="Daily cut-off, local time `HH:MM` (24 h, no offset): an order reaching the "
        "warehouse on a working day before it is handled that day",
        examples=["14:00"],
    )
    handling_days: int = Field(
        ge=0, le=60, description="Working days from the start of handling to shipping (0: same day)"
    )
    working_days: list[Weekday] = Field(
        default=[1, 2, 3, 4, 5],
        min_length=1,
        max_length=7,
        description="ISO weekdays the warehouse ships on (1 = Monday)",
    )
    holidays: list[Day] = Field(
        default=[], max_length=400, description="Local dates it does not ship on"
    )


class CalendarRead(BaseModel):
    warehouse: str
    timezone: str
    cutoff: LocalTime = Field(description="Local time, `HH:MM`")
    handling_days: int
    working_days: list[int]
    holidays: list[date]
    default: bool = Field(description="true: the warehouse has no calendar; these are defaults")
    updated_at: datetime | None


class TransitBandWrite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    from_band: int = Field(
        ge=0,
        le=1000,
        description="From this distance band up (routing's bands: great-circle distance / the "
        "channel's `distance_band_km`, 400 km by default), until the next row's band",
    )
    min_days: int = Field(ge=0, le=120, description="Carrier days (Mon-Fri), at least")
    max_days: int = Field(ge=0, le=120, description="Carrier days (Mon-Fri), at most")


class TransitWrite(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "bands": [
                        {"from_band": 0, "min_days": 1, "max_days": 2},
                        {"from_band": 2, "min_days": 2, "max_days": 4},
                    ]
                }
            ]
        },
    )

    bands: list[TransitBandWrite] = Field(min_length=1, max_length=100)


class TransitRead(BaseModel):
    country: str = Field(examples=["DE"])
    from_band: int
    min_days: int
    max_days: int
    updated_at: datetime

    model_config = ConfigDict(from_attributes=True)
