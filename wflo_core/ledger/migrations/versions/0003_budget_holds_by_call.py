"""budget holds found by their call

Settling, releasing or estimating a call finds its holds by ``call_key``; without an index of its
own that was a scan of every hold ever taken, growing with the ledger.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_budget_holds_call_key', 'budget_holds', ['call_key'])


def downgrade() -> None:
    op.drop_index('ix_budget_holds_call_key', table_name='budget_holds')
