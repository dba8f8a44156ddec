"""attempt rows held before sending; keys and step keys of any length

Every physical attempt gets its ``llm_calls`` row when its hold is taken (status ``held``), so a
call whose billing turns out unknown can be charged at its bound (``estimated``) by whoever closes
it: the settling step, hold expiry or the run close-out. Idempotency keys, hold keys and step keys
become TEXT: long dynamic step keys broke every call on Postgres.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import wflo_core.ledger.types

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

STEP_KEY_TABLES = ('steps', 'llm_calls', 'sandbox_runs', 'checkpoints', 'approvals', 'compensations')
MONEY = wflo_core.ledger.types.Money(precision=20, scale=10)


def upgrade() -> None:
    for table in STEP_KEY_TABLES:
        with op.batch_alter_table(table) as batch:
            batch.alter_column('step_key', type_=sa.Text(), existing_type=sa.String(length=255))
    with op.batch_alter_table('llm_calls') as batch:
        batch.alter_column('idempotency_key', type_=sa.Text(), existing_type=sa.String(length=128),
                           existing_nullable=False)
        batch.add_column(sa.Column('bound_usd', MONEY, nullable=False, server_default='0'))
        batch.add_column(sa.Column('max_output_tokens', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('requested_max_tokens', sa.Integer(), nullable=True))
        batch.create_check_constraint(op.f('ck_llm_calls_bound_usd_non_negative'), 'bound_usd >= 0')
    with op.batch_alter_table('budget_holds') as batch:
        batch.alter_column('call_key', type_=sa.Text(), existing_type=sa.String(length=128),
                           existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table('budget_holds') as batch:
        batch.alter_column('call_key', type_=sa.String(length=128), existing_type=sa.Text(),
                           existing_nullable=False)
    with op.batch_alter_table('llm_calls') as batch:
        batch.drop_constraint(op.f('ck_llm_calls_bound_usd_non_negative'), type_='check')
        batch.drop_column('requested_max_tokens')
        batch.drop_column('max_output_tokens')
        batch.drop_column('bound_usd')
        batch.alter_column('idempotency_key', type_=sa.String(length=128), existing_type=sa.Text(),
                           existing_nullable=False)
    for table in STEP_KEY_TABLES:
        with op.batch_alter_table(table) as batch:
            batch.alter_column('step_key', type_=sa.String(length=255), existing_type=sa.Text())
