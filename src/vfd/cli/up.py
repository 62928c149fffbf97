"""``vfd up``: mountd and the daemon in the foreground, for a laptop or a dev box.

Starts ``python -m vfd.fuse`` and waits until it answers ``health`` (skipped, with a warning,
where FUSE cannot work), then ``python -m vfd.daemon`` and waits until ``/v1/status`` answers;
prints where everything is, and whether sessions run (if not, why and how to turn them on);
forwards both logs to stderr prefixed with the process name. On Ctrl-C or SIGTERM it stops
the daemon, then mountd (which unmounts), and exits 0.

It supervises, as systemd would with ``Restart=on-failure``: a child that dies after it came
up is restarted on its own, with back-off (1 s, doubling to 30 s; reset once it has stayed up
for a minute), and the other is left alone — a crashed daemon does not touch mountd or the
mount, a crashed mountd comes back with its views (its start clears the dead mount) while the
daemon goes on serving. A child that dies before it ever came up (a bad config, say) stops
everything: ``vfd up`` exits 1 with that child's last log lines.

The children run in their own process group, so a terminal's Ctrl-C reaches only ``vfd up``,
which stops them in order; they also get SIGTERM should ``vfd up`` itself be killed.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Annotated, TextIO

import typer

from vfd import mountinfo, safedirs
from vfd.cli.client import VfdClient
from vfd.cli.context import state_of
from vfd.cli.output import print_warning
from vfd.cli.system import sessions_text
from vfd.config import Config, load_config
from vfd.errors import ErrorCode, VfdError
from vfd.mountctl import MountdClient

TAIL_LINES = 30
STOP_GRACE = 30.0
RESTART_MIN = 1.0
RESTART_MAX = 30.0
STABLE_AFTER = 60.0
"""Seconds a restarted child must stay up for its back-off to start again from RESTART_MIN."""
_PRIORITY_PREFIX = re.compile(r"^<(\d)>")
_LEVEL_WORDS = {"0": "error: ", "1": "error: ", "2": "error: ", "3": "error: ", "4": "warning: "}
"""What a forwarded line shows of its journald priority: errors and warnings stand out."""
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    """Ask Linux to SIGTERM the child when ``vfd up`` goes away without stopping it."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Child:
    """One supervised process: its log forwarded line by line, the last lines kept."""

    def __init__(self, name: str, argv: list[str], sink: TextIO) -> None:
        self.name = name
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            text=True,
            errors="replace",
            process_group=0,
            preexec_fn=_die_with_parent,
        )
        self._sink = sink
        self._thread = threading.Thread(target=self._forward, name=f"log-{name}", daemon=True)
        self._thread.start()

    def _forward(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = _PRIORITY_PREFIX.sub(
                lambda m: _LEVEL_WORDS.get(m.group(1), ""), raw.rstrip("\n")
            )
            self.tail.append(line)
            with contextlib.suppress(OSError, ValueError):
                self._sink.write(f"{self.name:>6} | {line}\n")
                self._sink.flush()
        self.proc.stdout.close()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace: float = STOP_GRACE) -> int:
        """SIGTERM, then SIGKILL after ``grace`` seconds; the exit status."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                print_warning(f"{self.name} did not stop within {grace:g}s; killing it")
                self.proc.kill()
                self.proc.wait()
        self._thread.join(5)
        return self.proc.returncode

    def died(self) -> VfdError:
        """Print the last log lines of a child that exited; the error to report."""
        self._thread.join(5)
        sys.stderr.write(f"last log lines of {self.name}:\n")
        sys.stderr.writelines(f"  {line}\n" for line in self.tail)
        sys.stderr.flush()
        code = (
            ErrorCode.MOUNTD_UNAVAILABLE if self.name == "mountd" else ErrorCode.DAEMON_UNAVAILABLE
        )
        return VfdError(code, f"{self.name} exited with status {self.proc.returncode}")


def _fuse_unavailable() -> str | None:
    """Why mountd cannot run here, or None when it can."""
    if not Path("/dev/fuse").exists():
        return "/dev/fuse is missing (load the fuse module, or give the container /dev/fuse)"
    try:
        import pyfuse3  # noqa: F401
    except ImportError as exc:
        return f"pyfuse3 cannot be imported ({exc}); install libfuse3 and pyfuse3"
    if importlib.util.find_spec("vfd.fuse.__main__") is None:
        return "this vfd installation has no mount server (vfd.fuse.__main__)"
    return None


def _wait_until(
    ready: Callable[[], bool], child: Child, stop: threading.Event, deadline: float
) -> bool:
    """Poll ``ready`` until it holds; False when stopped; the child's error when it died."""
    while not stop.is_set():
        if ready():
            return True
        if not child.alive():
            raise child.died()
        if time.monotonic() > deadline:
            raise VfdError(
                ErrorCode.INTERNAL, f"{child.name} did not come up in time; see its log above"
            )
        stop.wait(0.1)
    return False


def _mountd_ready(config: Config) -> bool:
    try:
        with MountdClient(config.mountd_socket, timeout=2.0) as client:
            client.call("health")
    except VfdError:
        return False
    return True


def _daemon_ready(config: Config) -> bool:
    try:
        with VfdClient(config.api_socket, timeout=5.0) as client:
            client.get("/v1/status")
    except VfdError as exc:
        return exc.code is not ErrorCode.DAEMON_UNAVAILABLE
    return True


def _sessions_line(config: Config) -> str | None:
    """What the daemon says of sessions on this node: on, or off with how to turn them on
    (None when it does not say: not an admin's view)."""
    try:
        with VfdClient(config.api_socket, timeout=30.0) as client:
            answer = client.get("/v1/status")
    except VfdError:
        return None
    sessions = answer.get("sessions")
    text = sessions_text(sessions)
    if isinstance(sessions, dict) and not sessions.get("on") and sessions.get("enabled") != "off":
        text = f"{text}; they start once docker answers, without a restart"
    return text


def _default_state_dir() -> Path | None:
    """Without ``--state-dir``: system paths as root, else a directory in the user's home."""
    if os.geteuid() == 0:
        return None
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "vfd"


def _console_url(listen: str) -> str:
    """Where a browser on this machine finds the web console served on ``listen``."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::"):
        host = socket.getfqdn()
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/console/"


def _banner(config: Config, mountd: bool, sessions: str | None) -> str:
    client = "vfd"
    if config.state_dir is not None:
        client += f" --state-dir {config.state_dir}"
    lines = [
        "vfd is up.",
        f"  API socket     {config.api_socket}",
        f"  mount point    {config.mount_point if mountd else '(none: mountd not running)'}",
        f"  database       {config.database_url}",
        f"  storage hosts  {', '.join(f'{n}={p}' for n, p in config.hosts.items())}",
        f"  sessions       {sessions or '(unknown: the daemon did not say)'}",
        f"  clients        {client} vfolder list",
    ]
    if config.tcp_listen:
        lines.append(
            f"  console        {_console_url(config.tcp_listen)}  (sign in: {client} console)"
        )
    if config.state_dir is not None:
        lines.append(f"                 or: export VFD_STATE_DIR={config.state_dir}")
    lines.append("Stop with Ctrl-C.")
    return "\n".join(lines)


def is_mounted(path: Path) -> bool:
    """Whether ``path`` is a mount point, dead FUSE mounts included (``os.path.ismount``
    cannot stat those: ENOTCONN)."""
    try:
        return bool(mountinfo.mounts_at(path.absolute()))
    except OSError:
        return os.path.ismount(path)


def _unmount_leftover(mount_point: Path) -> None:
    """Lazily unmount what a mountd that died (or was killed) left behind."""
    if is_mounted(mount_point) and shutil.which("fusermount3"):
        print_warning(f"{mount_point} is still mounted after mountd stopped; unmounting it")
        subprocess.run(["fusermount3", "-u", "-z", str(mount_point)], check=False)


class Service:
    """A child that ``vfd up`` keeps running: restarted with back-off once it has come up."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        ready: Callable[[], bool],
        cleanup: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.argv = argv
        self.ready = ready
        self.cleanup = cleanup
        self.child: Child | None = None
        self.restarts = 0
        self._delay = RESTART_MIN
        self._started = 0.0
        self._restart_at: float | None = None

    def start(self, stop: threading.Event, timeout: float) -> bool:
        """Start the child and wait until it answers (False: stopped meanwhile). Raises the
        child's error when it dies first."""
        self.child = Child(self.name, self.argv, sys.stderr)
        self._started = time.monotonic()
        return _wait_until(self.ready, self.child, stop, time.monotonic() + timeout)

    def supervise(self, stop: threading.Event, timeout: float) -> None:
        """Notice a death and schedule a restart; restart when its time has come."""
        now = time.monotonic()
        if self.child is not None and not self.child.alive():
            code = self.child.proc.returncode
            self.child.died()
            self.child = None
            if now - self._started >= STABLE_AFTER:
                self._delay = RESTART_MIN
            print_warning(
                f"{self.name} exited with status {code}; restarting it in {self._delay:g}s"
            )
            self._restart_at = now + self._delay
            self._delay = min(self._delay * 2, RESTART_MAX)
            if self.cleanup is not None:
                self.cleanup()
        if self.child is None and self._restart_at is not None and now >= self._restart_at:
            self._restart_at = None
            self.restarts += 1
            try:
                if self.start(stop, timeout):
                    print_warning(f"{self.name} restarted (restart {self.restarts})")
            except VfdError as exc:  # died again while starting: the next round retries
                print_warning(f"{self.name} did not come back: {exc.message}")

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop()


def up(
    ctx: typer.Context,
    no_mountd: Annotated[
        bool, typer.Option("--no-mountd", help="Run only the daemon (folders get no mount).")
    ] = False,
    start_timeout: Annotated[
        float,
        typer.Option("--start-timeout", min=1, help="Seconds each server may take to answer."),
    ] = 60.0,
) -> None:
    """Run mountd and the daemon in the foreground until Ctrl-C (embedded defaults)."""
    cli = state_of(ctx)
    state_dir = cli.state_dir
    if state_dir is None and not os.environ.get("VFD_STATE_DIR") and cli.config_file is None:
        state_dir = _default_state_dir()
    config = load_config(config_file=cli.config_file, state_dir=state_dir)
    safedirs.prepare_state_dir(config)
    args: list[str] = []
    if config.state_dir is not None:
        args += ["--state-dir", str(config.state_dir)]
    if cli.config_file is not None:
        args += ["--config", str(cli.config_file)]

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    services: list[Service] = []
    why_not: str | None = "not started"
    try:
        why_not = "disabled with --no-mountd" if no_mountd else _fuse_unavailable()
        if why_not is not None:
            print_warning(f"not starting mountd: {why_not}; folders will have no mount views")
        else:
            mountd = Service(
                "mountd",
                [sys.executable, "-m", "vfd.fuse", *args],
                lambda: _mountd_ready(config),
                cleanup=lambda: _unmount_leftover(config.mount_point),
            )
            services.append(mountd)
            mountd.start(stop, start_timeout)
        if not stop.is_set():
            daemon = Service(
                "daemon", [sys.executable, "-m", "vfd.daemon", *args], lambda: _daemon_ready(config)
            )
            services.append(daemon)
            if daemon.start(stop, start_timeout):
                typer.echo(_banner(config, why_not is None, _sessions_line(config)))
        while not stop.is_set():
            for service in services:
                service.supervise(stop, start_timeout)
            stop.wait(0.2)
    finally:
        for service in reversed(services):  # the daemon first, then mountd
            service.stop()
        if why_not is None:
            _unmount_leftover(config.mount_point)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    typer.echo("vfd stopped.")


def register(app: typer.Typer) -> None:
    """Add ``vfd up`` to the root command."""
    app.command("up")(up)
