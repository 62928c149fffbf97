"""``vfd up`` as a real process on a fresh state directory.

It must come up (``vfd status`` answers), serve requests, stop on SIGINT/SIGTERM with exit 0
leaving no mount and no sockets behind, and exit non-zero with the dead child's last log lines
when a child dies before it came up, and restart a child that crashes later without touching
the other. The mountd parts need FUSE; where it is missing they skip
saying why.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from vfdcli import Cli

from vfd.cli.up import is_mounted
from vfd.config import load_config
from vfd.errors import VfdError
from vfd.mountctl import MountdClient

UP_TIMEOUT = 90.0


def fuse_unavailable() -> str | None:
    if not Path("/dev/fuse").exists():
        return "/dev/fuse is missing"
    try:
        import pyfuse3  # noqa: F401
    except ImportError as exc:
        return f"pyfuse3 cannot be imported: {exc}"
    return None


def needs_fuse() -> None:
    why = fuse_unavailable()
    if why is not None:
        if os.environ.get("CI"):
            pytest.fail(f"FUSE is required in CI: {why}")
        print(f"mountd part of the vfd up test skipped: {why}")
        pytest.skip(f"mountd cannot run here: {why}")


class Up:
    """A running ``vfd --state-dir D up`` (or ``vfd --config FILE up``, with the output files
    next to D) with its output in files."""

    def __init__(
        self, vfd_bin: Path, state_dir: Path, *extra: str, config_file: Path | None = None
    ) -> None:
        self.state_dir = state_dir
        if config_file is None:
            self.config = load_config(state_dir=state_dir, env={})
            where = ["--state-dir", str(state_dir)]
            self.cli = Cli({"VFD_STATE_DIR": str(state_dir)})
        else:
            self.config = load_config(config_file=config_file, env={})
            where = ["--config", str(config_file)]
            self.cli = Cli({"VFD_CONFIG": str(config_file)})
        self.out_path = state_dir.parent / f"{state_dir.name}.out"
        self.err_path = state_dir.parent / f"{state_dir.name}.err"
        env = {k: v for k, v in os.environ.items() if not k.startswith("VFD_")}
        with self.out_path.open("w") as out, self.err_path.open("w") as err:
            self.proc = subprocess.Popen(
                [str(vfd_bin), *where, "up", *extra],
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env={**env, "COLUMNS": "200"},
            )

    @property
    def stdout(self) -> str:
        return self.out_path.read_text()

    @property
    def stderr(self) -> str:
        return self.err_path.read_text()

    def wait_status(self) -> None:
        """Poll ``vfd status`` until it answers; fail with the logs if ``vfd up`` exits."""
        deadline = time.monotonic() + UP_TIMEOUT
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"vfd up exited early:\n{self.stderr}"
            if self.cli.run("status").exit_code == 0 and "vfd is up" in self.stdout:
                return
            time.sleep(0.1)
        pytest.fail(f"vfd up did not come up in {UP_TIMEOUT}s:\n{self.stderr}")

    def wait_exit(self) -> int:
        try:
            return self.proc.wait(UP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"vfd up did not exit:\n{self.stderr}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.wait_exit()


@pytest.fixture
def state_dir() -> Iterator[Path]:
    """A fresh state directory under /tmp (socket paths stay short)."""
    parent = Path(tempfile.mkdtemp(prefix="vfdup-", dir="/tmp"))
    state = parent / "state"
    yield state
    mount = state / "mnt"
    if is_mounted(mount):
        subprocess.run(["fusermount3", "-u", "-z", str(mount)], check=False)
    shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture
def up(vfd_bin: Path, state_dir: Path) -> Iterator[Up]:
    running = Up(vfd_bin, state_dir)
    try:
        yield running
    finally:
        running.stop()


def _assert_nothing_left(up: Up) -> None:
    assert not is_mounted(up.config.mount_point), "vfd up left its mount behind"
    assert not up.config.api_socket.exists()
    assert not up.config.mountd_socket.exists()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_up_serves_then_stops_cleanly_on_a_signal(up: Up, signum: int) -> None:
    up.wait_status()
    out = up.stdout
    assert str(up.config.api_socket) in out and str(up.config.mount_point) in out
    assert f"vfd --state-dir {up.state_dir} vfolder list" in out
    assert f"export VFD_STATE_DIR={up.state_dir}" in out

    folder = up.cli.json("vfolder", "create", "via-up")
    assert folder["name"] == "via-up"
    assert "via-up" in up.cli.ok("vfolder", "list")
    status = up.cli.json("status")
    if fuse_unavailable() is None:
        assert status["mountd"] is not None
        assert is_mounted(up.config.mount_point)
    else:
        print(f"vfd up ran without mountd: {fuse_unavailable()}")

    up.proc.send_signal(signum)
    assert up.wait_exit() == 0, up.stderr
    assert up.stdout.rstrip().endswith("vfd stopped.")
    assert "daemon | " in up.stderr  # the children's logs were forwarded
    _assert_nothing_left(up)


def test_up_stops_mountd_when_the_daemon_dies(vfd_bin: Path, state_dir: Path) -> None:
    needs_fuse()
    state_dir.mkdir(parents=True)
    (state_dir / "vfd.toml").write_text('tcp_listen = "no-port-here"\n')  # the daemon refuses it
    up = Up(vfd_bin, state_dir)
    try:
        code = up.wait_exit()
    finally:
        up.stop()
    assert code == 1
    err = up.stderr
    assert "last log lines of daemon:" in err and "tcp_listen" in err
    assert err.rstrip().endswith("[daemon_unavailable]")
    assert "mountd | " in err and "unmounted" in err  # mountd was stopped, and unmounted
    _assert_nothing_left(up)


def _poll(what: str, condition: Callable[[], bool], up: Up) -> None:
    deadline = time.monotonic() + UP_TIMEOUT
    while time.monotonic() < deadline:
        assert up.proc.poll() is None, f"vfd up exited:\n{up.stderr}"
        if condition():
            return
        time.sleep(0.1)
    pytest.fail(f"{what} did not happen in {UP_TIMEOUT}s:\n{up.stderr}")


def _mountd_pid(up: Up) -> int | None:
    try:
        with MountdClient(up.config.mountd_socket, timeout=5) as mountd:
            pid: int = mountd.call("health")["pid"]
            return pid
    except VfdError:
        return None


def _daemon_pid(up: Up) -> int | None:
    """The pid of ``vfd up``'s daemon child (``python -m vfd.daemon``), if it runs."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
        if ppid == up.proc.pid and b"vfd.daemon" in argv:
            return int(proc.name)
    return None


def test_up_restarts_a_crashed_daemon_and_leaves_mountd_alone(up: Up) -> None:
    needs_fuse()
    up.wait_status()
    up.cli.json("vfolder", "create", "kept")
    mountd_before, daemon_before = _mountd_pid(up), _daemon_pid(up)
    assert mountd_before is not None and daemon_before is not None
    os.kill(daemon_before, signal.SIGKILL)
    _poll("the daemon's restart", lambda: "daemon restarted (restart 1)" in up.stderr, up)
    assert "daemon exited with status -9; restarting it in 1s" in up.stderr
    assert "last log lines of daemon:" in up.stderr
    _poll("the API answering", lambda: up.cli.run("status").exit_code == 0, up)
    assert _daemon_pid(up) not in (None, daemon_before)
    assert _mountd_pid(up) == mountd_before  # mountd and its mount were not touched
    assert "kept" in up.cli.ok("vfolder", "list")
    up.proc.send_signal(signal.SIGTERM)
    assert up.wait_exit() == 0, up.stderr
    _assert_nothing_left(up)


def test_up_restarts_a_crashed_mountd_and_its_views_come_back(up: Up) -> None:
    needs_fuse()
    up.wait_status()
    folder = up.cli.json("vfolder", "create", "survives")
    view = up.config.mount_point / "rw" / folder["id"].replace("-", "")
    (view / "before.txt").write_text("data")
    daemon_before, pid = _daemon_pid(up), _mountd_pid(up)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)  # a crash: no clean unmount
    _poll("mountd's restart", lambda: "mountd restarted (restart 1)" in up.stderr, up)
    err = up.stderr
    assert "last log lines of mountd:" in err
    assert "mountd exited with status -9; restarting it in 1s" in err
    assert _mountd_pid(up) not in (None, pid)
    assert _daemon_pid(up) == daemon_before  # the daemon went on serving
    assert (view / "before.txt").read_text() == "data"  # the view is back, with its data
    (view / "after.txt").write_text("more")
    up.proc.send_signal(signal.SIGTERM)
    assert up.wait_exit() == 0, up.stderr
    _assert_nothing_left(up)


def test_up_without_mountd_warns_and_serves(vfd_bin: Path, state_dir: Path) -> None:
    up = Up(vfd_bin, state_dir, "--no-mountd")
    try:
        up.wait_status()
        assert "warning: not starting mountd: disabled with --no-mountd" in up.stderr
        assert up.cli.json("status")["mountd"] is None
        assert "(none: mountd not running)" in up.stdout
        up.proc.send_signal(signal.SIGINT)
        assert up.wait_exit() == 0
    finally:
        up.stop()
    _assert_nothing_left(up)


def test_up_server_commands_serve_until_sigterm(vfd_bin: Path, state_dir: Path) -> None:
    """``vfd mountd`` and ``vfd daemon``, as systemd runs them: serve, stop on SIGTERM, exit 0."""
    needs_fuse()
    config = load_config(state_dir=state_dir, env={})
    env = {k: v for k, v in os.environ.items() if not k.startswith("VFD_")}
    env["VFD_STATE_DIR"] = str(state_dir)
    state_dir.mkdir(parents=True)
    log = state_dir.parent / "servers.log"
    with log.open("w") as out:
        mountd = subprocess.Popen([str(vfd_bin), "mountd"], stdout=out, stderr=out, env=env)
        daemon = subprocess.Popen([str(vfd_bin), "daemon"], stdout=out, stderr=out, env=env)
    try:
        cli = Cli({"VFD_STATE_DIR": str(state_dir)})
        deadline = time.monotonic() + UP_TIMEOUT
        while cli.run("status").exit_code != 0 or cli.json("status")["mountd"] is None:
            assert mountd.poll() is None and daemon.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        assert is_mounted(config.mount_point)
    finally:
        for proc in (daemon, mountd):
            proc.send_signal(signal.SIGTERM)
            proc.wait(UP_TIMEOUT)
    assert (daemon.returncode, mountd.returncode) == (0, 0), log.read_text()
    assert not is_mounted(config.mount_point)


def test_up_server_command_config_error_exits_1(vfd_bin: Path, state_dir: Path) -> None:
    state_dir.mkdir(parents=True)
    (state_dir / "vfd.toml").write_text("default_gid = -5\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VFD_")}
    for command in ("daemon", "mountd", "up"):
        done = subprocess.run(
            [str(vfd_bin), "--state-dir", str(state_dir), command],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 1, (command, done.stderr)
        assert "default_gid" in done.stderr and str(state_dir / "vfd.toml") in done.stderr
        assert done.stderr.rstrip().endswith("[config_invalid]")


# ---------------------------------------------------------------- modes of what vfd up makes

TMPFILES = Path(__file__).parents[2] / "systemd" / "vfd.tmpfiles.conf"


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def _tmpfiles_dirs() -> dict[Path, int]:
    """``d PATH MODE ...`` lines of systemd/vfd.tmpfiles.conf: the intended system modes."""
    dirs = {}
    for line in TMPFILES.read_text().splitlines():
        fields = line.split()
        if fields and fields[0] == "d":
            dirs[Path(fields[1])] = int(fields[2], 8)
    return dirs


def _nothing_replaceable(root: Path, skip: Path) -> None:
    """No directory under ``root`` (itself included) is world-writable without the sticky bit,
    and no file but the API socket is world-writable."""
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if here / d != skip]  # the mount: its own rules
        st = os.lstat(here)
        assert not (st.st_mode & stat.S_IWOTH and not st.st_mode & stat.S_ISVTX), (
            f"{here} is {stat.filemode(st.st_mode)}"
        )
        for name in filenames:
            mode = os.lstat(here / name).st_mode
            if name != "vfd.sock" and not stat.S_ISLNK(mode):
                assert not mode & stat.S_IWOTH, f"{here / name} is {stat.filemode(mode)}"


def _assert_store_and_sockets(up: Up) -> None:
    db = Path(up.config.database_url.removeprefix("sqlite:///"))
    assert _mode(db) == 0o600
    for sidecar in (Path(f"{db}-wal"), Path(f"{db}-shm")):
        if sidecar.exists():
            assert _mode(sidecar) == 0o600, sidecar
    assert stat.S_ISSOCK(os.lstat(up.config.api_socket).st_mode)
    assert _mode(up.config.api_socket) == 0o666  # anyone connects; SO_PEERCRED says who
    if fuse_unavailable() is None:
        assert stat.S_ISSOCK(os.lstat(up.config.mountd_socket).st_mode)
        assert _mode(up.config.mountd_socket) == 0o600
    for directory in (up.config.api_socket.parent, up.config.mountd_socket.parent):
        assert _mode(directory) == 0o755, directory


def test_up_state_dir_modes_are_safe(vfd_bin: Path, state_dir: Path) -> None:
    """Under a state directory: the directory 0755 (its API socket must be reachable), run/
    0755, hosts/ 0700, host roots 0711, the store 0600; a run/ an older vfd left 0777 is
    tightened; nothing another user could replace."""
    state_dir.mkdir(mode=0o755)
    (state_dir / "run").mkdir()
    (state_dir / "run").chmod(0o777)
    up = Up(vfd_bin, state_dir)
    try:
        up.wait_status()
        _nothing_replaceable(state_dir, skip=up.config.mount_point)
        assert _mode(state_dir) == 0o755
        assert _mode(state_dir / "hosts") == 0o700
        assert _mode(up.config.hosts["local"]) == 0o711
        _assert_store_and_sockets(up)
        if is_mounted(up.config.mount_point):
            assert _mode(up.config.mount_point) == 0o700  # the mount's root
    finally:
        up.stop()
    assert _mode(up.config.mount_point) == 0o755
    assert "run was writable by every user (mode 0777); tightening it to 0755" in up.stderr


def test_up_system_paths_modes_match_tmpfiles(vfd_bin: Path, state_dir: Path) -> None:
    """With the system defaults (no state directory) moved under a scratch root, every
    directory vfd makes has the mode systemd/vfd.tmpfiles.conf gives it, the store is 0600,
    the sockets' directory 0755, and a /run/vfd an older vfd left 0777 is tightened."""
    root = state_dir.parent / "root"
    empty = state_dir.parent / "empty.toml"
    empty.write_text("")
    defaults = load_config(config_file=empty, env={})  # what vfd uses without a state dir
    intended = _tmpfiles_dirs()
    db = Path(defaults.database_url.removeprefix("sqlite:///"))
    used = {
        db.parent,
        defaults.mount_point,
        defaults.api_socket.parent,
        defaults.mountd_socket.parent,
        *(host.parent for host in defaults.hosts.values()),
    }
    assert used <= set(intended), f"defaults use {used}, tmpfiles.d makes {set(intended)}"

    def moved(path: Path) -> str:
        return str(root / path.relative_to("/"))

    config = state_dir.parent / "system.toml"
    config.write_text(
        f'database_url = "sqlite:///{moved(db)}"\n'
        f'mount_point = "{moved(defaults.mount_point)}"\n'
        f'api_socket = "{moved(defaults.api_socket)}"\n'
        f'mountd_socket = "{moved(defaults.mountd_socket)}"\n'
        "[hosts]\n" + "".join(f'{n} = "{moved(p)}"\n' for n, p in defaults.hosts.items())
    )
    run_dir = Path(moved(defaults.api_socket.parent))
    run_dir.mkdir(parents=True)
    run_dir.chmod(0o777)
    up = Up(vfd_bin, state_dir, config_file=config)
    try:
        up.wait_status()
        _nothing_replaceable(root, skip=up.config.mount_point)
        _assert_store_and_sockets(up)
    finally:
        up.stop()
    for path, mode in intended.items():
        if path == defaults.mount_point and fuse_unavailable() is not None:
            continue  # no mountd, no mount point
        assert _mode(Path(moved(path))) == mode, f"{moved(path)}: {_mode(Path(moved(path))):04o}"
    for host in defaults.hosts.values():
        assert _mode(Path(moved(host))) == 0o711
    assert _mode(Path(moved(db))) == 0o600
    # the parents vfd made on the way (/var, /var/lib here) are private too
    assert _mode(root / "var") == 0o700 and _mode(root / "var" / "lib") == 0o700
