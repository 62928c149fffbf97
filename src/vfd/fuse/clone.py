"""Clone jobs: mountd copies one folder's backing tree into a new folder's, in the background.

The daemon starts a job with the control op ``clone`` and follows it with ``clone_status``
(and stops it with ``clone_cancel``); the job lives in mountd, so a daemon that restarts
finds it again. The copy (``vfd.folders.copytree``) runs in a worker thread of its own
limiter, never on the trio thread, and charges the new folder's quota scope in mountd's live
counters before every inode and every chunk of data — on the trio thread, so the check cannot
interleave with a request on the same scope: a limit lowered mid-clone fails it with EDQUOT.

A job's states::

    running ──▶ done          everything copied; the daemon attaches the folder, makes it ready
       │──────▶ failed        quota, I/O error, source purged: ``error`` says which
       └──────▶ cancelled     clone_cancel, or mountd stopping

The new folder is not attached while its job runs (``attach`` and ``purge`` are refused), so
nothing but the copy writes to it. What a failed or cancelled job copied stays on disk and
stays counted until the folder is purged. Jobs are kept in memory only: after a mountd
restart ``clone_status`` answers ``not_found`` and the daemon marks the folder failed; the
start-up rescan has counted what the lost job had copied.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from vfd.errors import ErrorCode, VfdError
from vfd.folders import copytree
from vfd.folders.quota import Usage, grows_past, scan_trees
from vfd.fuse.registry import Registry, check_vfid
from vfd.fuse.usage import ScopeUsage

log = logging.getLogger("vfd.fuse.clone")

PARALLEL = 2
"""Jobs copying at once; more wait (``running``, nothing done yet)."""
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class CloneStopped(Exception):
    """Raised in the copying thread when its job was cancelled."""


@dataclass(eq=False)
class CloneJob:
    vfid: str
    src_vfid: str
    host: str
    scope: str
    path: Path
    src_path: Path
    total: Usage
    state: str = "running"
    error: VfdError | None = None
    progress: copytree.Progress = field(default_factory=copytree.Progress)
    stop: threading.Event = field(default_factory=threading.Event)
    finished: trio.Event = field(default_factory=trio.Event)
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None

    def check(self) -> None:
        if self.stop.is_set():
            raise CloneStopped

    def to_json(self) -> dict[str, Any]:
        return {
            "vfid": self.vfid,
            "src_vfid": self.src_vfid,
            "state": self.state,
            "total_bytes": self.total.bytes,
            "total_files": self.total.files,
            "done_bytes": self.progress.bytes,
            "done_files": self.progress.files,
            "methods": dict(self.progress.methods),
            "error": None if self.error is None else self.error.to_json()["error"],
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }


def _charge(usage: ScopeUsage, nbytes: int, files: int) -> None:
    """Account the copy's growth (trio thread), or raise EDQUOT with nothing changed."""
    if grows_past(usage.limits, usage.nbytes, usage.files, nbytes, files):
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))
    usage.nbytes += nbytes
    usage.files += files
    usage.dirty = True


def _open_dir(path: Path, what: str) -> int:
    try:
        return os.open(path, _DIR_FLAGS)
    except OSError as exc:
        raise VfdError(
            ErrorCode.PATH_NOT_FOUND,
            f"{what} directory {path}: {exc.strerror}",
            path=str(path),
        ) from None


def _check_empty(path: Path) -> None:
    fd = _open_dir(path, "the new folder's")
    try:
        if os.listdir(fd):
            raise VfdError(
                ErrorCode.INVALID_STATUS,
                f"the new folder's directory {path} is not empty",
                path=str(path),
            )
    finally:
        os.close(fd)


class CloneJobs:
    """Every clone job of this mountd, by the new folder's vfid."""

    def __init__(self, registry: Registry) -> None:
        self.reg = registry
        self.jobs: dict[str, CloneJob] = {}
        self._starting: set[str] = set()
        self._limiter = trio.CapacityLimiter(PARALLEL)
        self._nursery: trio.Nursery | None = None

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the jobs' tasks until cancelled; then stop every running copy and wait for it."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self._nursery = None
                for job in self.jobs.values():
                    job.stop.set()

    def running(self, vfid: str) -> bool:
        job = self.jobs.get(vfid)
        return vfid in self._starting or (job is not None and job.state == "running")

    def refuse_if_running(self, vfid: str, doing: str) -> None:
        if self.running(vfid):
            raise VfdError(
                ErrorCode.INVALID_STATUS,
                f"folder {vfid} is being cloned; cancel the clone before {doing} it",
                vfid=vfid,
            )

    def _job(self, vfid: str) -> CloneJob:
        job = self.jobs.get(check_vfid(vfid))
        if job is None:
            raise VfdError(
                ErrorCode.NOT_FOUND, f"mountd runs no clone job for folder {vfid}", vfid=vfid
            )
        return job

    async def start(
        self,
        *,
        vfid: str,
        host: str,
        scope: str,
        path: str,
        src_vfid: str,
        src_host: str,
        src_scope: str,
        src_path: str,
    ) -> dict[str, Any]:
        """Check, count the source, check the quota, start copying; the job's status.

        Starting a job that exists (same source) answers its status: the daemon may retry.
        """
        check_vfid(vfid)
        check_vfid(src_vfid)
        target = self.reg.check_path(vfid, host, scope, path)
        source = self.reg.check_path(src_vfid, src_host, src_scope, src_path)
        job = self.jobs.get(vfid)
        if job is not None and job.src_vfid == src_vfid:
            return job.to_json()
        if job is not None or vfid in self._starting or vfid in self.reg.folders:
            raise VfdError(
                ErrorCode.INVALID_STATUS,
                f"folder {vfid} is attached or already a clone target",
                vfid=vfid,
            )
        if self._nursery is None:
            raise VfdError(ErrorCode.INTERNAL, "mountd is stopping; no new clone jobs")
        self._starting.add(vfid)
        try:
            await trio.to_thread.run_sync(_check_empty, target)
            fd = await trio.to_thread.run_sync(_open_dir, source, "the source folder's")
            os.close(fd)
            total = await trio.to_thread.run_sync(scan_trees, [source])
            usage = self.reg.scope(host, scope)
            if grows_past(usage.limits, usage.nbytes, usage.files, total.bytes, total.files):
                raise VfdError(
                    ErrorCode.QUOTA_EXCEEDED,
                    f"the copy needs {total.bytes} bytes and {total.files} files; quota scope "
                    f"{scope} on {host} has {_left(usage.limits.max_bytes, usage.nbytes)} bytes "
                    f"and {_left(usage.limits.max_files, usage.files)} files left",
                    needed_bytes=total.bytes,
                    needed_files=total.files,
                    **usage.to_json(),
                )
            job = CloneJob(vfid, src_vfid, host, scope, target, source, total)
            self.jobs[vfid] = job
        finally:
            self._starting.discard(vfid)
        if self._nursery is None:  # stopped while we scanned
            del self.jobs[vfid]
            raise VfdError(ErrorCode.INTERNAL, "mountd is stopping; no new clone jobs")
        self._nursery.start_soon(self._run, job, usage)
        log.info("clone %s -> %s started (%d bytes, %d files)", src_vfid, vfid, *_pair(total))
        return job.to_json()

    def status(self, *, vfid: str) -> dict[str, Any]:
        return self._job(vfid).to_json()

    async def cancel(self, *, vfid: str) -> dict[str, Any]:
        """Stop a running job and return once its thread has stopped (a finished job: as is)."""
        job = self._job(vfid)
        job.stop.set()
        await job.finished.wait()
        return job.to_json()

    def forget(self, vfid: str) -> None:
        """Drop a finished job's record (its folder is being purged)."""
        job = self.jobs.get(vfid)
        if job is not None and job.state != "running":
            del self.jobs[vfid]

    async def _run(self, job: CloneJob, usage: ScopeUsage) -> None:
        def charge(nbytes: int, files: int) -> None:
            trio.from_thread.run_sync(_charge, usage, nbytes, files)

        try:
            await trio.to_thread.run_sync(self._copy, job, charge, limiter=self._limiter)
            job.state = "done"
        except CloneStopped:
            job.state = "cancelled"
            job.error = VfdError(ErrorCode.INVALID_STATUS, "the clone was cancelled")
        except VfdError as exc:
            job.state, job.error = "failed", exc
        except OSError as exc:
            job.state, job.error = "failed", _os_error(exc)
        except Exception as exc:
            log.exception("clone %s -> %s failed", job.src_vfid, job.vfid)
            job.state = "failed"
            job.error = VfdError(ErrorCode.INTERNAL, f"the copy failed: {exc}")
        finally:
            job.finished_at = time.time()
            job.finished.set()
        log.info(
            "clone %s -> %s %s: %d of %d bytes, %d of %d files%s",
            job.src_vfid,
            job.vfid,
            job.state,
            job.progress.bytes,
            job.total.bytes,
            job.progress.files,
            job.total.files,
            f" ({job.error.message})" if job.error else "",
        )

    @staticmethod
    def _copy(job: CloneJob, charge: copytree.Charge) -> None:
        """The job's thread: the copy itself, then a check that the source still exists."""
        job.check()
        src = _open_dir(job.src_path, "the source folder's")
        try:
            dst = _open_dir(job.path, "the new folder's")
            try:
                st = os.fstat(dst)
                copytree.copy_tree(
                    src,
                    dst,
                    uid=st.st_uid,
                    gid=st.st_gid,
                    charge=charge,
                    check=job.check,
                    progress=job.progress,
                )
            finally:
                os.close(dst)
            if os.fstat(src).st_nlink == 0:
                raise VfdError(
                    ErrorCode.VFOLDER_NOT_FOUND,
                    "the source folder was purged while it was copied",
                    vfid=job.src_vfid,
                )
        finally:
            os.close(src)


def _os_error(exc: OSError) -> VfdError:
    where = f" ({exc.filename})" if exc.filename else ""
    if exc.errno == errno.EDQUOT:
        return VfdError(
            ErrorCode.QUOTA_EXCEEDED,
            f"the new folder's quota scope is full: {exc.strerror}{where}",
        )
    return VfdError(ErrorCode.INTERNAL, f"the copy failed: {exc.strerror or exc}{where}")


def _left(limit: int, used: int) -> str:
    return "unlimited" if not limit else str(max(limit - used, 0))


def _pair(usage: Usage) -> tuple[int, int]:
    return usage.bytes, usage.files
