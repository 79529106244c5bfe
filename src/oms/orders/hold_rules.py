"""Hold rules: per channel, conditions that put a new order on hold (at placement, and so at
connector intake). Matching is pure (:func:`matching`); placement asks :func:`rules_for`, which
answers from a per-process cache (reloaded every 5 s, and at once after this process's own
rule changes), so the hot path adds no round trip unless a rule matches."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, literal_column, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import ReturningInsert

from oms.db import after_commit
from oms.orders.hold_models import HoldRule
from oms.shared.clock import utcnow
from oms.shared.errors import NotFound

RISK_LEVELS = ("low", "medium", "high")


@dataclass(frozen=True, slots=True)
class HoldRuleView:
    """A rule as placement evaluates it (a plain value, safe to cache across sessions)."""

    name: str
    reason: str
    note: str | None
    payment_methods: tuple[str, ...] | None
    min_totals: dict[str, int] | None
    countries: tuple[str, ...] | None
    risk_levels: tuple[str, ...] | None

    def matches(
        self,
        *,
        payment_method: str,
        currency: str,
        total: int,
        country: str,
        risk_level: str | None,
    ) -> bool:
        """Every condition the rule sets holds for the order (a rule sets at least one)."""
        if self.payment_methods is not None and payment_method not in self.payment_methods:
            return False
        if self.min_totals is not None and not (
            currency in self.min_totals and total >= self.min_totals[currency]
        ):
            return False
        if self.countries is not None and country not in self.countries:
            return False
        return self.risk_levels is None or risk_level in self.risk_levels


def view_of(rule: HoldRule) -> HoldRuleView:
    def tup(v: list[str] | None) -> tuple[str, ...] | None:
        return None if v is None else tuple(v)

    return HoldRuleView(
        name=rule.name,
        reason=rule.reason,
        note=rule.note,
        payment_methods=tup(rule.payment_methods),
        min_totals=None if rule.min_totals is None else dict(rule.min_totals),
        countries=tup(rule.countries),
        risk_levels=tup(rule.risk_levels),
    )


def matching(
    rules: list[HoldRuleView],
    *,
    payment_method: str,
    currency: str,
    total: int,
    country: str,
    risk_level: str | None,
) -> list[HoldRuleView]:
    """The rules that hold an order with these facts, by name."""
    return [
        r
        for r in rules
        if r.matches(
            payment_method=payment_method,
            currency=currency,
            total=total,
            country=country,
            risk_level=risk_level,
        )
    ]


class RuleCache:
    """Every channel's rules, loaded in one query at most every ``ttl_s`` seconds."""

    def __init__(self) -> None:
        self.ttl_s = 5.0
        self._loaded_at = -1e18
        self._rules: dict[str, list[HoldRuleView]] = {}

    def clear(self) -> None:
        self._loaded_at = -1e18

    async def rules_for(self, session: AsyncSession, channel: str) -> list[HoldRuleView]:
        now = time.monotonic()
        if now - self._loaded_at > self.ttl_s:
            rows = (await session.scalars(select(HoldRule).order_by(HoldRule.name))).all()
            by_channel: dict[str, list[HoldRuleView]] = {}
            for row in rows:
                by_channel.setdefault(row.channel, []).append(view_of(row))
            self._rules, self._loaded_at = by_channel, now
        return self._rules.get(channel, [])


CACHE = RuleCache()


async def rules_for(session: AsyncSession, *, channel: str) -> list[HoldRuleView]:
    """The channel's hold rules (cached for ``CACHE.ttl_s`` seconds in this process)."""
    return await CACHE.rules_for(session, channel)


def _not_found(channel: str, name: str) -> NotFound:
    return NotFound(f"channel '{channel}' has no hold rule '{name}'", code="hold_rule_not_found")


async def put_rule(
    session: AsyncSession, *, channel: str, name: str, values: dict[str, Any]
) -> tuple[HoldRule, bool]:
    """Create or replace the rule (channel, name) in one statement (concurrent PUTs of a new
    rule: one creates it, the other replaces it); True when created."""
    now = utcnow()
    stmt: ReturningInsert[Any, Any] = (
        insert(HoldRule)
        .values(
            id=uuid.uuid4(), channel=channel, name=name, created_at=now, updated_at=now, **values
        )
        .on_conflict_do_update(
            index_elements=[HoldRule.channel, HoldRule.name],
            set_={**values, "updated_at": now},
        )
        .returning(HoldRule, literal_column("xmax = 0"))
        .execution_options(populate_existing=True)
    )
    rule, created = (await session.execute(stmt)).one()
    CACHE.clear()
    after_commit(session, CACHE.clear)  # and once committed (a load in between saw the old)
    return rule, bool(created)


async def list_rules(session: AsyncSession, *, channel: str | None) -> list[HoldRule]:
    stmt = select(HoldRule).order_by(HoldRule.channel, HoldRule.name)
    if channel is not None:
        stmt = stmt.where(HoldRule.channel == channel)
    return list((await session.scalars(stmt)).all())


async def get_rule(session: AsyncSession, *, channel: str, name: str) -> HoldRule:
    rule = await session.scalar(
        select(HoldRule).where(HoldRule.channel == channel, HoldRule.name == name)
    )
    if rule is None:
        raise _not_found(channel, name)
    return rule


async def delete_rule(session: AsyncSession, *, channel: str, name: str) -> None:
    result = await session.execute(
        delete(HoldRule)
        .where(HoldRule.channel == channel, HoldRule.name == name)
        .returning(HoldRule.id)
    )
    if result.first() is None:
        raise _not_found(channel, name)
    CACHE.clear()
    after_commit(session, CACHE.clear)
