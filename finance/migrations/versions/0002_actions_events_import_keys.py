"""pending actions, slack events, expense import keys, kpi indexes

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 10:34:20.295085
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import finance.types


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('pending_action',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('token', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('tool', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('args', sa.JSON(), nullable=False),
    sa.Column('preview', sa.JSON(), nullable=False),
    sa.Column('requested_by', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('team_id', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True),
    sa.Column('thread_key', sqlmodel.sql.sqltypes.AutoString(length=120), nullable=True),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
    sa.Column('decided_by', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
    sa.Column('decided_at', finance.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('result', sa.JSON(), nullable=False),
    sa.Column('created_at', finance.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', finance.types.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token')
    )
    with op.batch_alter_table('pending_action', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pending_action_status'), ['status'], unique=False)

    op.create_table('slack_event',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('event_id', sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
    sa.Column('team_id', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True),
    sa.Column('received_at', finance.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('event_id')
    )
    with op.batch_alter_table('anomaly', schema=None) as batch_op:
        batch_op.add_column(sa.Column('status_note', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True))

    with op.batch_alter_table('expense', schema=None) as batch_op:
        batch_op.add_column(sa.Column('import_key', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.create_unique_constraint('expense_import_key_key', ['import_key'])

    with op.batch_alter_table('journal_line', schema=None) as batch_op:
        batch_op.create_index('ix_journal_line_account_cover', ['account_id', 'location_id', 'amount_cents'], unique=False)
        batch_op.create_index('ix_journal_line_entry_cover', ['entry_id', 'account_id', 'location_id', 'member_id', 'amount_cents'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('journal_line', schema=None) as batch_op:
        batch_op.drop_index('ix_journal_line_entry_cover')
        batch_op.drop_index('ix_journal_line_account_cover')

    with op.batch_alter_table('expense', schema=None) as batch_op:
        batch_op.drop_constraint('expense_import_key_key', type_='unique')
        batch_op.drop_column('import_key')

    with op.batch_alter_table('anomaly', schema=None) as batch_op:
        batch_op.drop_column('status_note')

    op.drop_table('slack_event')
    with op.batch_alter_table('pending_action', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_pending_action_status'))

    op.drop_table('pending_action')
