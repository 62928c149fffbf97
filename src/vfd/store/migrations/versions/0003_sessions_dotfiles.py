"""sessions, their events and mounts; dotfiles

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 03:32:22.110960
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dotfile",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("scope_kind", sa.String(length=16), nullable=False),
        sa.Column("scope", sa.String(length=80), nullable=False),
        sa.Column("path", sa.String(length=256), nullable=False),
        sa.Column("mode", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("scope", "path"),
    )
    with op.batch_alter_table("dotfile", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_dotfile_scope"), ["scope"], unique=False)

    op.create_table(
        "session",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("uid", sa.Integer(), nullable=False),
        sa.Column("gid", sa.Integer(), nullable=False),
        sa.Column("node", sa.String(length=128), nullable=False),
        sa.Column("image", sa.String(length=512), nullable=False),
        sa.Column("command", sa.JSON(), nullable=False),
        sa.Column("env", sa.JSON(), nullable=False),
        sa.Column("cpu", sa.Float(), nullable=False),
        sa.Column("memory", sa.BigInteger(), nullable=False),
        sa.Column("auto_remove", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_reason", sa.String(length=1024), nullable=True),
        sa.Column("status_plugin", sa.String(length=128), nullable=True),
        sa.Column("status_changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("scheduler_verdict", sa.String(length=1024), nullable=True),
        sa.Column("container_id", sa.String(length=80), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("terminated_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("session", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_session_name"), ["name"], unique=False)
        batch_op.create_index(batch_op.f("ix_session_node"), ["node"], unique=False)
        batch_op.create_index(batch_op.f("ix_session_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_session_user_id"), ["user_id"], unique=False)

    op.create_table(
        "sessionevent",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Uuid(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=1024), nullable=True),
        sa.Column("plugin", sa.String(length=128), nullable=True),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["session.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("sessionevent", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_sessionevent_session_id"), ["session_id"], unique=False
        )

    op.create_table(
        "sessionmount",
        sa.Column("session_id", sa.Uuid(), nullable=False),
        sa.Column("target", sa.String(length=1024), nullable=False),
        sa.Column("vfolder_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("permission", sa.String(length=16), nullable=False),
        sa.Column("automount", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["session.id"],
        ),
        sa.ForeignKeyConstraint(
            ["vfolder_id"],
            ["vfolder.id"],
        ),
        sa.PrimaryKeyConstraint("session_id", "target"),
    )
    with op.batch_alter_table("sessionmount", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_sessionmount_vfolder_id"), ["vfolder_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("sessionmount", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sessionmount_vfolder_id"))

    op.drop_table("sessionmount")
    with op.batch_alter_table("sessionevent", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sessionevent_session_id"))

    op.drop_table("sessionevent")
    with op.batch_alter_table("session", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_session_user_id"))
        batch_op.drop_index(batch_op.f("ix_session_status"))
        batch_op.drop_index(batch_op.f("ix_session_node"))
        batch_op.drop_index(batch_op.f("ix_session_name"))

    op.drop_table("session")
    with op.batch_alter_table("dotfile", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dotfile_scope"))

    op.drop_table("dotfile")
