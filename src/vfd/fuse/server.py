"""``vfd mountd``: the FUSE mount server.

Start-up, in order: raise the soft open-file limit to the hard one and size the inode
descriptor cache (``fuse.fd_cache``, ``vfd.fuse.handles``); migrate the store; load the
ready folders and every quota scope; rescan usage from the disks (before serving, so the
counters start exact); mount (clearing a stale mount left by a crashed predecessor); serve
the control socket; flush dirty usage counters to the store every ``fuse.flush_interval``
seconds. SIGINT/SIGTERM (or an external unmount) stop it: the counters are flushed, the mount
is unmounted, the control socket removed.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import signal
import subprocess
from functools import partial
from pathlib import Path

import pyfuse3
import trio

from vfd import mountinfo, safedirs
from vfd.config import Config
from vfd.errors import ErrorCode, VfdError
from vfd.fuse import groups, handles, hooks, libfuse, persist
from vfd.fuse.control import serve_control
from vfd.fuse.inodes import InodeTable
from vfd.fuse.loop import serve_requests
from vfd.fuse.ops import VfdOperations
from vfd.fuse.registry import KernelNotifier, Registry
from vfd.fuse.service import MountdService
from vfd.logs import setup_logging
from vfd.store.db import make_engine, migrate

log = logging.getLogger("vfd.fuse")

MOUNT_OPTIONS = frozenset(
    {
        "fsname=vfd",
        "subtype=vfd",
        "allow_other",
        "default_permissions",
        "nosuid",  # user data: no set-uid binaries, no device nodes that work
        "nodev",
    }
)
READ_AHEAD_KB = 1024
"""Read-ahead of the mount's bdi: with the kernel's 128 KiB default a sequential read arrives
as 128 KiB requests; 1 MiB ones cut the per-request cost eightfold."""
_MNT_DETACH = 2
MIN_TASKS = 16
MAX_TASKS = 64
"""pyfuse3 request tasks. Each task owns a 1 MiB receive buffer; with pyfuse3's default of
one idle task, tasks are started and ended (and buffers mapped and unmapped) all the time
under load, which costs more than the requests themselves."""


def _is_stale(path: Path) -> bool:
    # statfs always asks the server; a stat may be answered from the attribute cache
    try:
        os.statvfs(path)
    except OSError as exc:
        return exc.errno in (errno.ENOTCONN, errno.ECONNABORTED)
    return False


def prepare_mount_point(path: Path) -> None:
    """Make the mount point usable: lazily unmount a dead FUSE mount, create the directory."""
    if _is_stale(path):
        log.warning("%s is a stale FUSE mount (its server died); unmounting it", path)
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.umount2(os.fsencode(path), _MNT_DETACH) != 0:
            subprocess.run(["fusermount3", "-u", "-z", str(path)], check=False)
        if _is_stale(path):
            raise VfdError(ErrorCode.INTERNAL, f"cannot unmount the stale FUSE mount at {path}")
    safedirs.ensure_dir(path, safedirs.MOUNT_POINT_MODE)
    if os.path.ismount(path):
        raise VfdError(
            ErrorCode.INVALID_STATUS,
            f"{path} is already a mount point (is another mountd running?)",
            path=str(path),
        )


def _mount_dev(path: Path) -> str | None:
    """``major:minor`` of the mount at ``path``, from mountinfo (stat would wait for INIT)."""
    found = mountinfo.mounts_at(path)
    return found[-1].device if found else None  # the last one: the mount on top


def tune_bdi(path: Path) -> None:
    """Raise the mount's read-ahead (after INIT, which sets it to at most the default)."""
    try:
        os.stat(path)  # returns once the kernel has had its INIT answered
        dev = _mount_dev(path)
        if dev is not None:
            Path(f"/sys/class/bdi/{dev}/read_ahead_kb").write_text(str(READ_AHEAD_KB))
    except OSError as exc:
        log.info("cannot raise read-ahead of %s: %s", path, exc)


async def _fuse_main(
    done: trio.CancelScope, internals: libfuse.Internals | None, poll: float
) -> None:
    try:
        if internals is not None:
            await serve_requests(internals, poll)
        else:
            await pyfuse3.main(min_tasks=MIN_TASKS, max_tasks=MAX_TASKS)
    finally:
        done.cancel()  # unmounted from outside, or failed: stop everything


async def _wait_for_signal(done: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("got %s; unmounting", signal.Signals(signum).name)
            done.cancel()
            return


def fd_cache_size(config: Config) -> int:
    """Raise the open-file limit; the size of the inode descriptor cache under it."""
    soft, hard = handles.raise_fd_limit()
    auto = handles.auto_capacity(soft)
    size = auto if config.fuse.fd_cache is None else config.fuse.fd_cache
    if size > auto:
        log.warning(
            "fuse.fd_cache %d is more than the open-file limit %d leaves room for (%d); "
            "raise LimitNOFILE of vfd-mountd.service or lower fuse.fd_cache",
            size,
            soft,
            auto,
        )
    log.info(
        "inode descriptor cache: %d (%s; open-file limit %d, hard %d)",
        size,
        "auto" if config.fuse.fd_cache is None else "fuse.fd_cache",
        soft,
        hard,
    )
    return size


async def run(config: Config) -> None:
    """Run mountd until a signal or an unmount."""
    fd_cache = fd_cache_size(config)
    engine = make_engine(config.database_url)
    await trio.to_thread.run_sync(migrate, engine)
    folder_rows, scope_rows = await trio.to_thread.run_sync(persist.load, engine, config)
    notifier = KernelNotifier()
    registry = Registry(config, InodeTable(fd_cache), notifier)
    service = MountdService(config, registry, engine)
    service.load_scopes(scope_rows)
    for row in folder_rows:
        try:
            folder = registry.attach(row.vfid, row.host, row.scope, row.path)
            if row.share_gid is not None and groups.folder_group(folder) != row.share_gid:
                # shared rw while mountd was down: bring it under the rule before serving it
                await trio.to_thread.run_sync(groups.share_tree, folder.fd, row.share_gid)
        except (VfdError, OSError) as exc:
            log.error("folder %s cannot be served: %s", row.vfid, exc)
    result = await service.rescan()
    log.info(
        "serving %d folders, %d quota scopes (rescanned %d)",
        len(registry.folders),
        len(registry.scopes),
        len(result["scopes"]),
    )
    await trio.to_thread.run_sync(prepare_mount_point, config.mount_point)
    ops = VfdOperations(
        registry, entry_timeout=config.fuse.entry_timeout, attr_timeout=config.fuse.attr_timeout
    )
    # from here on the modes of files made in folders are the callers' (already masked by
    # their umask in the kernel); mountd's own directories and files got explicit modes
    os.umask(0)
    try:
        pyfuse3.init(ops, str(config.mount_point), set(MOUNT_OPTIONS))
    except RuntimeError as exc:
        raise VfdError(ErrorCode.INTERNAL, f"cannot mount at {config.mount_point}: {exc}") from None
    internals, fast_path = libfuse.probe(config.fuse.fast_path)
    if internals is not None and (why := hooks.install(ops, internals)) is not None:
        internals, fast_path = None, fast_path.off(why)
    service.fast_path = fast_path
    if fast_path.on:
        log.info("fast path on: libfuse %s at %s", fast_path.libfuse_version, fast_path.libfuse)
    else:
        log.warning(
            "fast path off (%s): pyfuse3's public API only; statfs reports the host file "
            "system, fallocate is emulated, listings always carry attributes",
            fast_path.reason,
        )
    notifier.start()
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_fuse_main, nursery.cancel_scope, internals, config.fuse.poll)
            nursery.start_soon(_wait_for_signal, nursery.cancel_scope)
            await nursery.start(service.clones.serve)
            await nursery.start(serve_control, service, config.mountd_socket)
            nursery.start_soon(service.flush_forever, config.fuse.flush_interval)
            nursery.start_soon(
                partial(trio.to_thread.run_sync, abandon_on_cancel=True),
                tune_bdi,
                config.mount_point,
            )
            log.info("mounted at %s; control socket %s", config.mount_point, config.mountd_socket)
    finally:
        notifier.stop()
        with trio.CancelScope(shield=True):
            try:
                await service.flush()
            except Exception:
                log.exception("final flush of quota usage failed")
        pyfuse3.close(unmount=True)
        log.info(
            "inode descriptor cache at the end: %s",
            " ".join(f"{k}={v}" for k, v in registry.table.fds.stats().items()),
        )
        ops.close()
        registry.close()
        engine.dispose()
        with contextlib.suppress(FileNotFoundError):
            config.mountd_socket.unlink()
        log.info("unmounted %s", config.mount_point)


def serve(config: Config) -> None:
    """Run mountd in the foreground until SIGINT/SIGTERM (blocking)."""
    setup_logging(config.log_level)
    safedirs.prepare_state_dir(config)
    trio.run(run, config)
