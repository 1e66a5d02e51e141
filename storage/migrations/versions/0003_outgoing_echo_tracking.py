"""outgoing echo tracking

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 00:42:08.315460
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.models


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('outgoing_message', schema=None) as batch_op:
        batch_op.add_column(sa.Column('echoed_at', storage.models.UTCDateTime(), nullable=True))
        batch_op.create_index('ix_outgoing_account_conversation_created', ['account_id', 'conversation_id', 'created_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('outgoing_message', schema=None) as batch_op:
        batch_op.drop_index('ix_outgoing_account_conversation_created')
        batch_op.drop_column('echoed_at')

