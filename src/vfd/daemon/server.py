"""``vfd daemon``: migrate the store, bind the API sockets, serve until SIGTERM.

Start-up order matters to systemd (``Type=notify``): ``READY=1`` is sent only once the store
is migrated, the storage hosts are synced and the API sockets accept connections. SIGTERM or
SIGINT stops accepting, lets running requests finish, sends ``STOPPING=1`` and returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import resource
import signal
import socket
import stat
from collections.abc import Generator
from pathlib import Path

import uvicorn
import uvloop
from sqlalchemy.exc import SQLAlchemyError

from vfd import safedirs
from vfd.config import Config
from vfd.daemon import systemd
from vfd.daemon.app import create_app
from vfd.daemon.connections import protocol_class
from vfd.daemon.mountlink import MountdLink
from vfd.daemon.runtime import BackgroundTask
from vfd.daemon.services.context import Daemon
from vfd.daemon.services.hosts import prepare_roots, sync_hosts
from vfd.errors import ErrorCode, VfdError
from vfd.logs import setup_logging
from vfd.store.db import make_engine, migrate

log = logging.getLogger(__name__)

GRACEFUL_TIMEOUT = 10
SOMAXCONN = Path("/proc/sys/net/core/somaxconn")


def raise_fd_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit (systemd starts services
    with a soft limit of 1024: one user's connections could use them all); the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (OSError, ValueError) as exc:
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, hard, exc)
            return soft
        return hard
    return soft


def check_backlog(backlog: int) -> None:
    """Say when the kernel will cut the listen backlog (``net.core.somaxconn``)."""
    try:
        somaxconn = int(SOMAXCONN.read_text())
    except (OSError, ValueError):
        return
    if somaxconn < backlog:
        log.warning(
            "listen backlog %d is cut to %d by net.core.somaxconn; raise it "
            "(sysctl -w net.core.somaxconn=%d) for bursts of connections",
            backlog,
            somaxconn,
            backlog,
        )


def bind_unix(path: Path) -> socket.socket:
    """Bind the API socket at ``path`` (mode 0666), replacing a stale one.

    A socket file that still answers belongs to a running daemon and is left alone.
    """
    safedirs.ensure_socket_dir(path)
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(path.lstat().st_mode):
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(str(path))
            except OSError:
                pass
            else:
                raise VfdError(
                    ErrorCode.CONFIG_INVALID,
                    f"api_socket: {path} is in use by a running daemon",
                    key="api_socket",
                )
            finally:
                probe.close()
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        os.chmod(path, 0o666)
    except OSError as exc:
        sock.close()
        raise VfdError(
            ErrorCode.CONFIG_INVALID, f"api_socket: cannot bind {path}: {exc}", key="api_socket"
        ) from None
    return sock


def bind_tcp(listen: str, backlog: int) -> socket.socket:
    """Bind ``HOST:PORT`` (``[v6addr]:PORT`` for IPv6)."""
    host, sep, port_text = listen.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise VfdError(
            ErrorCode.CONFIG_INVALID,
            f"tcp_listen: {listen!r} is not HOST:PORT",
            key="tcp_listen",
        )
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, int(port_text)), family=family, backlog=backlog)
    except OSError as exc:
        raise VfdError(
            ErrorCode.CONFIG_INVALID,
            f"tcp_listen: cannot listen on {listen}: {exc}",
            key="tcp_listen",
        ) from None


class _Server(uvicorn.Server):
    """uvicorn's server, with systemd notifications and asyncio-native signal handling.

    uvicorn's own signal capture re-raises the signal after shutdown, which would end the
    process with status -15 instead of a clean exit.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            yield
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    def _on_signal(self, sig: int) -> None:
        if self.should_exit:
            self.force_exit = True
            return
        log.info("%s received; stopping", signal.Signals(sig).name)
        systemd.notify("STOPPING=1\nSTATUS=stopping")
        self.should_exit = True

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if not self.started:
            return
        for sock in sockets or []:
            log.info("listening on %s", sock.getsockname() or "?")
        # what start-up made (modules, the app, the plugins, the store's metadata) lives as long
        # as the daemon: out of the collector's sight, a full collection need not walk it (one
        # could cost tens of milliseconds in the middle of an upload of many files)
        gc.collect()
        gc.freeze()
        systemd.notify("READY=1\nSTATUS=serving")


def background_tasks() -> list[tuple[str, BackgroundTask]]:
    """The daemon's background work, run in its runtime's task group (``vfd.daemon.runtime``)."""
    tasks: list[tuple[str, BackgroundTask]] = []
    interval = systemd.watchdog_interval()
    if interval is not None:

        async def watchdog() -> None:
            """``WATCHDOG=1`` from the event loop itself: a stalled loop misses its pings."""
            while True:
                systemd.notify("WATCHDOG=1")
                await asyncio.sleep(interval)

        tasks.append(("watchdog", watchdog))
    return tasks


async def serve_async(config: Config) -> None:
    """Run the daemon on the current loop until a stop signal."""
    systemd.notify("STATUS=migrating the store")
    engine = make_engine(config.database_url)
    sockets: list[socket.socket] = []
    try:
        # bound (not yet listening) first: a second daemon stops here, before the store
        sockets.append(bind_unix(config.api_socket))
        try:
            await asyncio.to_thread(migrate, engine)
            await asyncio.to_thread(sync_hosts, engine, config)
        except SQLAlchemyError as exc:
            raise VfdError(
                ErrorCode.CONFIG_INVALID,
                f"database_url: cannot open the store: {exc.__class__.__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}",
                key="database_url",
            ) from None
        await asyncio.to_thread(prepare_roots, config)
        if config.tcp_listen:
            sockets.append(bind_tcp(config.tcp_listen, config.limits.backlog))
        check_backlog(config.limits.backlog)
        daemon = Daemon(config=config, engine=engine, mountd=MountdLink(config.mountd_socket))
        uv_config = uvicorn.Config(
            create_app(daemon, background_tasks()),
            http=protocol_class(config.limits),
            ws="websockets-sansio",  # the session shell (peer credentials reach it too)
            lifespan="on",
            log_config=None,
            proxy_headers=False,
            server_header=False,
            timeout_graceful_shutdown=GRACEFUL_TIMEOUT,
            backlog=config.limits.backlog,
            timeout_keep_alive=config.limits.keepalive_timeout,
        )
        server = _Server(uv_config)
        await server.serve(sockets=sockets)
    finally:
        for sock in sockets:
            sock.close()
        if sockets:
            with contextlib.suppress(OSError):
                config.api_socket.unlink()
        engine.dispose()
    log.info("stopped")


def serve(config: Config) -> None:
    """The daemon's blocking entry point: logging set up, asyncio on uvloop, serve."""
    setup_logging(config.log_level)
    safedirs.prepare_state_dir(config)
    fds = raise_fd_limit()
    log.info(
        "vfd daemon starting (store %s, open-file limit %d)",
        config.database_url.split("://")[0],
        fds,
    )
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve_async(config))
