"""Holds on orders, hold rules per channel, expiry of unpaid orders.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

from alembic import op  # noqa: F401

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
