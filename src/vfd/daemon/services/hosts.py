"""Storage hosts: store rows synced from the config, capacity, and per-host quota scopes."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from vfd import safedirs
from vfd.config import Config
from vfd.daemon.services import policies
from vfd.daemon.services.context import Caller, Daemon
from vfd.daemon.services.session_state import node_name
from vfd.errors import VfdError
from vfd.store.db import session_scope
from vfd.store.models import QuotaScope, StorageHost

log = logging.getLogger(__name__)


def sync_hosts(engine: Engine, config: Config) -> None:
    """Make the ``storage_host`` rows match ``config.hosts`` (rows of removed hosts are kept:
    folders may still point at them), with the node each one is on: none for a ``shared``
    host, this node for the others. A host another node holds as its own stays that node's
    (a warning says so: node-local hosts need names of their own per node)."""
    here = node_name(config)
    with session_scope(engine) as session:
        for name, path in config.hosts.items():
            node = None if name in config.shared_hosts else here
            row = session.get(StorageHost, name)
            if row is None:
                session.add(StorageHost(name=name, path=str(path), node=node))
                log.info("storage host %s added at %s", name, path)
                continue
            if row.path != str(path):
                log.warning("storage host %s moved from %s to %s", name, row.path, path)
                row.path = str(path)
            if row.node != node:
                if row.node is not None and node is not None:
                    log.warning(
                        "storage host %s is node %s's own storage; this node (%s) has a host "
                        "of that name too: folders on it run on node %s only. Give each "
                        "node's own storage a name of its own, or mark shared storage "
                        "`shared = true` on every node (docs/nodes.md)",
                        name,
                        row.node,
                        here,
                        row.node,
                    )
                    continue
                log.info(
                    "storage host %s is now %s",
                    name,
                    "shared by every node" if node is None else f"node {node}'s own",
                )
                row.node = node
            session.add(row)


def prepare_roots(config: Config) -> None:
    """Create missing host roots (0711, in 0700 parents) and tighten unsafe ones. A host whose
    root cannot be made safe is logged, not fatal: the other hosts stay usable and folder
    creation on it fails cleanly."""
    for name, path in config.hosts.items():
        try:
            safedirs.ensure_dir(path, safedirs.HOST_ROOT_MODE)
        except OSError as exc:
            log.error("storage host %s: cannot create its root %s: %s", name, path, exc)
        except VfdError as exc:
            log.error("storage host %s: %s", name, exc.message)


def capacity(path: Path) -> dict[str, int] | None:
    """Size, use and free space of the filesystem holding ``path``; None when unreadable."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    total = st.f_blocks * st.f_frsize
    free = st.f_bavail * st.f_frsize
    return {
        "total_bytes": total,
        "used_bytes": total - st.f_bfree * st.f_frsize,
        "free_bytes": free,
    }


def ensure_scope(
    session: Session, host: str, scope: str, max_bytes: int
) -> tuple[QuotaScope, bool]:
    """The quota scope row of ``(host, scope)``, made with ``max_bytes`` when missing."""
    row = session.exec(
        select(QuotaScope).where(QuotaScope.host == host, QuotaScope.scope == scope)
    ).first()
    if row is not None:
        return row, False
    row = QuotaScope(host=host, scope=scope, max_bytes=max_bytes)
    session.add(row)
    session.flush()
    return row, True


def list_hosts(daemon: Daemon, caller: Caller) -> dict[str, Any]:
    """The hosts the caller sees: whether they may create folders there, capacity, own quota."""
    scope = f"user:{caller.user.id.hex}"
    with daemon.session() as session:
        policy = policies.effective_policy(session, daemon, caller.user)
        rows = {
            r.host: r for r in session.exec(select(QuotaScope).where(QuotaScope.scope == scope))
        }
    hosts = []
    for name, path in sorted(daemon.config.hosts.items()):
        row = rows.get(name)
        quota = {
            "scope": scope,
            "max_bytes": row.max_bytes if row else policy.max_quota_scope_size,
            "max_files": row.max_files if row else 0,
            "used_bytes": row.used_bytes if row else 0,
            "used_files": row.used_files if row else 0,
        }
        hosts.append(
            {
                "name": name,
                "allowed": not policy.allowed_hosts or name in policy.allowed_hosts,
                "capacity": capacity(path),
                "quota": quota,
            }
        )
    return {"hosts": hosts}


def admin_hosts(daemon: Daemon, caller: Caller) -> dict[str, Any]:
    caller.require_admin()
    return {
        "hosts": [
            {"name": name, "path": str(path), "capacity": capacity(path)}
            for name, path in sorted(daemon.config.hosts.items())
        ]
    }
