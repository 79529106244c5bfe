"""Issue #18: the stock feed (availability per channel, change feed), the ledger's hash chain.

Revision ID: 0018
Revises: 0017
"""

from __future__ import annotations

from alembic import op  # noqa: F401

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
