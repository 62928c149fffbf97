"""vfolder.share_gid: a user folder's own group once it is shared rw

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 04:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("vfolder", schema=None) as batch_op:
        batch_op.add_column(sa.Column("share_gid", sa.BigInteger(), nullable=True))
        batch_op.create_unique_constraint("uq_vfolder_share_gid", ["share_gid"])


def downgrade() -> None:
    with op.batch_alter_table("vfolder", schema=None) as batch_op:
        batch_op.drop_constraint("uq_vfolder_share_gid", type_="unique")
        batch_op.drop_column("share_gid")
