"""vfolder clone: status reason and clone progress

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 00:55:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_COUNTERS = ("clone_total_bytes", "clone_total_files", "clone_done_bytes", "clone_done_files")


def upgrade() -> None:
    with op.batch_alter_table("vfolder", schema=None) as batch_op:
        batch_op.add_column(sa.Column("status_error", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("status_reason", sa.String(length=1024), nullable=True))
        batch_op.add_column(sa.Column("clone_source_id", sa.Uuid(), nullable=True))
        for name in _COUNTERS:
            batch_op.add_column(
                sa.Column(name, sa.BigInteger(), nullable=False, server_default="0")
            )


def downgrade() -> None:
    with op.batch_alter_table("vfolder", schema=None) as batch_op:
        for name in reversed(_COUNTERS):
            batch_op.drop_column(name)
        batch_op.drop_column("clone_source_id")
        batch_op.drop_column("status_reason")
        batch_op.drop_column("status_error")
