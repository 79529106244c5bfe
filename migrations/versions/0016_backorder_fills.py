"""Backorders filled as stock arrives.

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

from alembic import op  # noqa: F401

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
