"""Issue #22: messages to customers and the tracking page.

Revision ID: 0023
Revises: 0022

``orders.locale``: the customer's language (nullable; set at placement). ``message_templates``:
templates saved through the API, overriding the packaged defaults per (event type, channel,
language). ``message_rules``: per sales channel, which events send an email and/or an SMS, and
the default language. ``message_providers``: SMTP and SMS provider settings, with a write-only
secret. ``message_opt_outs``: addresses opted out per channel. ``messages``: one per (event,
recipient, channel) (unique), leased while sending; ``message_attempts``: every attempt.
``message_relay_state`` + ``message_produced``: the producer's cursor over the outbox.
``tracking_keys``: the tracking links' signing key when none is configured. New tables and a
nullable column: safe under the previous release.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels = None
depends_on = None

CHANNEL = "channel IN ('email','sms')"
STATUSES = "status IN ('pending','sending','failed','sent','dead','skipped')"
NOW = sa.text("now()")


def _ts(name: str, nullable: bool = False, now: bool = True) -> sa.Column[object]:
    return sa.Column(
        name, sa.DateTime(timezone=True), nullable=nullable, server_default=NOW if now else None
    )


def upgrade() -> None:
    op.add_column("orders", sa.Column("locale", sa.String(35), nullable=True))

    op.create_table(
        "message_templates",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(8), nullable=False),
        sa.Column("language", sa.String(35), nullable=False),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("body_text", sa.Text(), nullable=False),
        sa.Column("body_html", sa.Text(), nullable=True),
        sa.Column("updated_by", sa.String(64), nullable=True),
        _ts("created_at"),
        _ts("updated_at"),
        sa.CheckConstraint(CHANNEL, name=op.f("ck_message_templates_channel_valid")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_message_templates")),
        sa.UniqueConstraint(
            "event_type",
            "channel",
            "language",
            name=op.f("uq_message_templates_event_type_channel_language"),
        ),
    )
    op.create_table(
        "message_rules",
        sa.Column("sales_channel", sa.String(64), nullable=False),
        sa.Column("default_language", sa.String(35), nullable=False),
        sa.Column("events", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("sales_channel", name=op.f("pk_message_rules")),
    )
    op.create_table(
        "message_providers",
        sa.Column("channel", sa.String(8), nullable=False),
        sa.Column("settings", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("secret", sa.Text(), nullable=True),
        _ts("updated_at"),
        sa.CheckConstraint(CHANNEL, name=op.f("ck_message_providers_channel_valid")),
        sa.PrimaryKeyConstraint("channel", name=op.f("pk_message_providers")),
    )
    op.create_table(
        "message_opt_outs",
        sa.Column("channel", sa.String(8), nullable=False),
        sa.Column("address", sa.String(320), nullable=False),
        _ts("created_at"),
        sa.CheckConstraint(CHANNEL, name=op.f("ck_message_opt_outs_channel_valid")),
        sa.PrimaryKeyConstraint("channel", "address", name=op.f("pk_message_opt_outs")),
    )
    op.create_table(
        "messages",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("outbox_id", sa.BigInteger(), nullable=False),
        sa.Column("event_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("order_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("channel", sa.String(8), nullable=False),
        sa.Column("recipient", sa.String(320), nullable=False),
        sa.Column("language", sa.String(35), nullable=False),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("body_text", sa.Text(), nullable=False),
        sa.Column("body_html", sa.Text(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_token", postgresql.UUID(as_uuid=True), nullable=True),
        sa.Column("idempotency_key", sa.String(128), nullable=False),
        sa.Column("provider_message_id", sa.String(256), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        _ts("created_at"),
        _ts("updated_at"),
        _ts("sent_at", nullable=True, now=False),
        sa.CheckConstraint(CHANNEL, name=op.f("ck_messages_channel_valid")),
        sa.CheckConstraint(STATUSES, name=op.f("ck_messages_status_valid")),
        sa.ForeignKeyConstraint(
            ["outbox_id"],
            ["outbox_events.id"],
            name=op.f("fk_messages_outbox_id_outbox_events"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_messages")),
        sa.UniqueConstraint(
            "event_id", "recipient", "channel", name=op.f("uq_messages_event_id_recipient_channel")
        ),
    )
    op.create_index(
        "ix_messages_due",
        "messages",
        ["next_attempt_at", "id"],
        postgresql_where=sa.text("status IN ('pending','sending','failed')"),
    )
    op.create_index("ix_messages_order_id_outbox_id", "messages", ["order_id", "outbox_id"])
    op.create_table(
        "message_attempts",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("provider_message_id", sa.String(256), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column("worker", sa.String(64), nullable=True),
        _ts("created_at"),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name=op.f("fk_message_attempts_message_id_messages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_message_attempts")),
    )
    op.create_index("ix_message_attempts_message_id_id", "message_attempts", ["message_id", "id"])
    op.create_table(
        "message_relay_state",
        sa.Column("id", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("outbox_cursor", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        _ts("updated_at"),
        sa.CheckConstraint("id = 1", name=op.f("ck_message_relay_state_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_message_relay_state")),
    )
    op.create_table(
        "message_produced",
        sa.Column("outbox_id", sa.BigInteger(), autoincrement=False, nullable=False),
        _ts("produced_at"),
        sa.PrimaryKeyConstraint("outbox_id", name=op.f("pk_message_produced")),
    )
    op.create_table(
        "tracking_keys",
        sa.Column("id", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        _ts("created_at"),
        sa.CheckConstraint("id = 1", name=op.f("ck_tracking_keys_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tracking_keys")),
    )


def downgrade() -> None:
    op.drop_table("tracking_keys")
    op.drop_table("message_produced")
    op.drop_table("message_relay_state")
    op.drop_index("ix_message_attempts_message_id_id", table_name="message_attempts")
    op.drop_table("message_attempts")
    op.drop_index("ix_messages_order_id_outbox_id", table_name="messages")
    op.drop_index("ix_messages_due", table_name="messages")
    op.drop_table("messages")
    op.drop_table("message_opt_outs")
    op.drop_table("message_providers")
    op.drop_table("message_rules")
    op.drop_table("message_templates")
    op.drop_column("orders", "locale")
