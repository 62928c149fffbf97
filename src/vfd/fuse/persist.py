"""mountd's reads and writes of the metadata store. Every function blocks: run it in a thread.

mountd reads the ready folders and every quota scope at start, writes usage counters back
(only the ``used_*`` columns, so it never undoes a limit the daemon just set), and records
limits it is told. A scope row that does not exist yet is created, with its storage host row.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from vfd.config import Config
from vfd.folders import layout
from vfd.folders.quota import Limits, Usage
from vfd.store.db import session_scope
from vfd.store.models import QuotaScope, StorageHost, VFolder, VFolderStatus, utcnow


@dataclass(frozen=True)
class FolderRow:
    vfid: str
    host: str
    scope: str
    path: Path
    share_gid: int | None = None
    """A user folder's own group once shared ``rw`` (``vfd.fuse.groups``)."""


@dataclass(frozen=True)
class ScopeRow:
    host: str
    scope: str
    limits: Limits
    used: Usage


def load(engine: Engine, config: Config) -> tuple[list[FolderRow], list[ScopeRow]]:
    """The ready folders on this node's hosts, and every quota scope on them."""
    with session_scope(engine) as s:
        folders = [
            FolderRow(
                vf.id.hex,
                vf.host,
                vf.scope,
                layout.folder_path(
                    config.hosts[vf.host], layout.Scope.parse(vf.scope), uuid.UUID(vf.id.hex)
                ),
                vf.share_gid,
            )
            for vf in s.exec(select(VFolder).where(VFolder.status == VFolderStatus.READY))
            if vf.host in config.hosts
        ]
        scopes = [
            ScopeRow(
                q.host,
                q.scope,
                Limits(q.max_bytes, q.max_files),
                Usage(q.used_bytes, q.used_files),
            )
            for q in s.exec(select(QuotaScope))
            if q.host in config.hosts
        ]
    return folders, scopes


def _ensure_host(engine: Engine, config: Config, host: str) -> None:
    try:
        with session_scope(engine) as s:
            if s.get(StorageHost, host) is None:
                s.add(StorageHost(name=host, path=str(config.host_path(host))))
    except IntegrityError:
        pass  # made at the same moment by the daemon


def _upsert(
    engine: Engine, config: Config, host: str, scope: str, used: Usage, limits: Limits | None
) -> None:
    for attempt in range(3):
        try:
            with session_scope(engine) as s:
                row = s.exec(
                    select(QuotaScope).where(QuotaScope.host == host, QuotaScope.scope == scope)
                ).first()
                if row is None:
                    row = QuotaScope(host=host, scope=scope)
                row.used_bytes, row.used_files = used.bytes, used.files
                if limits is not None:
                    row.max_bytes, row.max_files = limits.max_bytes, limits.max_files
                row.updated_at = utcnow()
                s.add(row)
            return
        except IntegrityError:
            if attempt == 2:
                raise
            _ensure_host(engine, config, host)


def save_usage(engine: Engine, config: Config, rows: list[tuple[str, str, Usage]]) -> None:
    """Write the usage counters of some scopes."""
    for host, scope, used in rows:
        _upsert(engine, config, host, scope, used, None)


def save_limits(
    engine: Engine, config: Config, host: str, scope: str, limits: Limits, used: Usage
) -> None:
    """Record a scope's limits (and its usage now)."""
    _upsert(engine, config, host, scope, used, limits)
