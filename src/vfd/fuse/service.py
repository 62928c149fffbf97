"""What the control socket asks of mountd: attach, detach, limits, usage, rescan, purge, clone,
and the backing descriptors of transfers (``vfd.fuse.direct``).

All of it runs on the trio thread next to the request handlers (the registry needs no locks);
the slow parts — tree walks, removing a tree, the store — run in worker threads.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

import trio
from sqlalchemy.engine import Engine

import vfd
from vfd.config import Config
from vfd.errors import ErrorCode, VfdError
from vfd.folders import layout
from vfd.folders.quota import Limits, Usage, scan_scope, scan_trees
from vfd.fuse import groups, persist
from vfd.fuse.clone import CloneJobs
from vfd.fuse.control import Connection
from vfd.fuse.direct import DirectGrants, syncfs
from vfd.fuse.guard import COUNTS
from vfd.fuse.libfuse import FastPathStatus
from vfd.fuse.ops_base import proc_path
from vfd.fuse.registry import Registry, check_vfid
from vfd.fuse.usage import ScopeUsage

log = logging.getLogger("vfd.fuse")

_SCOPE_DIR = re.compile(r"^(user|project)-([0-9a-f]{32})$")
SCAN_PARALLEL = 4
"""Scopes scanned at once (each scan walks with several threads of its own)."""


class MountdService:
    """The control operations over the registry, plus usage flushing to the store."""

    def __init__(self, config: Config, registry: Registry, engine: Engine | None) -> None:
        self.config = config
        self.reg = registry
        self.engine = engine
        self._scan_limiter = trio.CapacityLimiter(SCAN_PARALLEL)
        self.fast_path = FastPathStatus(config.fuse.fast_path, False, "not mounted yet")
        """Whether the low-level fast path runs (``vfd.fuse.libfuse.probe``), set at mount."""
        self.clones = CloneJobs(registry)
        self.direct = DirectGrants(registry)

    async def health(self) -> dict[str, Any]:
        return {
            "version": vfd.__version__,
            "mount_point": str(self.config.mount_point),
            "folders": len(self.reg.folders),
            "scopes": len(self.reg.scopes),
            "pid": os.getpid(),
            "inodes": len(self.reg.table),
            "open_files": len(self.reg.open_files.files),
            "requests": dict(COUNTS),
            "fast_path": self.fast_path.to_json(),
            "direct_grants": self.direct.outstanding,
        }

    async def attach(self, *, vfid: str, host: str, scope: str, path: str) -> dict[str, Any]:
        check_vfid(vfid)
        backing = self.reg.check_path(vfid, host, scope, path)
        self.clones.refuse_if_running(vfid, "attaching")
        self.reg.attach(vfid, host, scope, backing)
        await self.reg.notifier.drain()  # no cached "no such folder" outlives the reply
        mnt = self.config.mount_point
        return {"vfid": vfid, "rw": str(mnt / "rw" / vfid), "ro": str(mnt / "ro" / vfid)}

    async def detach(self, *, vfid: str) -> dict[str, Any]:
        self.reg.detach(check_vfid(vfid))
        await self.reg.notifier.drain()  # gone from the kernel's caches by the reply
        return {"vfid": vfid}

    async def set_limits(
        self, *, host: str, scope: str, max_bytes: int, max_files: int
    ) -> dict[str, Any]:
        usage = self.reg.set_limits(host, scope, Limits(max_bytes, max_files))
        if self.engine is not None:
            await trio.to_thread.run_sync(
                persist.save_limits, self.engine, self.config, host, scope, usage.limits, usage.used
            )
        return usage.to_json()

    async def usage(self, *, host: str, scope: str) -> dict[str, Any]:
        self.config.host_path(host)
        layout.Scope.parse(scope)
        return self.reg.existing_scope(host, scope).to_json()

    def _scopes_on_disk(self, host: str) -> set[str]:
        try:
            names = os.listdir(self.config.host_path(host))
        except FileNotFoundError:
            return set()
        return {f"{m[1]}:{m[2]}" for n in names if (m := _SCOPE_DIR.match(n))}

    async def rescan(self, *, host: str | None = None, scope: str | None = None) -> dict[str, Any]:
        """Recount scopes from the disk; the counters take the counted values."""
        hosts = [host] if host is not None else sorted(self.config.hosts)
        for h in hosts:
            self.config.host_path(h)
        if scope is not None:
            layout.Scope.parse(scope)
        targets: set[tuple[str, str]] = set()
        for h in hosts:
            on_disk = await trio.to_thread.run_sync(self._scopes_on_disk, h)
            known = {s for (kh, s) in self.reg.scopes if kh == h}
            targets |= {(h, s) for s in on_disk | known if scope is None or s == scope}
        if scope is not None and not targets:
            raise VfdError(
                ErrorCode.SCOPE_NOT_FOUND, f"no quota scope {scope} on {', '.join(hosts)}"
            )
        results: dict[tuple[str, str], dict[str, Any]] = {}
        async with trio.open_nursery() as nursery:
            for h, s in sorted(targets):
                nursery.start_soon(self._rescan_one, h, s, results)
        return {"scopes": [results[k] for k in sorted(results)]}

    async def _rescan_one(self, host: str, scope: str, out: dict[Any, dict[str, Any]]) -> None:
        scope_dir = self.reg.scope_roots(host, scope)
        async with self._scan_limiter:
            counted = await trio.to_thread.run_sync(scan_scope, scope_dir)
        usage = self.reg.scope(host, scope)
        before = usage.used
        after = counted + self.reg.open_files.orphans(usage)
        usage.set_used(after)
        if before != after:
            log.info("rescan %s on %s: %s -> %s", scope, host, before, after)
        out[(host, scope)] = {
            "host": host,
            "scope": scope,
            "before": before.to_json(),
            "after": after.to_json(),
        }

    async def purge(self, *, vfid: str, host: str, scope: str, path: str) -> dict[str, Any]:
        """Remove a detached folder's backing tree and give its usage back."""
        check_vfid(vfid)
        backing = self.reg.check_path(vfid, host, scope, path)
        if vfid in self.reg.folders:
            raise VfdError(
                ErrorCode.INVALID_STATUS,
                f"folder {vfid} is attached; detach it before purging",
                vfid=vfid,
            )
        self.clones.refuse_if_running(vfid, "purging")
        self.clones.forget(vfid)
        usage = self.reg.scope(host, scope)
        counted = await trio.to_thread.run_sync(scan_trees, [backing])
        await trio.to_thread.run_sync(layout.remove_folder_dir, backing)
        usage.release(counted.bytes, counted.files)
        return {"vfid": vfid, "freed_bytes": counted.bytes, "freed_files": counted.files}

    async def clone(self, **fields: str) -> dict[str, Any]:
        """Start copying a folder into a new, empty, detached one (``vfd.fuse.clone``)."""
        return await self.clones.start(**fields)

    async def clone_status(self, *, vfid: str) -> dict[str, Any]:
        return self.clones.status(vfid=vfid)

    async def clone_cancel(self, *, vfid: str) -> dict[str, Any]:
        return await self.clones.cancel(vfid=vfid)

    async def share(self, *, vfid: str, gid: int) -> dict[str, Any]:
        """Make an attached folder group-shared with ``gid`` (``vfd.fuse.groups``): its root
        and every existing entry get the group and ``g = u``. Idempotent."""
        folder = self.reg.folders.get(check_vfid(vfid))
        if folder is None:
            raise VfdError(ErrorCode.VFOLDER_NOT_FOUND, f"folder {vfid} is not attached", vfid=vfid)
        if not 0 < gid < 2**32 - 1:
            raise VfdError(
                ErrorCode.INVALID_ARGUMENT, f"gid {gid} cannot be a folder's group", field="gid"
            )
        changed = await trio.to_thread.run_sync(groups.share_tree, folder.fd, gid)
        for inode in list(self.reg.table.by_id.values()):
            if inode.folder is folder:  # the kernel checks permissions on cached attributes
                self.reg.notifier.invalidate_inode(inode.id)
        await self.reg.notifier.drain()
        log.info("folder %s shared with group %d: %d entries changed", vfid, gid, changed)
        return {"vfid": vfid, "gid": gid, "changed": changed}

    # -- the direct data path of transfers (vfd.fuse.direct) ---------------------------

    async def backing_open(
        self,
        *,
        conn: Connection,
        ino: int,
        mode: str,
        reserve_bytes: int = 0,
        reserve_files: int = 0,
        name: str | None = None,
    ) -> dict[str, Any]:
        return self.direct.open(conn, ino, mode, reserve_bytes, reserve_files, name)

    async def backing_reserve(
        self, *, conn: Connection, grant: int, reserve_bytes: int = 0, reserve_files: int = 0
    ) -> dict[str, Any]:
        return self.direct.reserve(conn, grant, reserve_bytes, reserve_files)

    async def backing_settle(self, *, conn: Connection, grant: int) -> dict[str, Any]:
        settled = await self.direct.settle(conn, grant)
        await self.reg.notifier.drain()  # no stale size, page or name cached by the reply
        return settled

    async def connection_closed(self, conn: Connection) -> None:
        await self.direct.settle_all(conn)

    async def sync(self, *, vfid: str) -> dict[str, Any]:
        """``syncfs`` of the file system holding an attached folder (after uploads that
        skipped their own fsync)."""
        folder = self.reg.folders.get(check_vfid(vfid))
        if folder is None:
            raise VfdError(ErrorCode.VFOLDER_NOT_FOUND, f"folder {vfid} is not attached", vfid=vfid)
        fd = os.open(proc_path(folder.fd), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            await trio.to_thread.run_sync(syncfs, fd)
        finally:
            os.close(fd)
        return {"vfid": vfid}

    # -- the store -----------------------------------------------------------------------

    def load_scopes(self, rows: list[persist.ScopeRow]) -> None:
        for row in rows:
            usage = self.reg.scope(row.host, row.scope)
            usage.limits = row.limits
            usage.set_used(row.used)
            usage.dirty = False

    async def flush(self) -> int:
        """Write the counters that changed since the last flush; how many scopes."""
        if self.engine is None:
            return 0
        dirty: list[ScopeUsage] = [u for u in self.reg.scopes.values() if u.dirty]
        if not dirty:
            return 0
        rows: list[tuple[str, str, Usage]] = []
        for u in dirty:
            u.dirty = False
            rows.append((u.host, u.scope, u.used.clamp()))
        try:
            await trio.to_thread.run_sync(persist.save_usage, self.engine, self.config, rows)
        except BaseException:
            for u in dirty:
                u.dirty = True
            raise
        return len(rows)

    async def flush_forever(self, interval: float) -> None:
        while True:
            await trio.sleep(interval)
            try:
                await self.flush()
            except Exception:
                log.exception("flushing quota usage to the store failed; will retry")
