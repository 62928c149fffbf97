"""apps: a session's kind (compute or storage), its apps (sessionapp), the policy's
max_storage_sessions

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 07:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # plain ADD COLUMN (no batch copy): other rows point to session and resourcepolicy
    op.add_column(
        "session",
        sa.Column("kind", sa.String(length=16), nullable=False, server_default="compute"),
    )
    op.create_index(op.f("ix_session_kind"), "session", ["kind"], unique=False)
    op.add_column(
        "resourcepolicy",
        sa.Column("max_storage_sessions", sa.Integer(), nullable=False, server_default="2"),
    )
    op.create_table(
        "sessionapp",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("session_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("port", sa.Integer(), nullable=True),
        sa.Column("endpoint", sa.String(length=1024), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_reason", sa.String(length=1024), nullable=True),
        sa.Column("secret", sa.String(length=8192), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["session_id"], ["session.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("sessionapp", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sessionapp_session_id"), ["session_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_sessionapp_status"), ["status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("sessionapp", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sessionapp_status"))
        batch_op.drop_index(batch_op.f("ix_sessionapp_session_id"))
    op.drop_table("sessionapp")
    with op.batch_alter_table("resourcepolicy", schema=None) as batch_op:
        batch_op.drop_column("max_storage_sessions")
    with op.batch_alter_table("session", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_session_kind"))
        batch_op.drop_column("kind")
