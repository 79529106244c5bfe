"""Issue #20: waves re-optimising open orders before release.

Revision ID: 0021
Revises: 0020

``wave_policies``: per channel, whether its orders wait for a wave before the pick queue, and
when a wave runs (every ``interval_s``, at ``max_pool`` waiting orders, at daily ``cutoffs``
"HH:MM" UTC), whether express orders skip waves, the solver's time limit. ``waves``: one row per
wave (pool size, objective before/after, solver status, time). ``wave_orders``: one row per
order a wave released (moved, kept or skipped), with its plan before/after and what it saved;
an order waits while its channel's policy is enabled, it was placed since ``enabled_at`` and it
has no row here. Safe under the previous release: new tables only, nothing it runs reads them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "wave_policies",
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("interval_s", sa.Integer(), nullable=True),
        sa.Column("max_pool", sa.Integer(), nullable=True),
        sa.Column("cutoffs", postgresql.ARRAY(sa.String(5)), nullable=True),
        sa.Column("express_skips", sa.Boolean(), nullable=False),
        sa.Column("time_limit_s", sa.Float(), nullable=False),
        sa.Column("enabled_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "interval_s IS NULL OR interval_s >= 1", name=op.f("ck_wave_policies_interval_min")
        ),
        sa.CheckConstraint(
            "max_pool IS NULL OR max_pool >= 1", name=op.f("ck_wave_policies_max_pool_min")
        ),
        sa.CheckConstraint(
            "time_limit_s > 0 AND time_limit_s <= 300",
            name=op.f("ck_wave_policies_time_limit_range"),
        ),
        sa.PrimaryKeyConstraint("channel", name=op.f("pk_wave_policies")),
    )
    op.create_table(
        "waves",
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("solver_status", sa.String(64), nullable=False),
        sa.Column("proven", sa.Boolean(), nullable=False),
        sa.Column("applied", sa.Boolean(), nullable=False),
        sa.Column("pool_size", sa.Integer(), nullable=False),
        sa.Column("moved", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.Column("objective_before", sa.Float(), nullable=False),
        sa.Column("objective_after", sa.Float(), nullable=False),
        sa.Column("solve_seconds", sa.Float(), nullable=False),
        sa.Column(
            "notes",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column("requested_by", sa.String(128), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "trigger IN ('manual','schedule','size','cutoff')", name=op.f("ck_waves_trigger_valid")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_waves")),
    )
    op.create_index("ix_waves_channel_started_at", "waves", ["channel", "started_at"])
    op.create_index("ix_waves_started_at", "waves", ["started_at"])
    op.create_table(
        "wave_orders",
        sa.Column("order_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("wave_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("plan", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "outcome IN ('moved','kept','skipped')", name=op.f("ck_wave_orders_outcome_valid")
        ),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["orders.id"],
            name=op.f("fk_wave_orders_order_id_orders"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["wave_id"],
            ["waves.id"],
            name=op.f("fk_wave_orders_wave_id_waves"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("order_id", name=op.f("pk_wave_orders")),
    )
    op.create_index("ix_wave_orders_wave_id", "wave_orders", ["wave_id"])


def downgrade() -> None:
    op.drop_index("ix_wave_orders_wave_id", table_name="wave_orders")
    op.drop_table("wave_orders")
    op.drop_index("ix_waves_started_at", table_name="waves")
    op.drop_index("ix_waves_channel_started_at", table_name="waves")
    op.drop_table("waves")
    op.drop_table("wave_policies")
