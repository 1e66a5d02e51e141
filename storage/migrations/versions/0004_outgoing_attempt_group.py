"""outgoing attempt group: sends the dispatcher reserved together; an index of sends under way

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outgoing_message", schema=None) as batch_op:
        batch_op.add_column(sa.Column("attempt_group", sa.String(), nullable=True))
        batch_op.create_index(
            "ix_outgoing_sending",
            ["attempt_group"],
            unique=False,
            sqlite_where=sa.text("status = 'sending'"),
            postgresql_where=sa.text("status = 'sending'"),
        )


def downgrade() -> None:
    with op.batch_alter_table("outgoing_message", schema=None) as batch_op:
        batch_op.drop_index("ix_outgoing_sending")
        batch_op.drop_column("attempt_group")
