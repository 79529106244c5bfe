"""Transfer to fulfil (#19): a click-and-collect order whose store lacks some units is routed
with a transfer of those units from another location, explained.

Only a pickup order short at its store takes this path (order placement asks once its plan of
the store alone is not filled: the normal placement path does not change):

* the router (:func:`oms.routing.domain.plan_route`, the pure planner) chooses the sources of the
  short units: every active location but the store, the store as the destination, the usual
  objective (fill, fewest sources, nearest band, priority...), so the explanation names the
  source, why, and the runner-up;
* the order gets one pickup shipment at the store carrying every unit; the short units are
  reserved **at their source** (allocations of that shipment at the source location) in the
  placement's one reservation; one draft transfer per source (source → store, the order and
  shipment linked, ``for_order`` units per line) is written in the same transaction, and
  ``transfer.requested`` recorded;
* shipping it takes the reserved units out of the source (``transfer_out``; the line's units
  are then backordered on the order: in transit), receiving it books them in at the store and
  reserves them for the pickup shipment; until then the shipment cannot be made ready
  (``oms.flows.pickup``). Those steps, under the order lock, are ``oms.flows.transfers``'.

Functions here take the request's session and never commit.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from oms.inventory import service as inventory_service
from oms.outbox.service import record_event
from oms.routing import service as routing_service
from oms.routing.domain import (
    Allocation,
    Destination,
    GeoPoint,
    RouteLine,
    RoutePlan,
    RoutingPolicy,
    plan_route,
)
from oms.shared.clock import utcnow
from oms.stores.models import Transfer, TransferLine

OPEN = ("draft", "shipped")
"""The statuses of a transfer to fulfil the pickup shipment still waits for."""


class _Rows(Protocol):
    """What :meth:`FulfilTransfer.apply` changes of the rows a plan became (``PlanRows``)."""

    reservations: list[inventory_service.Reservation]
    routing: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Sourced:
    """Units of an order line (its routing line id) that come from ``warehouse_id``."""

    line_id: str
    sku: str
    warehouse_id: str
    code: str
    quantity: int


@dataclass(slots=True)
class FulfilTransfer:
    """A pickup order's plan with its short units coming by transfer.

    ``plan``: the store ships every unit (placement turns it into rows as usual);
    :meth:`apply` moves the reservations of the transferred units to their sources;
    :meth:`write` writes the draft transfers after the order."""

    plan: RoutePlan
    store_id: uuid.UUID
    store_code: str
    sourced: list[Sourced]
    explanation: dict[str, Any]
    """The router's explanation of the sources."""
    transfer_ids: dict[str, uuid.UUID]
    """Source warehouse id → the id of its transfer."""
    from_store: int
    """How many of ``plan.allocations`` (the first ones) the store holds itself."""
    shipment_id: uuid.UUID | None = None

    def apply(self, rows: _Rows) -> None:
        """The transferred units reserved at their sources (for the store's shipment), and the
        transfers in the stored routing decision."""
        moved = list(rows.reservations)
        for i, src in enumerate(self.sourced, start=self.from_store):
            moved[i] = dataclasses.replace(moved[i], warehouse_id=uuid.UUID(src.warehouse_id))
            self.shipment_id = moved[i].shipment_id
        rows.reservations = moved
        rows.routing["transfers"] = self.routing_entries()

    def routing_entries(self) -> list[dict[str, Any]]:
        by_source: dict[str, list[Sourced]] = defaultdict(list)
        for s in self.sourced:
            by_source[s.warehouse_id].append(s)
        return [
            {
                "transfer_id": str(self.transfer_ids[wid]),
                "from_warehouse": units[0].code,
                "to_warehouse": self.store_code,
                "lines": [{"sku": u.sku, "quantity": u.quantity} for u in units],
            }
            for wid, units in by_source.items()
        ]

    async def write(self, session: AsyncSession, *, order_id: uuid.UUID, actor: str) -> None:
        """The draft transfers (source → store, linked to the order and its pickup shipment),
        and ``transfer.requested`` for each. Call after the order's rows are written."""
        now = utcnow()
        by_source: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        codes: dict[str, str] = {}
        for s in self.sourced:
            by_source[s.warehouse_id][s.sku] += s.quantity
            codes[s.warehouse_id] = s.code
        for wid, skus in by_source.items():
            transfer_id = self.transfer_ids[wid]
            await session.execute(
                insert(Transfer).values(
                    id=transfer_id,
                    from_warehouse_id=uuid.UUID(wid),
                    to_warehouse_id=self.store_id,
                    status="draft",
                    reference=f"order:{order_id}",
                    note=f"transfer to fulfil a click-and-collect order at {self.store_code}",
                    created_by=actor,
                    created_at=now,
                    updated_at=now,
                    order_id=order_id,
                    shipment_id=self.shipment_id,
                    routing=self.explanation,
                )
            )
            lines = sorted(skus.items())
            await session.execute(
                insert(TransferLine),
                [
                    {
                        "id": uuid.uuid4(),
                        "transfer_id": transfer_id,
                        "line_no": no,
                        "sku": sku,
                        "quantity": qty,
                        "received": 0,
                        "short": 0,
                        "over": 0,
                        "for_order": qty,
                    }
                    for no, (sku, qty) in enumerate(lines, start=1)
                ],
            )
            await record_event(
                session,
                type="transfer.requested",
                aggregate_type="transfer",
                aggregate_id=str(transfer_id),
                data={
                    "transfer_id": str(transfer_id),
                    "from_warehouse": codes[wid],
                    "to_warehouse": self.store_code,
                    "status": "draft",
                    "expected_on": None,
                    "lines": [
                        {
                            "sku": sku,
                            "quantity": qty,
                            "received": 0,
                            "short": 0,
                            "over": 0,
                            "in_transit": 0,
                        }
                        for sku, qty in lines
                    ],
                    "order_id": str(order_id),
                    "shipment_id": str(self.shipment_id) if self.shipment_id else None,
                },
            )


def _sentence(store: str, source_plan: RoutePlan, codes: dict[str, str]) -> str:
    units = sum(a.quantity for a in source_plan.allocations)
    sources = ", ".join(codes[w] for w in source_plan.warehouses)
    why = source_plan.explanation.deciding_rule.value.replace("_", " ")
    runner = source_plan.explanation.runner_up
    tail = f"; runner-up {', '.join(runner.codes)}" if runner is not None else ""
    return (
        f"{store} lacks {units} unit(s): they come by transfer from {sources} "
        f"(decided by {why}{tail})."
    )


async def transfer_to_fulfil(
    session: AsyncSession,
    *,
    plan: RoutePlan,
    lines: Sequence[RouteLine],
    store_code: str,
) -> FulfilTransfer | None:
    """For a pickup order's plan that its store cannot fill (``plan``, routed to the store
    only): the plan with the short units transferred from other locations, or None when no
    set of locations holds them (the order is then refused or backordered as before)."""
    shortages = [s for s in plan.shortages if s.missing > 0]
    if not shortages:
        return None
    snapshot = await inventory_service.routing_snapshot(session, skus={ln.sku for ln in lines})
    store = next((w for w in snapshot if w.code == store_code), None)
    if store is None or not store.active:  # a closed store takes no transfer
        return None
    point = None
    if store.latitude is not None and store.longitude is not None:
        point = GeoPoint(store.latitude, store.longitude)
    destination = Destination(country=store.country, point=point, point_source="pickup_store")
    policy = RoutingPolicy(
        allow_line_split=True,
        excluded_warehouse_ids=frozenset({str(store.id)}),
        blocked=frozenset((str(w.id), sku) for w in snapshot for sku in w.blocked),
    )
    short_lines = [RouteLine(line_id=s.line_id, sku=s.sku, quantity=s.missing) for s in shortages]
    source_plan = plan_route(short_lines, destination, routing_service.candidates(snapshot), policy)
    if not source_plan.fully_filled:
        return None
    codes = {str(w.id): w.code for w in snapshot}
    store_id = str(store.id)
    sourced = [
        Sourced(a.line_id, a.sku, a.warehouse_id, codes[a.warehouse_id], a.quantity)
        for a in source_plan.allocations
    ]
    sentence = _sentence(store_code, source_plan, codes)
    explanation = dataclasses.replace(
        plan.explanation,
        summary=f"{plan.explanation.summary} {sentence}",
        notes=(
            *plan.explanation.notes,
            *(
                f"transfer {codes[s.warehouse_id]} → {store_code}: {s.quantity} × {s.sku}"
                for s in sourced
            ),
        ),
    )
    combined = dataclasses.replace(
        plan,
        allocations=(
            *plan.allocations,
            *(Allocation(s.line_id, s.sku, store_id, s.quantity) for s in sourced),
        ),
        shortages=(),
        fully_filled=True,
        warehouses=(store_id,),
        explanation=explanation,
    )
    return FulfilTransfer(
        plan=combined,
        store_id=store.id,
        store_code=store_code,
        sourced=sourced,
        explanation={"summary": sentence, **source_plan.explanation.to_dict()},
        transfer_ids={wid: uuid.uuid4() for wid in dict.fromkeys(s.warehouse_id for s in sourced)},
        from_store=len(plan.allocations),
    )


# ---- the transfers of a pickup shipment ----------------------------------------------------


async def awaited_transfers(session: AsyncSession, *, shipment_id: uuid.UUID) -> list[Transfer]:
    """The transfers to fulfil a pickup shipment still waits for (draft or shipped)."""
    return list(
        (
            await session.scalars(
                select(Transfer)
                .where(Transfer.shipment_id == shipment_id, Transfer.status.in_(OPEN))
                .order_by(Transfer.created_at, Transfer.id)
            )
        ).all()
    )


async def linked_order(session: AsyncSession, *, transfer_id: uuid.UUID) -> uuid.UUID | None:
    """The order a transfer fulfils (None for a transfer on its own, or none at all)."""
    return await session.scalar(select(Transfer.order_id).where(Transfer.id == transfer_id))
