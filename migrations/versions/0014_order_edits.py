"""Order edits and partial cancellation.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

from alembic import op  # noqa: F401

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
