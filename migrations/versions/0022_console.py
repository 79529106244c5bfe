"""Issue #21: the operations console.

Revision ID: 0022
Revises: 0021
"""

from __future__ import annotations

from alembic import op  # noqa: F401

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
