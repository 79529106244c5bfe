"""Holds on orders, hold rules, expiry of unpaid orders.

Revision ID: 0013
Revises: 0012

``order_holds``: one row per hold placed on an order (reason, note, the rule that placed it if
any, who and when), released one by one (who, when, a note). A hold stands while
``released_at`` is null; the partial index ``ix_order_holds_active`` finds an order's standing
holds (the pick queue and the fulfilment moves ask). Safe under the previous release: a new
table, nothing it writes reads it. ``hold_rules``: per channel, conditions (payment methods,
minimum total per currency, destination countries, the marketplace's risk levels; null = not
checked) that put a new order on hold with the rule's reason; unique by (channel, name).
``expiry_policies``: per (channel, payment method), after how many seconds an unpaid order is
cancelled as expired by the worker.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels = None
depends_on = None

REASONS = "'fraud_review','awaiting_payment','address_check','customer_request','other'"


def upgrade() -> None:
    op.create_table(
        "order_holds",
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("order_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("rule", sa.String(64), nullable=True),
        sa.Column("placed_by", sa.String(128), nullable=False),
        sa.Column("placed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("released_by", sa.String(128), nullable=True),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("release_note", sa.Text(), nullable=True),
        sa.CheckConstraint(f"reason IN ({REASONS})", name=op.f("ck_order_holds_reason")),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["orders.id"],
            name=op.f("fk_order_holds_order_id_orders"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order_holds")),
    )
    op.create_index(
        "ix_order_holds_active",
        "order_holds",
        ["order_id"],
        postgresql_where=sa.text("released_at IS NULL"),
    )
    op.create_index("ix_order_holds_order_id_placed_at", "order_holds", ["order_id", "placed_at"])

    op.create_table(
        "hold_rules",
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("payment_methods", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("min_totals", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("countries", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("risk_levels", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(f"reason IN ({REASONS})", name=op.f("ck_hold_rules_reason")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hold_rules")),
        sa.UniqueConstraint("channel", "name", name=op.f("uq_hold_rules_channel_name")),
    )
    op.create_table(
        "expiry_policies",
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("payment_method", sa.String(32), nullable=False),
        sa.Column("after_s", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("after_s > 0", name=op.f("ck_expiry_policies_after_positive")),
        sa.PrimaryKeyConstraint("channel", "payment_method", name=op.f("pk_expiry_policies")),
    )


def downgrade() -> None:
    op.drop_table("expiry_policies")
    op.drop_table("hold_rules")
    op.drop_table("order_holds")
