"""Issue #17 follow-up: exceptions on picked shipments, connector line ids, stored routing after changes.

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

from alembic import op  # noqa: F401

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
