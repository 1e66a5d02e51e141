"""customer lifecycle: new, growing, mature, dormant or lost, counted per account by the digest

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 11:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("customer", schema=None) as batch_op:
        # existing customers start as "new"; the first sweep puts each in its state
        batch_op.add_column(sa.Column("lifecycle", sa.String(), nullable=False, server_default="new"))
        batch_op.create_index("ix_customer_account_lifecycle", ["account_id", "lifecycle"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("customer", schema=None) as batch_op:
        batch_op.drop_index("ix_customer_account_lifecycle")
        batch_op.drop_column("lifecycle")
