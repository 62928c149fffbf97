"""pytest fixtures for testing vfd plugins; enable them in your ``conftest.py`` with::

    pytest_plugins = ["vfd.plugins.testing"]

Three levels, from the cheapest:

- **records**: :func:`session_view`, :func:`session_request`, :func:`folder_view` make the
  records hooks receive, with every field defaulted (override what the test is about);
- ``vfd_plugins``: a factory of hermetic plugin managers (:class:`PluginHarness`) holding the
  plugins you name and nothing else installed (vfd's built-ins on request), configured with
  the ``[plugins.NAME]`` sections you give; its methods call the hooks the way the daemon does
  (veto attribution, awaiting coroutines, isolating notifications) from a plain test function;
- ``vfd_test_daemon``: a real vfd daemon (SQLite, in a temporary state directory, serving its
  API socket from a thread of the test process) with a hermetic manager: vfd's built-ins
  only. ``vfd_register_plugin(plugin)`` registers a plugin on it for one test, so the test
  can drive the daemon through its API (:meth:`TestDaemon.http`) or the ``vfd`` command
  (:meth:`TestDaemon.cli`) and look at what the plugin saw. It runs no mountd: folders are
  made and trashed, not mounted; sessions need a full node (``vfd up``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from vfd.config import Config, load_config
from vfd.plugins.loading import GROUP, PluginRecord
from vfd.plugins.manager import Plugins, build_manager
from vfd.plugins.types import ContainerContribution, FolderView, SessionRequest, SessionView

START_TIMEOUT = 30.0

# ---------------------------------------------------------------------------- records


def session_view(**overrides: Any) -> SessionView:
    """A :class:`SessionView` of a running session of ``vfd-test/busybox:latest``; any field
    may be given."""
    fields: dict[str, Any] = {
        **_asked(),
        "id": uuid.uuid4(),
        "node": "test-node",
        "status": "preparing",
        "created_at": datetime.now(UTC),
    }
    fields.update(overrides)
    return SessionView(**fields)


def session_request(**overrides: Any) -> SessionRequest:
    """A :class:`SessionRequest` as ``vfd run IMAGE true`` makes it; any field may be given."""
    fields = _asked()
    fields.update(overrides)
    return SessionRequest(**fields)


def _asked() -> dict[str, Any]:
    """The fields of a session that ``vfd run vfd-test/busybox:latest true`` asks for (the
    defaults of :func:`session_request`, and of :func:`session_view` as far as they go)."""
    return {
        "user_id": uuid.uuid4(),
        "user_email": "user@example.org",
        "uid": 1000,
        "gid": 1000,
        "name": "test-session",
        "image": "vfd-test/busybox:latest",
        "command": ("true",),
        "env": {},
        "cpu": 1.0,
        "memory": 0,
        "mounts": (),
    }


def folder_view(**overrides: Any) -> FolderView:
    """A :class:`FolderView` of a ready user folder; any field may be given."""
    fields: dict[str, Any] = {
        "id": uuid.uuid4(),
        "name": "data",
        "host": "local",
        "ownership": "user",
        "owner_id": uuid.uuid4(),
        "usage_mode": "general",
        "status": "ready",
    }
    fields.update(overrides)
    return FolderView(**fields)


# ---------------------------------------------------------------------------- managers


def builtin_entry_points() -> list[importlib.metadata.EntryPoint]:
    """The entry points of vfd's own plugins (the ``vfd`` distribution's ``vfd`` group)."""
    return [
        ep
        for ep in importlib.metadata.entry_points(group=GROUP)
        if ep.dist is not None and ep.dist.metadata["Name"] == "vfd"
    ]


def _named(plugins: tuple[object, ...]) -> list[tuple[str, object]]:
    out = []
    for plugin in plugins:
        if isinstance(plugin, tuple):
            out.append((str(plugin[0]), plugin[1]))
        else:
            name = getattr(plugin, "__name__", None) or type(plugin).__name__
            out.append((name.rsplit(".", 1)[-1], plugin))
    return out


def make_plugins(
    *plugins: object,
    sections: Mapping[str, Mapping[str, Any]] | None = None,
    builtins: bool = False,
    trace: bool = False,
    config: Config | None = None,
) -> Plugins:
    """A hermetic plugin manager: ``plugins`` (objects or modules, named by their
    ``__name__``'s last part or their class; or ``(name, plugin)`` pairs) and, with
    ``builtins``, vfd's own — nothing else installed. Not started: ``await start()`` calls
    ``vfd_configure`` with ``sections``."""
    if config is None:
        config = load_config(state_dir=Path(tempfile.gettempdir()) / "vfd-plugin-tests", env={})
    config = dataclasses.replace(
        config,
        plugins={k: dict(v) for k, v in (sections or {}).items()},
        plugin_trace=trace,
    )
    return build_manager(
        config,
        entry_points=builtin_entry_points() if builtins else (),
        plugins=_named(plugins),
    )


class PluginHarness:
    """A started hermetic manager whose hooks a plain (synchronous) test calls; each call
    runs on a fresh event loop, as the daemon would call it on its own."""

    def __init__(self, plugins: Plugins) -> None:
        self.plugins = plugins
        asyncio.run(plugins.start())

    def record(self, name: str) -> PluginRecord:
        """How plugin ``name`` is listed (its hooks, its error)."""
        for record in self.plugins.records:
            if record.name == name:
                return record
        raise KeyError(name)

    def validate_session(self, request: SessionRequest) -> None:
        """Raises ``VfdError(session_rejected)`` naming the plugin that refused."""
        asyncio.run(self.plugins.validate_session(request))

    def container_spec(self, session: SessionView) -> list[tuple[str, ContainerContribution]]:
        return asyncio.run(self.plugins.container_spec(session))

    def before_start(self, session: SessionView) -> None:
        """Raises :class:`~vfd.plugins.manager.Vetoed` (``.plugin``, ``.reason``) on a veto."""
        asyncio.run(self.plugins.before_start(session))

    def notify(self, hook: str, **kwargs: Any) -> None:
        """A notification hook; what raises is logged and counted, never raised here."""
        asyncio.run(self.plugins.notify(hook, **kwargs))


@pytest.fixture
def vfd_plugins(tmp_path: Path) -> Callable[..., PluginHarness]:
    """``vfd_plugins(plugin, ..., sections={"name": {...}}, builtins=False, trace=False)``: a
    started :class:`PluginHarness` holding only those plugins."""
    config = load_config(state_dir=tmp_path, env={})

    def make(*plugins: object, **kwargs: Any) -> PluginHarness:
        return PluginHarness(make_plugins(*plugins, config=config, **kwargs))

    return make


# ---------------------------------------------------------------------------- a daemon


class TestDaemon:
    """A vfd daemon serving its API socket from a thread of this process (no mountd)."""

    __test__ = False  # not a test class, whatever its name

    def __init__(self, state_dir: Path, config_text: str = "", plugins: tuple[object, ...] = ()):
        from vfd.daemon.connections import protocol_class
        from vfd.daemon.mountlink import MountdLink
        from vfd.daemon.server import bind_unix
        from vfd.daemon.services.context import Daemon
        from vfd.daemon.services.hosts import prepare_roots, sync_hosts
        from vfd.store.db import make_engine, migrate

        self.state_dir = state_dir
        (state_dir / "vfd.toml").write_text(config_text)
        self.config = load_config(state_dir=state_dir, env={})
        self.env = {"VFD_STATE_DIR": str(state_dir)}
        self.engine = make_engine(self.config.database_url)
        migrate(self.engine)
        sync_hosts(self.engine, self.config)
        prepare_roots(self.config)
        self.plugins = build_manager(
            self.config, entry_points=builtin_entry_points(), plugins=_named(plugins)
        )
        daemon = Daemon(
            config=self.config,
            engine=self.engine,
            mountd=MountdLink(self.config.mountd_socket),
            plugins_=self.plugins,
        )
        self._socket = bind_unix(self.config.api_socket)
        self._server = _uvicorn_server(daemon, protocol_class(self.config.limits))
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, name="vfd-test-daemon", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the test daemon did not start: {self._failure!r}")
            time.sleep(0.02)

    def _serve(self) -> None:
        try:
            asyncio.run(self._server.serve(sockets=[self._socket]))
        except BaseException as exc:
            self._failure = exc

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(30)
        self._socket.close()
        with contextlib.suppress(OSError):
            self.config.api_socket.unlink()
        self.engine.dispose()

    def http(self, as_: str | None = None) -> httpx.Client:
        """A client of the API socket, as root (acting for ``as_`` when given)."""
        return httpx.Client(
            transport=httpx.HTTPTransport(uds=str(self.config.api_socket)),
            base_url="http://vfd",
            headers={"X-Vfd-Act-As": as_} if as_ else {},
            timeout=60,
        )

    def cli(self, *args: str, as_: str | None = None) -> subprocess.CompletedProcess[str]:
        """``vfd [--as EMAIL] ARGS...`` against this daemon, output captured (not checked)."""
        argv = [sys.executable, "-c", "from vfd.cli.main import main; main()"]
        if as_:
            argv += ["--as", as_]
        env = {k: v for k, v in os.environ.items() if not k.startswith("VFD_")}
        return subprocess.run(
            [*argv, *args], capture_output=True, text=True, env={**env, **self.env}, timeout=120
        )

    def user(self, email: str | None = None, uid: int = 20000) -> dict[str, Any]:
        """A new user (a unique email unless given)."""
        email = email or f"u{uuid.uuid4().hex[:8]}@example.org"
        with self.http() as http:
            answer = http.post("/v1/admin/users", json={"email": email, "uid": uid, "gid": uid})
            answer.raise_for_status()
            user: dict[str, Any] = answer.json()
            return user

    def settle(self, timeout: float = 10.0) -> None:
        """Wait until the notifications the daemon scheduled have been delivered."""
        loop = self.plugins._loop
        if loop is None:
            return
        asyncio.run_coroutine_threadsafe(self.plugins.settle(), loop).result(timeout)

    @contextlib.contextmanager
    def registered(self, plugin: object, name: str | None = None) -> Iterator[PluginRecord]:
        """``plugin`` registered while the block runs (checked as a loaded plugin is)."""
        (plugin_name, obj) = _named(((name, plugin) if name else plugin,))[0]
        record = self.plugins.add(plugin_name, obj)
        if record.error is not None:
            self.plugins.remove(plugin_name)
            raise ValueError(f"plugin {plugin_name} cannot be registered: {record.error}")
        try:
            yield record
        finally:
            self.settle()
            self.plugins.remove(plugin_name)


def _uvicorn_server(daemon: Any, protocol: type[asyncio.Protocol]) -> Any:
    import uvicorn

    from vfd.daemon.app import create_app

    return uvicorn.Server(
        uvicorn.Config(
            create_app(daemon),
            http=protocol,
            ws="none",
            lifespan="on",
            log_config=None,
            server_header=False,
        )
    )


@pytest.fixture(scope="module")
def vfd_test_daemon(request: pytest.FixtureRequest) -> Iterator[TestDaemon]:
    """A running daemon shared by a module's tests (vfd's built-in plugins only; a module may
    set ``VFD_TEST_DAEMON_CONFIG = "toml text"`` for its ``vfd.toml``)."""
    state_dir = Path(tempfile.mkdtemp(prefix="vfd-plugin-", dir="/tmp"))
    try:
        daemon = TestDaemon(state_dir, getattr(request.module, "VFD_TEST_DAEMON_CONFIG", ""))
        try:
            yield daemon
        finally:
            daemon.stop()
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)


@pytest.fixture
def vfd_register_plugin(
    vfd_test_daemon: TestDaemon,
) -> Iterator[Callable[..., PluginRecord]]:
    """``vfd_register_plugin(plugin, name=None)``: register ``plugin`` on ``vfd_test_daemon``
    for this test only."""
    with contextlib.ExitStack() as stack:

        def register(plugin: object, name: str | None = None) -> PluginRecord:
            return stack.enter_context(vfd_test_daemon.registered(plugin, name))

        yield register
