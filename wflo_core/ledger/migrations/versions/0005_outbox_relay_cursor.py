"""outbox: the relay keeps a cursor instead of marking every row it published

Marking a relayed row set ``published_at``, a column of the ``ix_outbox_pending`` predicate, so every
mark was a non-HOT update writing a new copy of the whole row and an entry in every index of it: the
relay spent more on its marks than on sending. ``outbox_cursor`` holds one number instead, the id up to
which every row is relayed (wflo_core/events/relay.py says how it is kept safe against rows that commit
out of id order). The partial index, which would now hold every row, is dropped.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

PENDING = sa.text('published_at IS NULL AND dead_lettered_at IS NULL')


def upgrade() -> None:
    op.create_table('outbox_cursor',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('relayed_through', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox_cursor'))
    )
    # Dropping the index locks the outbox until this migration commits, so no writer is halfway
    # through a row while the cursor starts below the oldest row still to relay.
    op.drop_index('ix_outbox_pending', table_name='outbox')
    op.execute(
        "INSERT INTO outbox_cursor (id, relayed_through, updated_at) SELECT 1, COALESCE("
        "(SELECT min(id) - 1 FROM outbox WHERE published_at IS NULL AND dead_lettered_at IS NULL), "
        "(SELECT max(id) FROM outbox), 0), CURRENT_TIMESTAMP"
    )


def downgrade() -> None:
    op.execute(
        "UPDATE outbox SET published_at = CURRENT_TIMESTAMP WHERE published_at IS NULL AND dead_lettered_at IS NULL "
        "AND id <= (SELECT relayed_through FROM outbox_cursor WHERE id = 1)"
    )
    op.create_index('ix_outbox_pending', 'outbox', ['id'], unique=False,
                    postgresql_where=PENDING, sqlite_where=PENDING)
    op.drop_table('outbox_cursor')
