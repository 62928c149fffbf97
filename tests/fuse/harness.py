"""A real mountd for tests: ``python -m vfd.fuse`` on a temporary state directory.

    mountd = MountdProcess(tmp_path, entry_timeout=0)   # [fuse] options for vfd.toml
    mountd.start()                                      # returns once the mount is live
    folder = mountd.new_folder(max_bytes=1 << 20)       # backing dir + store rows + attach
    (folder.rw / "a").write_bytes(b"x")
    mountd.stop()                                       # SIGTERM; asserts the mount is gone

Folders are recorded in the store (a user or project row, a ``ready`` vfolder row, the quota
scope row) the way the daemon records them, so a restarted mountd serves them again.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from vfd.config import FD_CACHE_MIN, Config, load_config
from vfd.folders import layout
from vfd.mountctl import MountdClient
from vfd.store.db import make_engine, session_scope
from vfd.store.models import (
    Ownership,
    Project,
    StorageHost,
    User,
    VFolder,
    VFolderStatus,
)

START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


def fuse_unavailable() -> str | None:
    """Why real FUSE mounts cannot run here, or None when they can."""
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing"
    if shutil.which("fusermount3") is None:
        return "fusermount3 is not installed (apt install fuse3)"
    if os.geteuid() != 0:
        return "mountd needs root (it serves every user's files and mounts with allow_other)"
    return None


FAST_PATH_ENV = "VFD_FUSE_FAST_PATH"
"""A ``VFD_*`` variable child processes inherit: CI runs the mount tests a second time with it
set to ``off`` (mountd on pyfuse3's public API alone)."""
FD_CACHE_ENV = "VFD_FUSE_FD_CACHE"
"""The other one: the mount tests can be run with mountd's inode descriptor cache at its
smallest (``VFD_FUSE_FD_CACHE=16``), so that inodes are opened again from their handles all
the time."""
INHERITED = frozenset({FAST_PATH_ENV, FD_CACHE_ENV})


def child_env() -> dict[str, str]:
    """This process's environment without ``VFD_*`` variables, but for :data:`INHERITED`."""
    return {k: v for k, v in os.environ.items() if not k.startswith("VFD_") or k in INHERITED}


def toml_value(value: float | str) -> str:
    """``value`` as a TOML value (``[fuse]`` options of a test mountd)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def fd_cache_stats(mountd: MountdProcess) -> dict[str, int]:
    """The figures of mountd's inode descriptor cache it logged when it stopped."""
    found = re.findall(r"inode descriptor cache at the end: (.*)", mountd.log_path.read_text())
    assert found, f"mountd logged no descriptor cache figures:\n{mountd.log_tail()}"
    return {k: int(v) for k, v in (item.split("=") for item in found[-1].split())}


def assert_reopened(mountd: MountdProcess, *, by_handle: bool = True) -> None:
    """The (stopped) mountd found inodes whose descriptors it had evicted: by number, opening
    them again from their handles (``by_handle``), and by name (a lookup that compares the
    handles): its tests ran the way a small descriptor cache makes them run."""
    stats = fd_cache_stats(mountd)
    assert stats["evictions"] > 0 and stats["readopted"] > 0, stats
    if by_handle:
        assert stats["reopens"] > 0, stats


class Churn:
    """Looks up files of a folder of its own through the mount, in a thread, so that a mountd
    with a small descriptor cache keeps evicting the inodes that other tests use (the kernel
    asks again about each file once its entry times out)."""

    FILES = 256

    def __init__(self, mountd: MountdProcess, pause: float = 0.001) -> None:
        self.folder = mountd.new_folder()
        for i in range(self.FILES):
            (self.folder.backing / f"c{i}").write_bytes(b"c")
        self.pause = pause
        self.looked = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="churn", daemon=True)

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.pause):
                os.lstat(self.folder.rw / f"c{self.looked % self.FILES}")
                self.looked += 1
        except BaseException as exc:
            self.error = exc

    def __enter__(self) -> Churn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        assert self.error is None, f"churn failed: {self.error!r}"
        assert self.looked > 0


def churning_mountd(
    tmp: Path, *, by_handle: bool = True, **options: Any
) -> Iterator[MountdProcess]:
    """For a module fixture: a started mountd with the smallest descriptor cache and a
    :class:`Churn` beside its tests; once stopped, it must have reopened evicted inodes
    (:func:`assert_reopened`)."""
    proc = MountdProcess(tmp, env={"VFD_FUSE_FD_CACHE": str(FD_CACHE_MIN)}, **options)
    proc.start()
    try:
        with Churn(proc):
            yield proc
    finally:
        proc.close()
    assert_reopened(proc, by_handle=by_handle)


def is_mounted(path: Path) -> bool:
    target = str(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == target for line in f if len(line.split()) > 4)


@dataclass
class Folder:
    """A folder attached to a test mountd."""

    vfid: str
    scope: str
    backing: Path
    rw: Path
    ro: Path
    host: str = "local"


class MountdProcess:
    """A real ``python -m vfd.fuse`` subprocess on a tmp state dir."""

    def __init__(
        self,
        tmp: Path,
        *,
        env: dict[str, str] | None = None,
        nofile: int | None = None,
        **fuse_options: float | str,
    ) -> None:
        """``fuse_options`` go to the ``[fuse]`` table of vfd.toml; ``env`` is added to the
        child's environment (which otherwise carries no ``VFD_*`` variables but for
        :data:`INHERITED`); ``nofile`` is mountd's open-file limit, soft and hard."""
        self.tmp = tmp
        self.extra_env = dict(env or {})
        self.nofile = nofile
        self.state_dir = tmp / "state"
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = tmp / "mountd.log"
        body = ["[fuse]"] + [f"{k} = {toml_value(v)}" for k, v in fuse_options.items()]
        (self.state_dir / "vfd.toml").write_text("\n".join(body) + "\n")
        self.config: Config = load_config(state_dir=self.state_dir, env={})
        self.mount_point: Path = self.config.mount_point
        self.host_root: Path = self.config.host_path(self.config.default_host)
        self.proc: subprocess.Popen[bytes] | None = None
        self._engine: Any = None

    # -- process -------------------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        env = child_env()
        src = str(Path(__file__).resolve().parents[2] / "src")
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
        env.update(self.extra_env)
        return env

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def start(self) -> None:
        """Start mountd; return when ``health`` answers and the mount is live."""
        assert self.proc is None or self.proc.poll() is not None, "mountd already running"
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        try:
            limit = [] if self.nofile is None else ["prlimit", f"--nofile={self.nofile}", "--"]
            self.proc = subprocess.Popen(
                [*limit, sys.executable, "-m", "vfd.fuse", "--state-dir", str(self.state_dir)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env(),
                start_new_session=True,
            )
        finally:
            log.close()

        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"mountd exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            try:
                with self.client() as c:
                    c.call("health")
            except Exception:
                return False
            return is_mounted(self.mount_point) and os.path.isdir(self.mount_point / "rw")

        wait_until(ready, START_TIMEOUT, f"mountd to serve {self.mount_point}")

    def stop(self) -> None:
        """SIGTERM mountd, wait for it, and check that the mount is gone."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                self.force_unmount()
                raise AssertionError(f"mountd ignored SIGTERM:\n{self.log_tail()}") from None
        if is_mounted(self.mount_point):
            self.force_unmount()
            raise AssertionError(
                f"mountd left {self.mount_point} mounted (it exited with {proc.returncode}):\n"
                f"{self.log_tail()}"
            )

    def kill(self) -> None:
        """SIGKILL mountd (the mount stays behind, dead: ENOTCONN)."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def force_unmount(self) -> None:
        """Last-resort cleanup: lazily unmount whatever is left at the mount point."""
        if is_mounted(self.mount_point):
            subprocess.run(
                ["fusermount3", "-u", "-z", str(self.mount_point)], check=False, capture_output=True
            )

    def close(self) -> None:
        """Stop (or kill) mountd and release everything; safe to call twice."""
        try:
            self.stop()
        finally:
            self.kill()
            self.force_unmount()
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None

    def __enter__(self) -> MountdProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def client(self) -> MountdClient:
        return MountdClient(self.config.mountd_socket, timeout=60.0)

    def call(self, op: str, **fields: Any) -> dict[str, Any]:
        """One control request on a fresh connection."""
        with self.client() as c:
            return c.call(op, **fields)

    # -- folders -------------------------------------------------------------------------

    @property
    def engine(self) -> Any:
        if self._engine is None:
            self._engine = make_engine(self.config.database_url)
        return self._engine

    def _record(self, vfid: uuid.UUID, scope: layout.Scope, uid: int, gid: int) -> None:
        """The store rows the daemon would write for a new folder."""
        with session_scope(self.engine) as s:
            if s.get(StorageHost, "local") is None:
                s.add(StorageHost(name="local", path=str(self.host_root)))
            creator = uuid.UUID(int=0) if scope.kind == "project" else scope.owner
            if s.get(User, creator) is None:
                name = f"u{creator.hex[:12]}"
                s.add(User(id=creator, email=f"{name}@test", username=name, uid=uid, gid=gid))
            project_id = None
            if scope.kind == "project":
                project_id = scope.owner
                if s.get(Project, project_id) is None:
                    s.add(Project(id=project_id, name=f"p{project_id.hex[:12]}", gid=gid))
            s.flush()
            s.add(
                VFolder(
                    id=vfid,
                    name=f"f{vfid.hex[:12]}",
                    host="local",
                    ownership=Ownership(scope.kind),
                    user_id=creator if scope.kind == "user" else None,
                    project_id=project_id,
                    creator_id=creator,
                    status=VFolderStatus.READY,
                    scope=str(scope),
                )
            )

    def set_status(self, vfid: str, status: VFolderStatus) -> None:
        with session_scope(self.engine) as s:
            row = s.exec(select(VFolder).where(VFolder.id == uuid.UUID(vfid))).one()
            row.status = status
            s.add(row)

    def new_folder(
        self,
        *,
        scope: str | None = None,
        uid: int = 0,
        gid: int = 0,
        max_bytes: int = 0,
        max_files: int = 0,
    ) -> Folder:
        """Create, record and attach a folder; its scope is a new user's unless given."""
        sc = layout.Scope.parse(scope) if scope else layout.Scope("user", uuid.uuid4())
        vfid = uuid.uuid4()
        backing = layout.folder_path(self.host_root, sc, vfid)
        layout.create_folder_dir(backing, uid=uid, gid=gid, project=sc.kind == "project")
        self._record(vfid, sc, uid, gid)
        with self.client() as c:
            c.call("attach", vfid=vfid.hex, host="local", scope=str(sc), path=str(backing))
            if max_bytes or max_files or scope is None:
                c.call(
                    "set_limits",
                    host="local",
                    scope=str(sc),
                    max_bytes=max_bytes,
                    max_files=max_files,
                )
        return Folder(
            vfid=vfid.hex,
            scope=str(sc),
            backing=backing,
            rw=self.mount_point / "rw" / vfid.hex,
            ro=self.mount_point / "ro" / vfid.hex,
        )

    def require_fast_path(self) -> None:
        """Skip the calling test, saying why, when mountd runs without its fast path (whose
        low-level handlers the test is about)."""
        status = self.call("health")["fast_path"]
        if not status["on"]:
            pytest.skip(f"mountd's fast path is off: {status['reason']}")

    def usage(self, folder: Folder) -> dict[str, Any]:
        """The scope's ``usage`` answer: max_bytes, max_files, used_bytes, used_files."""
        return self.call("usage", host=folder.host, scope=folder.scope)
