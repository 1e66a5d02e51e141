"""customer pause, digest rows, send-count indexes

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 22:21:12.099345
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.models


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:

    with op.batch_alter_table('customer', schema=None) as batch_op:
        batch_op.add_column(sa.Column('paused_at', storage.models.UTCDateTime(), nullable=True))

    with op.batch_alter_table('outgoing_message', schema=None) as batch_op:
        batch_op.create_index('ix_outgoing_account_kind_sent', ['account_id', 'kind', 'sent_at'], unique=False)
        batch_op.create_index('ix_outgoing_customer_sent', ['customer_id', 'sent_at'], unique=False)

    with op.batch_alter_table('scheduled_message', schema=None) as batch_op:
        batch_op.alter_column('customer_id',
               existing_type=sa.INTEGER(),
               nullable=True)
        batch_op.drop_index(batch_op.f('ix_scheduled_message_customer_id'))
        batch_op.create_index('ix_scheduled_customer_sequence', ['customer_id', 'sequence', 'status'], unique=False)




def downgrade() -> None:

    with op.batch_alter_table('scheduled_message', schema=None) as batch_op:
        batch_op.drop_index('ix_scheduled_customer_sequence')
        batch_op.create_index(batch_op.f('ix_scheduled_message_customer_id'), ['customer_id'], unique=False)
        batch_op.alter_column('customer_id',
               existing_type=sa.INTEGER(),
               nullable=False)

    with op.batch_alter_table('outgoing_message', schema=None) as batch_op:
        batch_op.drop_index('ix_outgoing_customer_sent')
        batch_op.drop_index('ix_outgoing_account_kind_sent')

    with op.batch_alter_table('customer', schema=None) as batch_op:
        batch_op.drop_column('paused_at')


