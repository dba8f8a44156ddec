"""outbox: a partial index holding only the rows still to relay

``ix_outbox_pending`` was ``(published_at, id)`` over every row, so the relay's keyset read
(``published_at IS NULL AND dead_lettered_at IS NULL AND id > :after ORDER BY id``) was planned as
a primary-key scan that filtered past every published row: a read cost grew with the outbox's
history. The partial index on ``id`` holds the pending rows only, so a read costs its batch and an
UPDATE that publishes a row adds no entry to it.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

PENDING = sa.text('published_at IS NULL AND dead_lettered_at IS NULL')


def upgrade() -> None:
    op.drop_index('ix_outbox_pending', table_name='outbox')
    op.create_index('ix_outbox_pending', 'outbox', ['id'], unique=False,
                    postgresql_where=PENDING, sqlite_where=PENDING)


def downgrade() -> None:
    op.drop_index('ix_outbox_pending', table_name='outbox')
    op.create_index('ix_outbox_pending', 'outbox', ['published_at', 'id'], unique=False)
