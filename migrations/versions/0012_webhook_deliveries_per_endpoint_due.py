"""Outbound webhooks: an index of each endpoint's open deliveries by due time.

The relay claims deliveries per subscription (a slow endpoint only ever occupies its own
in-flight slots). Without this index a claim reads an endpoint's open rows through the global
due index or its whole backlog; with it, each endpoint's next due rows are one index range.
Built ``CONCURRENTLY`` (outside a transaction), so deliveries keep flowing during the upgrade.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_webhook_deliveries_subscription_due "
            "ON webhook_deliveries (subscription_id, next_attempt_at, id) "
            "WHERE status IN ('pending','delivering','failed')"
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS ix_webhook_deliveries_subscription_due")
