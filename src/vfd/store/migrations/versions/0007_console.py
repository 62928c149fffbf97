"""console: the web console's one-time sign-in links (consolelink) and signed-in browsers
(consolesession), each stored as the SHA-256 of its secret

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 07:20:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "consolelink",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("actor_id", sa.Uuid(), nullable=True),
        sa.Column("code_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code_sha256"),
    )
    with op.batch_alter_table("consolelink", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_consolelink_user_id"), ["user_id"], unique=False)
    op.create_table(
        "consolesession",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("actor_id", sa.Uuid(), nullable=True),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("token_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_sha256"),
    )
    with op.batch_alter_table("consolesession", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_consolesession_user_id"), ["user_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("consolesession", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_consolesession_user_id"))
    op.drop_table("consolesession")
    with op.batch_alter_table("consolelink", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_consolelink_user_id"))
    op.drop_table("consolelink")
