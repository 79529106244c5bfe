"""Issue #22: messages to customers and the tracking page.

Revision ID: 0023
Revises: 0022
"""

from __future__ import annotations

from alembic import op  # noqa: F401

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
