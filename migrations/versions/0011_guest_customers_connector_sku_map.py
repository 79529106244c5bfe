"""guest customers known by phone or anonymous; connectors map platform lines to SKUs

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-24 09:00:00.000000+00:00

**Guests.** Phone, SMS and point-of-sale orders come without an email, often without a customer.
An order's customer is now known by id, email or phone (``orders.customer_phone``, digits with
an optional ``+``), or is explicitly anonymous (``orders.customer_anonymous``). The check
``ck_orders_customer_known`` becomes: anonymous exactly when there is no id, email or phone.
Existing orders all have an id or an email, so they are not anonymous (the default). The
placed-order totals stay keyed by customer id, else guest email: orders with neither are not
totalled (nor listed by top customers).

**Connector SKU map.** ``webhook_connectors.sku_map`` (JSON object, default ``{}``):
``"variant:<id>"`` / ``"product:<id>"`` -> oms SKU, for platform lines without a usable SKU
(they were given invented ones, ``shopify-<id>``, ``woocommerce-<id>``).

Safe under the previous release: its placements write neither new column (the defaults hold:
not anonymous, no phone) and always have an id or an email. The new check is added ``NOT VALID``
and validated afterwards, which scans ``orders`` without blocking writes; adding the columns
rewrites nothing. The downgrade drops both columns (phones are lost) and restores the old check
``NOT VALID`` (orders placed without id and email meanwhile are kept; new ones are refused).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CUSTOMER_KNOWN = (
    "customer_anonymous = (customer_id IS NULL AND customer_email IS NULL "
    "AND customer_phone IS NULL)"
)


def upgrade() -> None:
    op.add_column("orders", sa.Column("customer_phone", sa.String(32), nullable=True))
    op.add_column(
        "orders",
        sa.Column(
            "customer_anonymous", sa.Boolean(), server_default=sa.text("false"), nullable=False
        ),
    )
    op.execute("ALTER TABLE orders DROP CONSTRAINT ck_orders_customer_known")
    op.execute(
        f"ALTER TABLE orders ADD CONSTRAINT ck_orders_customer_known CHECK ({CUSTOMER_KNOWN}) "
        "NOT VALID"
    )
    op.execute("ALTER TABLE orders VALIDATE CONSTRAINT ck_orders_customer_known")
    op.add_column(
        "webhook_connectors",
        sa.Column(
            "sku_map",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
    )


def downgrade() -> None:
    op.drop_column("webhook_connectors", "sku_map")
    op.execute("ALTER TABLE orders DROP CONSTRAINT ck_orders_customer_known")
    op.drop_column("orders", "customer_anonymous")
    op.drop_column("orders", "customer_phone")
    op.execute(
        "ALTER TABLE orders ADD CONSTRAINT ck_orders_customer_known "
        "CHECK (customer_id IS NOT NULL OR customer_email IS NOT NULL) NOT VALID"
    )
