"""ledger month totals

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 11:07:13.223491
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import finance.types


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('ledger_month_total',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('location_id', sa.Integer(), nullable=False),
    sa.Column('currency', sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
    sa.Column('month', sqlmodel.sql.sqltypes.AutoString(length=7), nullable=False),
    sa.Column('net_cents', sa.BigInteger(), nullable=False),
    sa.Column('debit_cents', sa.BigInteger(), nullable=False),
    sa.Column('member_net_cents', sa.BigInteger(), nullable=False),
    sa.Column('member_debit_cents', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['account.id'], ),
    sa.ForeignKeyConstraint(['location_id'], ['location.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('account_id', 'location_id', 'currency', 'month')
    )
    # existing books: fill the totals from the journal
    from sqlmodel import Session

    from finance.ledger import rebuild_month_totals

    rebuild_month_totals(Session(bind=op.get_bind()))


def downgrade() -> None:
    op.drop_table('ledger_month_total')
