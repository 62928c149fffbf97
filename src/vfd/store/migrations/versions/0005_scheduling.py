"""scheduling: agents (nodes), resource groups and their access, session presets; session
limits in resource policies; a session's group, lifetime, last activity and verdicts; a
storage host's node

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 07:20:00.000000
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    groups = op.create_table(
        "resourcegroup",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("scheduler", sa.String(length=128), nullable=False),
        sa.Column("description", sa.String(length=1024), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.bulk_insert(
        groups,
        [
            {
                "name": "default",
                "scheduler": "",  # the leader's [sessions] scheduler
                "description": "",
                "created_at": datetime.now(UTC),
            }
        ],
    )
    op.create_table(
        "resourcegroupaccess",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("group", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("project_id", sa.Uuid(), nullable=True),
        sa.ForeignKeyConstraint(["group"], ["resourcegroup.name"]),
        sa.ForeignKeyConstraint(["project_id"], ["project.id"]),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("resourcegroupaccess", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_resourcegroupaccess_group"), ["group"], unique=False)
    op.create_table(
        "agent",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("address", sa.String(length=256), nullable=False),
        sa.Column("group", sa.String(length=64), nullable=False),
        sa.Column("cpu", sa.Float(), nullable=False),
        sa.Column("memory", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["group"], ["resourcegroup.name"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "sessionpreset",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("cpu", sa.Float(), nullable=False),
        sa.Column("memory", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    # plain ADD COLUMN (no batch copy): SQLite could not drop and remake tables that other
    # rows point to while foreign keys are enforced
    op.add_column(
        "resourcepolicy",
        sa.Column("max_sessions", sa.Integer(), nullable=False, server_default="0"),
    )
    for name in ("max_session_cpu", "idle_timeout", "max_lifetime"):
        op.add_column(
            "resourcepolicy", sa.Column(name, sa.Float(), nullable=False, server_default="0")
        )
    op.add_column(
        "resourcepolicy",
        sa.Column("max_session_memory", sa.BigInteger(), nullable=False, server_default="0"),
    )
    for name in ("allowed_images", "allowed_groups"):
        op.add_column(
            "resourcepolicy",
            sa.Column(name, sa.JSON(), nullable=False, server_default=sa.text("'[]'")),
        )
    op.add_column(
        "session",
        sa.Column("scheduler_verdicts", sa.JSON(), nullable=False, server_default=sa.text("'[]'")),
    )
    op.add_column(
        "session",
        sa.Column("group", sa.String(length=64), nullable=False, server_default="default"),
    )
    op.add_column("session", sa.Column("lifetime", sa.Float(), nullable=True))
    op.add_column(
        "session", sa.Column("last_activity_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.create_index(op.f("ix_session_group"), "session", ["group"], unique=False)
    op.add_column("storagehost", sa.Column("node", sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("storagehost", schema=None) as batch_op:
        batch_op.drop_column("node")
    with op.batch_alter_table("session", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_session_group"))
        for name in ("last_activity_at", "lifetime", "group", "scheduler_verdicts"):
            batch_op.drop_column(name)
    with op.batch_alter_table("resourcepolicy", schema=None) as batch_op:
        for name in (
            "allowed_groups",
            "allowed_images",
            "max_session_memory",
            "max_lifetime",
            "idle_timeout",
            "max_session_cpu",
            "max_sessions",
        ):
            batch_op.drop_column(name)
    op.drop_table("sessionpreset")
    op.drop_table("agent")
    with op.batch_alter_table("resourcegroupaccess", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_resourcegroupaccess_group"))
    op.drop_table("resourcegroupaccess")
    op.drop_table("resourcegroup")
