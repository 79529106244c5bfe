"""Request and response bodies of wave policies and waves."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from oms.routing.schemas import RoutingExplanation
from oms.routing.wave import DEFAULT_TIME_LIMIT_S
from oms.shared.timestamps import RULE as TIMESTAMP_RULE
from oms.shared.timestamps import Timestamp

Cutoff = Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$", examples=["14:00"])]
Channel = Annotated[
    str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9._\-]*$", examples=["web"])
]


class WavePolicyWrite(BaseModel):
    """When a channel's orders wait for a wave, and when a wave runs (whichever comes first)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "enabled": True,
                    "interval_s": 900,
                    "max_pool": 100,
                    "cutoffs": ["14:00"],
                    "express_skips": True,
                    "time_limit_s": 1.5,
                }
            ]
        },
    )

    enabled: StrictBool = Field(
        description="Hold the channel's new orders out of the pick queue until a wave releases "
        "them. Disabling releases every waiting order at once."
    )
    interval_s: int | None = Field(
        default=None, ge=1, le=7 * 86_400, description="A wave every this many seconds"
    )
    max_pool: int | None = Field(
        default=None, ge=1, le=5_000, description="A wave as soon as this many orders wait"
    )
    cutoffs: list[Cutoff] | None = Field(
        default=None, max_length=48, description="A wave at each of these times of day (UTC)"
    )
    express_skips: StrictBool = Field(
        default=True, description="Express orders go straight to the pick queue"
    )
    time_limit_s: float = Field(
        default=DEFAULT_TIME_LIMIT_S,
        gt=0,
        le=300,
        description="The solver's time limit (default 1.5 s: a wave of 100 orders at 50 "
        "warehouses takes p95 < 2 s); when it stops the solver, its best plan is used only if "
        "it passes the same checks as an optimum and costs less, else every order keeps its "
        "plan",
    )


class WavePolicyRead(WavePolicyWrite):
    model_config = ConfigDict(from_attributes=True)

    channel: str
    enabled_at: datetime = Field(description="Orders placed since then wait for a wave")
    updated_at: datetime


class WaveRun(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"channel": "web"}]})

    channel: Channel


class WaveRead(BaseModel):
    """One wave: its pool, the solver's answer and what moved."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    channel: str
    trigger: Literal["manual", "schedule", "size", "cutoff"]
    solver_status: str = Field(
        description="`optimal`, `time_limit` (stopped by the limit: a checked cheaper plan was "
        "used if `proven` is false and orders moved, else every order kept its plan), "
        "`empty`, or the solver's own status",
        examples=["optimal"],
    )
    proven: bool = Field(description="The solver proved its answer optimal")
    applied: bool = Field(description="Some orders moved to the wave's plan")
    pool_size: int = Field(description="Orders the wave released")
    moved: int = Field(description="Orders given a cheaper plan")
    skipped: int = Field(
        description="Orders that changed while the wave solved: released as they were"
    )
    objective_before: float = Field(
        description="Cost of the pool's plans before: 6.0 + 1.5 per 400 km band per parcel "
        "(small tie-break terms), plus 50 per unit the pool's orders wait for (backordered)"
    )
    objective_after: float
    solve_seconds: float
    notes: list[str]
    requested_by: str | None
    started_at: datetime
    completed_at: datetime


class WaveOrderRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    order_id: uuid.UUID
    outcome: Literal["moved", "kept", "skipped"]
    reason: str | None = Field(description="Why it was skipped or kept")
    plan: dict[str, Any] | None = Field(
        description="`before` (the plan it had: allocations, parcels, band sum, cost), and for "
        "moved orders `after` (the wave's plan), `saved` (parcels, band sum, cost) and "
        "`filled` (backordered units the wave filled)"
    )
    released_at: datetime


class WaveDetail(WaveRead):
    orders: list[WaveOrderRead]


# ---- back-testing a routing policy (POST /v1/routing/simulations) --------------------------

Code = Annotated[str, Field(min_length=1, max_length=32)]
CountryCode = Annotated[str, Field(pattern=r"^[A-Z]{2}$", examples=["DE"])]


class ProposedPolicy(BaseModel):
    """What the proposed policy changes; a field left out keeps the channel's current value."""

    model_config = ConfigDict(extra="forbid")

    warehouse_codes: list[Code] | None = Field(
        default=None, max_length=500, description="Only these warehouses (null: all)"
    )
    ships_to: dict[Code, list[CountryCode] | None] | None = Field(
        default=None,
        description="Per warehouse code, the countries it would ship to (null: everywhere)",
        examples=[{"BER": ["DE", "AT", "PL"]}],
    )
    max_shipments: int | None = Field(default=None, ge=1, le=50, description="null: no cap")
    allow_line_split: StrictBool = True
    waves: StrictBool = Field(default=False, description="Re-optimise in waves")
    wave_size: int | None = Field(
        default=None, ge=1, le=5_000, description="Orders per wave (null: one wave at the end)"
    )


class SimulationRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        json_schema_extra={
            "examples": [
                {
                    "channel": "web",
                    "from": "2026-11-01T00:00:00Z",
                    "to": "2026-11-08T00:00:00Z",
                    "proposed": {"max_shipments": 2, "waves": True, "wave_size": 100},
                }
            ]
        },
    )

    channel: Channel
    from_: Timestamp = Field(
        alias="from", description=f"Orders placed from (inclusive); {TIMESTAMP_RULE}"
    )
    to: Timestamp = Field(description=f"... until (exclusive); {TIMESTAMP_RULE}")
    proposed: ProposedPolicy
    max_orders: int = Field(default=1_000, ge=1, le=5_000, description="Replay at most these")
    changed_limit: int = Field(
        default=50, ge=0, le=500, description="List at most this many changed orders"
    )


class SimulationPolicy(BaseModel):
    warehouse_codes: list[str] | None
    max_shipments: int | None
    allow_line_split: bool
    waves: bool
    wave_size: int | None


class SimulationFigures(BaseModel):
    orders: int
    units: int
    units_placed: int
    fill_rate: float
    parcels: int
    parcels_per_order: float
    split_share: float = Field(description="Share of orders in more than one parcel")
    parcels_by_band: dict[str, int] = Field(
        description="Parcels per distance band (band: floor(km / the band width))"
    )
    load: dict[str, dict[str, int]] = Field(
        description="Per warehouse code: parcels and units it would ship"
    )
    parcel_cost: float = Field(description="6.0 + 1.5 per band per parcel (the bench's model)")
    waves: int
    wave_orders_moved: int
    wave_seconds_p95: float | None


class SimulationSide(BaseModel):
    policy: SimulationPolicy
    figures: SimulationFigures


class PlanSide(BaseModel):
    warehouses: list[str]
    parcels: int
    band_sum: int
    units_placed: int
    explanation: RoutingExplanation | None = Field(
        description="The per-order router's explanation under this policy"
    )
    wave: dict[str, Any] | None = Field(
        description="When a wave moved the order: its plan before and after, and what it saved"
    )


class ChangedOrder(BaseModel):
    order_id: uuid.UUID
    current: PlanSide
    proposed: PlanSide


class SimulationWindow(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: datetime = Field(alias="from")
    to: datetime
    orders: int = Field(description="Orders replayed (placement order)")
    truncated: bool = Field(description="More orders were placed in the window than replayed")


class SimulationRead(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    channel: str
    window: SimulationWindow
    current: SimulationSide
    proposed: SimulationSide
    changed_orders: int = Field(description="Orders the proposed policy plans differently")
    changes: list[ChangedOrder]
