"""Routing policy bodies, and the routing explanation as answers show it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from oms.routing.model import DecidingRule, ExclusionReason

Code = Annotated[str, Field(min_length=1, max_length=32)]


class RoutingPolicyWrite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_shipments: int | None = Field(
        default=None, ge=1, le=50, description="Most warehouses one order may ship from"
    )
    allow_line_split: StrictBool = Field(
        default=True, description="May one line's units come from several warehouses"
    )
    allow_backorder: StrictBool = Field(
        default=False,
        description="Place what is available and keep the rest as backorder, instead of 409",
    )
    warehouse_codes: list[Code] | None = Field(
        default=None, max_length=500, description="Only these warehouses serve the channel"
    )
    distance_band_km: float = Field(default=400.0, gt=0, le=20_000)
    exclude_pickup_stores: StrictBool = Field(
        default=True, description="Ship only from warehouses, not from pickup stores"
    )


class RoutingPolicyRead(RoutingPolicyWrite):
    channel: str
    updated_at: datetime

    model_config = ConfigDict(from_attributes=True)


# ---- the explanation (oms.routing.model.Explanation.to_dict()) ------------------------------


class PlanCost(BaseModel):
    """A plan's cost, compared field by field in this order (lower is better)."""

    unfilled_units: int = Field(description="Units the plan cannot place")
    shipments: int = Field(description="Parcels (warehouses used)")
    band_sum: int = Field(description="Sum of the distance bands of the shipments")
    cross_border_shipments: int = Field(
        default=0, description="Shipments from outside the destination country (or unknown)"
    )
    priority_rank_sum: int = Field(description="Sum of the warehouses' priority ranks")
    distance_km: float = Field(description="Sum of the distances, 0.1 km (unknown: farthest)")
    max_band: int = Field(description="The farthest shipment's band")


class RunnerUpPlan(BaseModel):
    """The best plan that was not chosen, and what separated it from the chosen one."""

    warehouses: list[str] = Field(description="Warehouse ids")
    codes: list[str] = Field(description="Warehouse codes", examples=[["BER", "MUC"]])
    cost: PlanCost
    separated_by: str = Field(
        description="The first cost field in which it differs (`tie_break` when none does)",
        examples=["shipments"],
    )
    margin: float = Field(description="Runner-up minus chosen on that field (0: tie break)")


class GeoPoint(BaseModel):
    latitude: float
    longitude: float


class RoutingDestination(BaseModel):
    """Where the order goes, as the router located it."""

    country: str = Field(examples=["DE"])
    point: GeoPoint | None = Field(description="null when it could not be located")
    point_source: str | None = Field(
        description="`address`, `postal_code`, `city`, `country_centroid` or `unknown`",
        examples=["postal_code"],
    )


class CandidateWarehouse(BaseModel):
    """One warehouse as the router saw it for this order."""

    warehouse_id: str
    code: str = Field(examples=["BER"])
    eligible: bool = Field(description="Allowed for this order (active, serves the country, ...)")
    selected: bool = Field(description="The plan ships from it")
    reason: ExclusionReason | None = Field(description="Why it is not used; null when selected")
    distance_km: float | None = Field(description="To the destination, 0.1 km; null: unknown")
    band: int = Field(description="Distance band (unknown distance: the worst band)")
    priority: int = Field(description="The warehouse's priority (lower is preferred)")
    priority_rank: int | None = Field(
        description="Dense rank of the priority among eligible warehouses (0 = best)"
    )
    coverable_units: int = Field(description="Units of this order it could ship")
    whole_lines: list[str] = Field(description="Lines it could ship complete on its own")
    fills_order: bool = Field(description="It could ship the whole order alone")
    allocated_units: int = Field(description="Units the plan ships from it")


class RoutingExplanation(BaseModel):
    """Why the router chose its plan."""

    summary: str = Field(
        examples=[
            "Ship from BER (12 km, band 0): one warehouse fills the whole order, while "
            "the runner-up MUC + HAM needs 2 shipments."
        ]
    )
    deciding_rule: DecidingRule = Field(
        description="The criterion that separated the chosen plan from the runner-up"
    )
    objective: list[str] = Field(description="The cost fields in comparison order")
    chosen_cost: PlanCost
    runner_up: RunnerUpPlan | None = Field(description="null when there was no other plan")
    search: str = Field(
        description="How the plan was found: `single`, `exact`, `greedy`, `pickup` or `none`"
    )
    proven_optimal: bool
    destination: RoutingDestination
    candidates: list[CandidateWarehouse] = Field(description="Every warehouse, in input order")
    notes: list[str]
