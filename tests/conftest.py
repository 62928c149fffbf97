"""Shared fixtures: a fresh store on SQLite and PostgreSQL, and a running ``vfd daemon``.

- ``database_url`` (module scope): parametrized over ``sqlite`` and ``postgres``. PostgreSQL
  gets a fresh database per module (``CREATE DATABASE vfdt_<random>`` through the superuser DSN
  in ``VFD_TEST_PG_DSN``, dropped with ``FORCE`` afterwards). Without that variable the
  postgres cases skip, saying why, or fail when ``CI`` is set.
- ``vfd_daemon`` (module scope): ``python -m vfd.daemon --state-dir DIR`` on that store, ready
  when ``GET /v1/status`` answers; tests share it, so they use unique user and folder names
  (``make_user()`` makes unique emails).
  A module may configure its daemon with ``VFD_DAEMON_SETTINGS = {...}``.
- ``vfd_daemon_factory``: starts extra daemons with chosen config keys, for tests that need
  their own (a broken host, a systemd notify socket...).

When a test that uses a daemon fails, the daemon's log is added to the failure report.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy.engine import make_url

from vfd.config import Config, load_config

PG_ENV = "VFD_TEST_PG_DSN"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


# ---------------------------------------------------------------------------- databases


def postgres_dsn() -> str:
    """The PostgreSQL superuser DSN for tests; skips (or fails under CI) when unset."""
    dsn = os.environ.get(PG_ENV, "")
    if not dsn:
        if os.environ.get("CI"):
            pytest.fail(f"{PG_ENV} is not set but CI is: the PostgreSQL tests must run in CI")
        pytest.skip(
            f"PostgreSQL tests skipped: set {PG_ENV}=postgresql://USER:PASS@HOST/postgres "
            "(a role that may create databases) to run them"
        )
    return dsn


@contextlib.contextmanager
def fresh_database(kind: str, directory: Path) -> Iterator[str]:
    """A SQLAlchemy URL of an empty database: a new SQLite file, or a new PostgreSQL database
    dropped (with FORCE: a daemon may still hold connections) when the block ends."""
    if kind == "sqlite":
        yield f"sqlite:///{directory / 'vfd.db'}"
        return
    assert kind == "postgres", kind
    admin = make_url(postgres_dsn()).set(drivername="postgresql")
    name = f"vfdt_{secrets.token_hex(6)}"
    admin_dsn = admin.render_as_string(hide_password=False)
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ],
)
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """An empty store, once per module and backend."""
    with fresh_database(request.param, tmp_path_factory.mktemp("db")) as url:
        yield url


# ---------------------------------------------------------------------------- daemons


def free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str | Path):
        return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(value)


def write_config(path: Path, settings: dict[str, Any]) -> None:
    """Write ``settings`` (top-level keys, and dicts as tables) as TOML."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in settings.items() if not isinstance(v, dict)]
    for key, table in settings.items():
        if isinstance(table, dict):
            lines.append(f"\n[{key}]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in table.items()]
    path.write_text("\n".join(lines) + "\n")


class VfdDaemon:
    """A ``python -m vfd.daemon`` process and clients for it."""

    def __init__(self, state_dir: Path, log_path: Path, process: subprocess.Popen[bytes]):
        self.state_dir = state_dir
        self.log_path = log_path
        self.process = process
        self.config: Config = load_config(state_dir=state_dir, env={})
        self.env: dict[str, str] = {"VFD_STATE_DIR": str(state_dir)}
        self.socket_path: Path = self.config.api_socket
        self.tcp_url: str | None = (
            f"http://{self.config.tcp_listen}" if self.config.tcp_listen else None
        )
        self._clients: list[httpx.Client] = []
        self.http: httpx.Client = self.client()

    def client(self, **kwargs: Any) -> httpx.Client:
        """A new client over the unix socket (closed when the daemon stops)."""
        client = httpx.Client(
            transport=httpx.HTTPTransport(uds=str(self.socket_path)),
            base_url="http://vfd",
            timeout=60.0,
            **kwargs,
        )
        self._clients.append(client)
        return client

    def as_user(self, email: str) -> httpx.Client:
        """A client whose requests are performed as ``email`` (root acting through X-Vfd-Act-As)."""
        return self.client(headers={"X-Vfd-Act-As": email})

    def make_user(self, email: str | None = None, **fields: Any) -> dict[str, Any]:
        """Create a user through the admin API (a unique email unless given); the User JSON."""
        email = email or f"user-{secrets.token_hex(5)}@example.com"
        resp = self.http.post("/v1/admin/users", json={"email": email, **fields})
        assert resp.status_code == 201, resp.text
        user: dict[str, Any] = resp.json()
        return user

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Poll ``GET /v1/status`` until it answers 200; fail with the log if the daemon dies."""
        deadline = time.monotonic() + timeout
        last: str = "no answer yet"
        probe = httpx.Client(
            transport=httpx.HTTPTransport(uds=str(self.socket_path)),
            base_url="http://vfd",
            timeout=5.0,
        )
        with probe:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    pytest.fail(
                        f"vfd daemon exited with {self.process.returncode} before it was ready; "
                        f"log:\n{self.log()}"
                    )
                if not self._accepts():
                    time.sleep(0.05)
                    continue
                try:
                    resp = probe.get("/v1/status")
                    if resp.status_code == 200:
                        return
                    last = f"{resp.status_code} {resp.text}"
                except httpx.TransportError as exc:
                    last = repr(exc)
                time.sleep(0.05)
        self.stop(check=False)
        pytest.fail(f"vfd daemon not ready after {timeout}s ({last}); log:\n{self.log()}")

    def _accepts(self) -> bool:
        # a plain connect first: httpx leaks its socket when a unix connect fails
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            try:
                sock.connect(str(self.socket_path))
            except OSError:
                return False
            return True

    def stop(self, *, check: bool = True) -> int | None:
        """SIGTERM and wait; with ``check``, fail unless it stopped cleanly (status 0)."""
        for client in self._clients:
            client.close()
        self._clients.clear()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                if check:
                    pytest.fail(f"vfd daemon ignored SIGTERM; log:\n{self.log()}")
        code = self.process.returncode
        if check and code != 0:
            pytest.fail(f"vfd daemon exited with status {code}; log:\n{self.log()}")
        return code


def daemon_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a test daemon: ours without VFD_* or systemd variables."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("VFD_") and k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def _expand(value: Any, state_dir: Path) -> Any:
    """Replace ``{state_dir}`` in the strings of a settings tree."""
    if isinstance(value, str):
        return value.replace("{state_dir}", str(state_dir))
    if isinstance(value, dict):
        return {k: _expand(v, state_dir) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_expand(v, state_dir) for v in value]
    return value


@contextlib.contextmanager
def run_daemon(
    database_url: str,
    *,
    settings: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    wait: bool = True,
) -> Iterator[VfdDaemon]:
    """Start a daemon in a fresh state directory (under /tmp: socket paths stay short)."""
    state_dir = Path(tempfile.mkdtemp(prefix="vfd-", dir="/tmp"))
    state_dir.chmod(0o755)  # other uids must reach the socket (SO_PEERCRED tests)
    config: dict[str, Any] = {
        "database_url": database_url,
        "tcp_listen": f"127.0.0.1:{free_tcp_port()}",
    }
    config.update(_expand(settings or {}, state_dir))
    write_config(state_dir / "vfd.toml", config)
    log_path = state_dir / "daemon.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "vfd.daemon", "--state-dir", str(state_dir)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=daemon_env(env),
        )
    daemon = VfdDaemon(state_dir, log_path, process)
    try:
        if wait:
            daemon.wait_ready()
        yield daemon
    finally:
        try:
            daemon.stop(check=False)
        finally:
            shutil.rmtree(state_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def vfd_daemon(database_url: str, request: pytest.FixtureRequest) -> Iterator[VfdDaemon]:
    """A running daemon on ``database_url``, shared by the tests of a module.

    A test module may set ``VFD_DAEMON_SETTINGS = {...}`` (config keys; ``{state_dir}`` in
    strings is replaced by the daemon's state directory) to configure its daemon.
    """
    settings = getattr(request.module, "VFD_DAEMON_SETTINGS", None)
    with run_daemon(database_url, settings=settings) as daemon:
        yield daemon
        code = daemon.stop(check=False)
        if code != 0:
            pytest.fail(f"vfd daemon exited with status {code}; log:\n{daemon.log()}")


@pytest.fixture
def vfd_daemon_factory(
    database_url: str,
) -> Iterator[Callable[..., contextlib.AbstractContextManager[VfdDaemon]]]:
    """``with vfd_daemon_factory(settings={...}, env={...}) as daemon:`` — a private daemon on
    ``database_url``'s store, stopped at the end of the block."""

    def start(**kwargs: Any) -> contextlib.AbstractContextManager[VfdDaemon]:
        return run_daemon(database_url, **kwargs)

    yield start


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.failed:
        funcargs = getattr(item, "funcargs", {})
        for value in funcargs.values():
            if isinstance(value, VfdDaemon):
                report.sections.append(("vfd daemon log", value.log()[-20000:]))
    return report
