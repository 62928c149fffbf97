"""What every service call gets: the daemon's shared state and the identity of the caller."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine
from sqlmodel import Session, text

from vfd.config import Config
from vfd.daemon.mountlink import MountdLink
from vfd.errors import ErrorCode, VfdError
from vfd.plugins.manager import Plugins, build_manager
from vfd.store.db import session_scope
from vfd.store.models import User, UserRole

# Folder names are unique per user only by checks in code (the accessible set spans several
# tables), so the check and the write must not interleave with another name-changing request.
_NAMES_LOCK = threading.Lock()
_PG_NAMES_LOCK_KEY = 7263002


@dataclass(frozen=True)
class Daemon:
    """State shared by every request: configuration, store engine, mountd link, plugins."""

    config: Config
    engine: Engine
    mountd: MountdLink
    plugins_: Plugins | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.plugins_ is None:
            object.__setattr__(self, "plugins_", build_manager(self.config))

    @property
    def plugins(self) -> Plugins:
        """The daemon's plugin manager (built with the daemon unless one was given)."""
        assert self.plugins_ is not None
        return self.plugins_

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A store transaction: committed on success, rolled back on any exception."""
        with session_scope(self.engine) as session:
            yield session

    @contextlib.contextmanager
    def naming(self) -> Iterator[Session]:
        """A transaction that may check folder names and then write them, serialised.

        A thread lock orders requests of this daemon; on PostgreSQL a transaction advisory
        lock orders the daemons of several nodes sharing the store.
        """
        with _NAMES_LOCK, self.session() as session:
            if self.engine.dialect.name == "postgresql":
                session.execute(text(f"SELECT pg_advisory_xact_lock({_PG_NAMES_LOCK_KEY})"))
            yield session


@dataclass(frozen=True)
class Caller:
    """Who a request is performed as.

    ``user`` is the effective user (the ``X-Vfd-Act-As`` target when an admin acts for
    someone); ``actor`` is who authenticated, recorded in audit events.
    """

    user: User
    actor: User
    via: str
    """``unix``, ``tcp`` (a bearer token) or ``console`` (the web console's session cookie)."""

    @property
    def is_admin(self) -> bool:
        return self.user.role == UserRole.ADMIN

    def require_admin(self) -> None:
        if not self.is_admin:
            raise VfdError(ErrorCode.ADMIN_REQUIRED, "this needs an administrator")
