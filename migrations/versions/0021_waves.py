"""Issue #20: waves re-optimising open orders before release; routing simulations.

Revision ID: 0021
Revises: 0020
"""

from __future__ import annotations

from alembic import op  # noqa: F401

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
