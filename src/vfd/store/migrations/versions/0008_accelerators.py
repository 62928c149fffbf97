"""accelerators: a session's slots and allocation, a node's accelerators, a policy's
max_slots, a preset's slots

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 13:20:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # plain ADD COLUMN (no batch copy): other rows point to session, agent and resourcepolicy
    op.add_column("session", sa.Column("slots", sa.JSON(), nullable=True))
    op.add_column("session", sa.Column("allocation", sa.JSON(), nullable=True))
    op.add_column("agent", sa.Column("accelerators", sa.JSON(), nullable=True))
    op.add_column(
        "resourcepolicy", sa.Column("max_slots", sa.JSON(), nullable=False, server_default="{}")
    )
    op.add_column(
        "sessionpreset", sa.Column("slots", sa.JSON(), nullable=False, server_default="{}")
    )


def downgrade() -> None:
    for table, column in (
        ("sessionpreset", "slots"),
        ("resourcepolicy", "max_slots"),
        ("agent", "accelerators"),
        ("session", "allocation"),
        ("session", "slots"),
    ):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column(column)
