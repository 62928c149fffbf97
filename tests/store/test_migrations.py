"""The Alembic migrations build exactly the schema the SQLModel models describe.

Run on SQLite and PostgreSQL: upgrade an empty database, compare it with the models
(``alembic.autogenerate.compare_metadata`` must find nothing), and upgrade again (no-op).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

import vfd.store.models  # noqa: F401  (registers the tables)
from vfd.store.db import MIGRATIONS, alembic_config, make_engine, migrate


@pytest.fixture(scope="module")
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def _head(engine: Engine) -> str:
    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    assert head is not None
    return head


def _current(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def test_migrations_upgrade_empty_database_to_head(engine: Engine) -> None:
    assert _current(engine) is None
    migrate(engine)
    assert _current(engine) == _head(engine)
    tables = set(sa.inspect(engine).get_table_names())
    assert set(SQLModel.metadata.tables) <= tables


def _type_differs(context: Any, inspected: Any, metadata: Any, *_: Any) -> bool | None:
    """Stricter than alembic's default: string lengths count, and a TypeDecorator (the
    models' StrEnumType) is compared by the type it stores."""
    wanted = getattr(metadata.type, "impl_instance", metadata.type)
    if isinstance(wanted, sa.String) and isinstance(inspected.type, sa.String):
        return bool(wanted.length != inspected.type.length)
    return None


def test_migrations_match_the_models(engine: Engine) -> None:
    migrate(engine)
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": _type_differs, "compare_server_default": False}
        )
        diff = compare_metadata(context, SQLModel.metadata)
    assert diff == [], f"models and migrations differ; add a revision in {MIGRATIONS}: {diff}"


def test_migrations_upgrade_again_is_a_no_op(engine: Engine) -> None:
    migrate(engine)
    with engine.connect() as conn:
        before = sorted(sa.inspect(conn).get_table_names())
    migrate(engine)
    assert _current(engine) == _head(engine)
    with engine.connect() as conn:
        assert sorted(sa.inspect(conn).get_table_names()) == before
