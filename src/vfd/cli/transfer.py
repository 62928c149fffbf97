"""Streaming transfers for the CLI: resumable uploads and downloads with a progress bar.

Directories are uploaded as tar archives (``PUT /v1/vfolders/{name}/upload-archive``, one
request for a whole tree, built while it is sent: :mod:`vfd.cli.tarsend`). First, what exists
is asked (a listing of each planned directory that exists already): a file in the way
(without ``--overwrite``) refuses the whole upload before anything is made or sent, as does a
directory where a file goes or a file where a directory goes. What is new below each existing
directory then goes as one archive unpacked into it, so existing directories are merged into
and a new tree appears at once; an archive cut short or refused leaves nothing. A tree of more
than ``ARCHIVE_MAX_BYTES`` goes in rounds (each into directories the rounds before it made),
so that it is never staged whole. Into a directory the user may write to but not list, new
directories are made and files sent one by one. Files and directories get the modes of a
per-file upload (0644, 0755) and the time of the upload; links and special files found in a
directory are left out, as before.

Files named on the command line, and files of ``ARCHIVE_FILE_MAX`` or more, go to ``PUT
/v1/vfolders/{name}/upload`` in one request per file, under a key derived from the source
file (path, size, mtime) and the destination, so running the same ``vfd vfolder upload``
again after an interruption resumes each file where the daemon's copy stops. Their upload
state is asked for first, too. A file's body goes with a ``Content-Length`` straight from the
file (``sendfile``: no copy through Python). Several requests travel at once (``WORKERS`` in
flight, each on a connection of its own), each with ``durable=false``, and one ``POST
.../sync`` makes them durable before the upload counts as done; a single request is sent
durable (the daemon syncs before it answers).

Downloads of files are written to ``<dest>/<name>.vfd-part`` and renamed when complete; the
file's ``ETag`` is kept beside it in ``<name>.vfd-part.etag``. The body is received into one
reused buffer and written from it (no copy per piece). An existing part file is
resumed with a Range request under ``If-Range: <etag>``: the daemon sends the rest only if
the file is still that version, else the whole file, and the part file starts over — so a
download never joins two versions. A part file without a tag starts over too. Directories
are downloaded as a tar stream and unpacked into a hidden staging directory beside the
destination (``<dest>/.vfd-download-*``), which is renamed into place only when the whole
archive is in: a failure leaves nothing behind, and an existing ``<dest>/<name>`` is never
merged into (refused up front). Unpacking never follows or makes anything that leads outside
the downloaded directory: a symbolic link is recreated only when its target stays inside it
(a relative target with no way out); links to absolute paths or out through ``..``, and
special files, are skipped and reported. Every entry is made by calls on directory
descriptors opened ``O_NOFOLLOW`` from the staging directory down, so no name leads through
a link or out of it (:class:`_Extractor`; the archive is read by :mod:`vfd.tarread`).

File names are bytes throughout: paths that are not UTF-8 travel in the ``_b64`` form of
:mod:`vfd.wirenames` and local files keep the original bytes in their names.
"""

from __future__ import annotations

import errno
import functools
import os
import posixpath
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

from vfd import tarread, wirenames
from vfd.cli import tarsend
from vfd.cli.client import FileBody, LocalWriteError, SourceShrank, VfdClient, folder_path
from vfd.cli.tarsend import Member, SourceChanged, SourceUnreadable, TarBody
from vfd.errors import ErrorCode, VfdError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

CHUNK = 1 << 20
ARCHIVE_MAX_BYTES = 1 << 30
"""About the most file data one round of archives holds (a larger tree goes in several)."""
ARCHIVE_FILE_MAX = 64 << 20
"""Files found in directories travel in archives (one per existing directory they go into)
when smaller than this; larger ones, and files named on the command line, are uploaded one
request each (resumable)."""
WORKERS = 4
"""Requests of one upload or download in flight at once (each on a connection of its own):
many small files are limited by each request's round trip and the daemon's fsync, not by
bytes. Fewer when the daemon answers ``429`` (the caller's limit of file requests)."""
P = ParamSpec("P")
T = TypeVar("T")
R = TypeVar("R")


class UploadItem:
    """A file to upload: ``source`` (a ``str``: a ``Path`` per file costs more than its
    ``lstat``) to ``dest``; ``named`` when it was named on the command line (not found inside
    a directory). Not a dataclass: importing ``dataclasses`` costs a command milliseconds."""

    __slots__ = ("dest", "mtime_ns", "named", "size", "source")

    def __init__(
        self, source: str, dest: str, size: int, mtime_ns: int, named: bool = False
    ) -> None:
        self.source = source
        self.dest = dest
        self.size = size
        self.mtime_ns = mtime_ns
        self.named = named

    def __repr__(self) -> str:
        return f"UploadItem({self.source!r} -> {self.dest!r}, {self.size} bytes)"

    @property
    def key(self) -> str:
        """The resumable upload's key (:func:`upload_key`)."""
        ident = f"{Path(self.source).absolute()}\0{self.size}\0{self.mtime_ns}\0{self.dest}"
        import hashlib  # here: OpenSSL's start-up is ~10 ms of an upload that names no file

        return hashlib.sha256(ident.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def upload_key(source: Path, st: os.stat_result, dest: str) -> str:
    """A key stable for one version of one source file going to one destination."""
    return UploadItem(str(source), dest, st.st_size, st.st_mtime_ns).key


_FS_ENCODING = (sys.getfilesystemencoding(), sys.getfilesystemencodeerrors())


def plan_upload(sources: list[Path], dest: str) -> tuple[list[str], list[UploadItem]]:
    """Directories to make and files to send, in order; refuses missing or special sources.
    Inside a directory, links and special files are left out (links never followed)."""
    items: list[UploadItem] = []
    base = dest.strip("/")
    dirs: list[str] = [base] if base else []  # --dest is made when missing

    def join(*parts: str) -> str:
        return "/".join(p for p in (base, *parts) if p)

    def walk(root: str, rel: str) -> None:
        # the names, then each one's lstat from the directory's descriptor (no path to
        # resolve per file: a tenth of the walk's time)
        try:
            fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return  # as os.walk: an unreadable directory is uploaded empty
        try:
            try:
                names = sorted(os.listdir(fd))
            except OSError:
                return
            subdirs = []
            prefix = join(rel)
            prefix = f"{prefix}/" if prefix else ""
            here = f"{root}/" if not root.endswith("/") else root
            add = items.append  # (the loop runs once per file: tens of thousands of times)
            lstat = os.stat
            for name in names:
                try:
                    st = lstat(name, dir_fd=fd, follow_symlinks=False)
                except OSError as exc:
                    exc.filename = here + name
                    raise
                kind = st.st_mode & 0o170000
                if kind == stat.S_IFDIR:
                    subdirs.append(name)
                    dirs.append(prefix + name)
                elif kind == stat.S_IFREG:
                    add(UploadItem(here + name, prefix + name, st.st_size, st.st_mtime_ns))
        finally:
            os.close(fd)
        for name in subdirs:
            walk(here + name, f"{rel}/{name}")

    for src in sources:
        if not src.exists() and not src.is_symlink():
            raise VfdError(ErrorCode.PATH_NOT_FOUND, f"{src}: no such file or directory")
        if src.is_symlink():
            raise VfdError(ErrorCode.INVALID_PATH, f"{src}: symbolic links are not uploaded")
        if src.is_file():
            st = src.stat()
            item = UploadItem(str(src), join(src.name), st.st_size, st.st_mtime_ns, named=True)
            items.append(item)
        elif src.is_dir():
            top = src.resolve().name
            dirs.append(join(top))
            walk(str(src), top)
        else:
            raise VfdError(ErrorCode.INVALID_PATH, f"{src}: not a regular file or directory")
    return dirs, items


class _NoProgress:
    """A progress display that shows nothing, for output that is not a terminal (a pipe, a
    file, a script): rich's own would be disabled there anyway, and importing it costs about
    70 ms, a tenth of a 10,000-file upload."""

    def __enter__(self) -> _NoProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(self, description: str, total: float | None = None) -> TaskID:
        return cast("TaskID", 0)

    def advance(self, task: Any, advance: float = 1) -> None:
        return None


def _progress(console: Console) -> Progress | _NoProgress:
    if not console.is_terminal:
        return _NoProgress()
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    return Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def parallel(
    client: VfdClient,
    items: Sequence[T],
    work: Callable[[VfdClient, T], R],
    workers: int = WORKERS,
) -> list[R]:
    """``work(client, item)`` for every item, up to ``workers`` at once, each worker with a
    connection of its own; the results in the order of ``items``.

    The first failure stops the others from starting new items and is raised once those in
    flight ended. A ``429 too_many_requests`` answer retires its worker (the item goes back
    to the others) while another worker is still busy; the last one waits ``Retry-After``
    and tries again. Ctrl-C (or any failure of the caller's thread) cuts the requests in
    flight and waits for every worker to end before it goes on: no thread, connection or file
    is left behind.
    """
    if len(items) <= 1 or workers <= 1:
        return [work(client, item) for item in items]
    results: dict[int, R] = {}
    todo = list(range(len(items)))[::-1]  # popped from the end: in order
    lock = threading.Lock()
    stop = threading.Event()
    failures: list[BaseException] = []
    active = [0]
    clients = [client, *(client.clone() for _ in range(min(workers, len(items)) - 1))]

    def run(mine: VfdClient) -> None:
        while not stop.is_set():
            with lock:
                if not todo:
                    return
                index = todo.pop()
                active[0] += 1
            try:
                results[index] = work(mine, items[index])
            except VfdError as exc:
                if exc.code is not ErrorCode.TOO_MANY_REQUESTS or stop.is_set():
                    raise
                with lock:
                    todo.append(index)
                    others = active[0] > 1
                if others:
                    return  # fewer workers: the caller's limit is lower than ours
                time.sleep(float(exc.details.get("retry_after") or 1))
            finally:
                with lock:
                    active[0] -= 1

    def worker(mine: VfdClient) -> None:
        try:
            run(mine)
        except BaseException as exc:
            with lock:
                failures.append(exc)
            stop.set()

    threads = [threading.Thread(target=worker, args=(c,), daemon=True) for c in clients[1:]]
    try:
        for thread in threads:
            thread.start()
        run(clients[0])
        for thread in threads:
            while thread.is_alive():
                thread.join(0.2)
    except BaseException:
        stop.set()
        for c in clients:
            c.abort()  # requests in flight fail at once
        for thread in threads:
            thread.join()
        raise
    finally:
        for c in clients[1:]:
            c.close()
    if failures:
        raise failures[0]
    return [results[i] for i in range(len(items))]


def _local_failures(fn: Callable[P, T]) -> Callable[P, T]:
    """``fn`` with failures of this machine's files (a source that cannot be read, a
    destination that cannot be written) raised as a ``VfdError`` naming the file."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                raise
            raise _local_error(exc, Path(exc.filename or ".")) from None

    return wrapper


@_local_failures
def upload(
    client: VfdClient,
    console: Console,
    name: str,
    sources: list[Path],
    dest: str,
    *,
    overwrite: bool,
) -> Uploaded:
    """Upload files and directories into folder ``name`` under ``dest``.

    What exists is asked first, before anything is made or sent (one listing per planned
    directory that exists already): a file in the way refuses the upload. Then ``dest`` is
    made when missing, everything new below each existing directory goes as one archive
    (directories, and the files found in them under ``ARCHIVE_FILE_MAX``), then the files
    named on the command line and the larger ones, one request each, resumable.
    """
    base = folder_path(name)
    # a directory goes in archives, and what exists at --dest is asked first: asked while
    # the tree is walked (the walk needs no answer, the answer no walk)
    ahead = None
    if any(src.is_dir() and not src.is_symlink() for src in sources):
        ahead = _Ahead(functools.partial(_listing, client, base, dest.strip("/")))
    try:
        dirs, items = plan_upload(sources, dest)
    except BaseException:
        if ahead is not None:
            ahead.cancel(client)
        raise
    alone = [i for i in items if i.named or i.size >= ARCHIVE_FILE_MAX]
    small = [i for i in items if not (i.named or i.size >= ARCHIVE_FILE_MAX)]
    tree = _Tree(dest.strip("/"), dirs, small)
    first = ahead.result() if ahead is not None else _UNASKED
    if tree.children:  # something goes in archives: what exists is listed
        made_base = _explore(client, name, tree, overwrite=overwrite, first=first)
    else:  # files named on the command line only: asked for one by one, as before
        made_base = bool(tree.base)  # made when missing (mkdir -p)
    # an archive is unpacked into a directory the user may list: into one they may only
    # write to, new directories are made one by one and files sent one by one
    made_dirs = [tree.base] if made_base else []
    if made_base and tree.children and "/" not in tree.base:
        # a new directory at the folder's root: the archive makes it, so it appears with
        # what is in it (and one request fewer)
        tree.hang_from_the_root()
        made_dirs = []
    for where in sorted(tree.unreadable):
        for child in tree.children.get(where, ()):
            if child in tree.dirs and child not in tree.existing:
                made_dirs.append(child)
                tree.existing.add(child)
            elif child in tree.files:
                alone.append(tree.files.pop(child))
    offsets = _preflight(client, name, alone, overwrite=overwrite)
    for path in made_dirs:
        body = {**wirenames.request_fields("path", path), "parents": True}
        client.post(f"{base}/mkdir", body)
    rounds = tree.archives()
    total = sum(i.size for i in items)
    # several requests: each without its own sync, then one sync of the folder's file
    # system before the upload counts as done (docs/transfers.md)
    durable = sum(len(r) for r in rounds) + len(alone) <= 1
    with _progress(console) as progress:
        task = progress.add_task(f"upload to {name}", total=total)
        advance = _Throttled(lambda n: progress.advance(task, n))
        advance(sum(offsets))

        def send_archive(c: VfdClient, archive: tuple[str, list[Member]]) -> None:
            _send_archive(c, base, *archive, overwrite=overwrite, durable=durable, advance=advance)

        def send(c: VfdClient, job: tuple[UploadItem, int]) -> None:
            item, offset = job
            _send_file(c, base, item, offset, overwrite=overwrite, durable=durable, advance=advance)

        try:
            for archives in rounds:
                parallel(client, archives, send_archive)
            parallel(client, list(zip(alone, offsets, strict=True)), send)
        finally:
            advance.flush()
    if not durable:
        _sync(client, base)
    return Uploaded(name, dirs, items, dict(zip(map(id, alone), offsets, strict=True)))


class Uploaded:
    """What an upload did: ``files`` and ``bytes`` counted, and :meth:`result` (what
    ``--json`` prints, one entry per file: made only when asked for, as it costs
    milliseconds per 10,000 files)."""

    def __init__(
        self, name: str, dirs: list[str], items: list[UploadItem], resumed: dict[int, int]
    ) -> None:
        self.name = name
        self.dirs = dirs
        self.items = items
        self.resumed = resumed
        self.files = len(items)
        self.bytes = sum(item.size for item in items)

    def result(self) -> dict[str, Any]:
        resumed = self.resumed
        done = [
            {
                "source": item.source,
                "path": item.dest,
                "size": item.size,
                "resumed_from": resumed.get(id(item), 0),
            }
            for item in self.items
        ]
        return {"vfolder": self.name, "directories": self.dirs, "files": done}


class _Tree:
    """The planned upload as a tree of folder paths below ``base``: which are directories,
    which files, and (once :func:`_explore` asked) which directories exist already."""

    def __init__(self, base: str, dirs: list[str], files: list[UploadItem]) -> None:
        self.base = base
        self.dirs = set(dirs)
        self.files = {item.dest: item for item in files}
        self.existing: set[str] = set()
        self.unreadable: set[str] = set()
        """Existing directories the user may not list (no archive goes into them)."""
        self.children: dict[str, dict[str, None]] = {}  # ordered sets
        children = self.children
        for path in [*dirs, *self.files]:
            if path != base:  # (paths are relative, with no "/" at either end)
                children.setdefault(path.rpartition("/")[0], {})[path] = None

    def hang_from_the_root(self) -> None:
        """Make ``base`` (missing, at the folder's root) with the archives: the tree is
        rooted at the folder's root, which exists."""
        self.children.setdefault("", {})[self.base] = None
        self.base = ""
        self.existing = {""}

    def archives(self) -> list[list[tuple[str, list[Member]]]]:
        """The archives to send, in rounds: each round's archives go into directories that
        exist once the rounds before it are placed (one archive per such directory, its
        members named from it, directories before what is in them), and hold at most about
        ``ARCHIVE_MAX_BYTES`` of data together, so that a huge tree is not staged whole."""
        mtime = int(time.time())
        rounds: list[list[tuple[str, list[Member]]]] = []
        there = set(self.existing)  # directories that exist before the round being built
        current: dict[str, list[Member]] = {}
        target: dict[str, str] = {}  # a directory made in this round -> its archive's target
        size = 0
        block = tarsend.BLOCK
        encoding, errors = _FS_ENCODING  # (os.fsencode's, without its checks once per file)
        for path, item in self._new():
            if size >= ARCHIVE_MAX_BYTES:
                rounds.append(list(current.items()))
                there.update(target)
                current, target, size = {}, {}, 0
            parent = path.rpartition("/")[0]
            where = parent if parent in there else target[parent]
            name = path[len(where) + 1 if where else 0 :].encode(encoding, errors)
            if item is None:
                target[path] = where
                member = Member(name, None, mode=0o755, mtime=mtime)
            else:
                source = item.source.encode(encoding, errors)
                member = Member(name, source, item.size, 0o644, mtime)
                size += item.size + block
            members = current.get(where)
            if members is None:
                members = current[where] = []
            members.append(member)
        if current:
            rounds.append(list(current.items()))
        return rounds

    def _new(self) -> Iterator[tuple[str, UploadItem | None]]:
        """What is new below the existing directories that can be listed, depth first:
        ``(path, None)`` for a directory, ``(path, item)`` for a file."""
        stack = [
            child
            for where in sorted(self.existing - self.unreadable, reverse=True)
            for child in reversed(self.children.get(where, {}))
            if child not in self.existing
        ]
        while stack:
            path = stack.pop()
            if path in self.dirs:
                yield path, None
                stack.extend(reversed(self.children.get(path, {})))
            else:
                yield path, self.files[path]


_UNASKED = object()
"""No listing was asked for yet (``_explore``'s ``first``)."""


def _explore(
    client: VfdClient,
    name: str,
    tree: _Tree,
    *,
    overwrite: bool,
    first: object = _UNASKED,
) -> bool:
    """Find which planned directories exist (listing each one whose parent exists, a level of
    the tree at a time, in parallel), and refuse a planned file that exists (unless
    ``overwrite``) or is a directory, and a planned directory that is something else;
    whether ``tree.base`` is missing (to be made). ``first``: the listing of ``tree.base``,
    asked already (:func:`_listing`), or ``_UNASKED``."""
    base = folder_path(name)

    def listing(c: VfdClient, where: str) -> dict[str, Any] | None:
        if where == tree.base and first is not _UNASKED:
            return cast("dict[str, Any] | None", first)
        return _listing(c, base, where)

    level = [tree.base]
    while level:
        below: list[str] = []
        for where, found in zip(level, parallel(client, level, listing), strict=True):
            if found is None:
                if where == tree.base:
                    tree.existing.add(where)
                    return True
                continue  # removed meanwhile: what was below it is new
            below.extend(_check_listing(client, name, tree, where, found, overwrite=overwrite))
        level = below
    return False


def _listing(c: VfdClient, base: str, where: str) -> dict[str, Any] | None:
    """The listing of the folder's directory ``where`` (``base``: the folder's API path);
    None when there is nothing there, ``{"type": "dir", "unreadable": True}`` for a directory
    the user may write to but not list."""
    try:
        return c.get(f"{base}/files", params=wirenames.request_fields("path", where))
    except VfdError as exc:
        if exc.code is ErrorCode.PERMISSION_DENIED:  # may be written to, not listed
            return {"type": "dir", "unreadable": True}
        if exc.code is ErrorCode.PATH_NOT_FOUND:
            return None
        raise


class _Ahead:
    """``fn()`` run now in a thread of its own; :meth:`result` waits for its value (or
    raises what it raised). For one request that overlaps local work."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self._fn = fn
        self._value: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._value = self._fn()
        except BaseException as exc:
            self._error = exc

    def result(self) -> Any:
        while self._thread.is_alive():  # (a timed join: Ctrl-C is not held up)
            self._thread.join(0.2)
        if self._error is not None:
            raise self._error
        return self._value

    def cancel(self, client: VfdClient) -> None:
        """Cut the request short (its client's connection) and wait for the thread."""
        if self._thread.is_alive():
            client.abort()
        self._thread.join()


def _check_listing(
    client: VfdClient,
    name: str,
    tree: _Tree,
    where: str,
    listing: dict[str, Any],
    *,
    overwrite: bool,
) -> list[str]:
    """Note the existing directory ``where`` (listed as ``listing``) and check its planned
    children against what is there; the planned directories that exist below it."""
    if listing.get("type") != "dir":
        raise _not_a_directory(name, where)
    tree.existing.add(where)
    children = list(tree.children.get(where, ()))
    if listing.get("unreadable"):
        tree.unreadable.add(where)
        present = _ask_each(client, name, children)
    else:
        present = {
            posixpath.join(where, wirenames.from_answer(e, "name")): e.get("type")
            for e in listing["entries"]
        }
    below = []
    for child in children:
        kind = present.get(child)
        if kind is None:
            continue
        if child in tree.dirs:
            if kind != "dir":
                raise _not_a_directory(name, child)
            below.append(child)
        else:
            _refuse_existing(name, child, kind, overwrite=overwrite)
    return below


def _ask_each(client: VfdClient, name: str, paths: list[str]) -> dict[str, str | None]:
    """The type of what is at each of ``paths`` (None: nothing), one request each: for a
    directory the user may write to but not list. A path whose parent is not a directory
    (or not searchable) is refused as the daemon refuses it."""
    base = folder_path(name)

    def ask(c: VfdClient, path: str) -> str | None:
        params = {**wirenames.request_fields("path", path), "key": "vfd-probe"}
        existing: str | None = c.get(f"{base}/upload", params=params).get("existing")
        return existing

    return dict(zip(paths, parallel(client, paths, ask), strict=True))


def _not_a_directory(name: str, path: str) -> VfdError:
    return VfdError(
        ErrorCode.NOT_A_DIRECTORY,
        f"{wirenames.escaped(path)} is not a directory in {name} (links are not followed)",
        path=path,
    )


def _refuse_existing(name: str, path: str, existing: str | None, *, overwrite: bool) -> None:
    """Refuse to upload a file to ``path`` where something of type ``existing`` is."""
    shown = wirenames.escaped(path)
    if existing == "dir":
        raise VfdError(ErrorCode.IS_A_DIRECTORY, f"{shown} is a directory in {name}", path=path)
    if existing is not None and not overwrite:
        raise VfdError(
            ErrorCode.PATH_EXISTS,
            f"{shown} already exists in {name} (--overwrite replaces it)",
            path=path,
        )


def _send_archive(
    client: VfdClient,
    base: str,
    where: str,
    members: list[Member],
    *,
    overwrite: bool,
    durable: bool,
    advance: Callable[[int], object],
) -> None:
    """Send ``members`` as one archive unpacked into the directory ``where``: all of it
    appears there at once, or nothing (the daemon removes what it unpacked on a failure)."""
    query = {**wirenames.request_fields("path", where), "key": os.urandom(16).hex()}
    if overwrite:
        query["overwrite"] = "true"
    if not durable:
        query["durable"] = "false"
    body = TarBody(members, advance)
    try:
        made = client.send(
            "PUT", f"{base}/upload-archive", params=query, content=body, timeout=None
        )
    except SourceChanged as exc:
        raise VfdError(
            ErrorCode.INVALID_ARGUMENT,
            f"{os.fsdecode(exc.source)} changed while it was uploaded (it has {exc.size} of "
            f"the {exc.planned} bytes it had): run the upload again",
            path=os.fsdecode(exc.source),
        ) from None
    except SourceUnreadable as exc:
        raise _local_error(exc.error, Path(os.fsdecode(exc.source))) from None
    files = sum(1 for m in members if m.source is not None)
    if made.get("files") != files or made.get("skipped"):
        raise VfdError(
            ErrorCode.INTERNAL,
            f"the daemon unpacked {made.get('files')} of the {files} files sent to "
            f"{wirenames.escaped(where) or 'the folder root'} (left out: {made.get('skipped')})",
        )


def _under(path: str, top: str) -> bool:
    return path == top or path.startswith(top + "/")


def _sync(client: VfdClient, base: str) -> None:
    """Have the daemon write the folder's file system to disk (after uploads sent with
    ``durable=false``). A daemon without the route is older than ``durable``: it syncs
    nothing, so there is nothing to wait for."""
    try:
        client.post(f"{base}/sync")
    except VfdError as exc:
        if exc.code not in (ErrorCode.NOT_FOUND, ErrorCode.METHOD_NOT_ALLOWED):
            raise


def _send_file(
    client: VfdClient,
    base: str,
    item: UploadItem,
    offset: int,
    *,
    overwrite: bool,
    durable: bool,
    advance: Callable[[int], object],
) -> None:
    """Upload ``item`` from ``offset`` in one request whose body the kernel sends from the
    file (``sendfile``); refused when the file is no longer as it was planned."""
    query = {
        **wirenames.request_fields("path", item.dest),
        "key": item.key,
        "size": str(item.size),
        "offset": str(offset),
    }
    if overwrite:
        query["overwrite"] = "true"
    if not durable:
        query["durable"] = "false"
    with open(item.source, "rb") as f:
        if os.fstat(f.fileno()).st_size < item.size:
            raise _changed(item, os.fstat(f.fileno()).st_size)
        body = FileBody(f, offset, item.size - offset, advance)
        try:
            result = client.send("PUT", f"{base}/upload", params=query, content=body, timeout=None)
        except SourceShrank as exc:
            raise _changed(item, offset + exc.sent) from None
    if not result.get("complete"):
        raise VfdError(
            ErrorCode.UPLOAD_OFFSET_MISMATCH,
            f"{item.source}: the daemon stored {result.get('offset')} of {item.size} "
            "bytes; run the same upload again to resume",
        )


def _changed(item: UploadItem, size: int) -> VfdError:
    return VfdError(
        ErrorCode.INVALID_ARGUMENT,
        f"{item.source} changed while it was uploaded (it has {size} of the {item.size} "
        "bytes it had): run the upload again",
        path=item.source,
    )


class _Throttled:
    """A progress callback that passes its counts on at most every 0.1 s (the bar cannot show
    more; rich's advance takes a lock and the time), from any thread."""

    def __init__(self, advance: Callable[[int], object]) -> None:
        self._advance = advance
        self._pending = 0
        self._last = 0.0
        self._lock = threading.Lock()

    def __call__(self, n: int) -> None:
        with self._lock:
            self._pending += n
            now = time.monotonic()
            if now - self._last < 0.1:
                return
            n, self._pending, self._last = self._pending, 0, now
        self._advance(n)

    def flush(self) -> None:
        with self._lock:
            n, self._pending = self._pending, 0
        if n:
            self._advance(n)


def _preflight(
    client: VfdClient, name: str, items: list[UploadItem], *, overwrite: bool
) -> list[int]:
    """Where each file's upload stands (the offset to resume from), asked before anything is
    sent: a destination that is a directory, or that exists without ``overwrite``, refuses
    the upload. The daemon would refuse it too, but only once a request body is on its way."""
    base = folder_path(name)

    def ask(c: VfdClient, item: UploadItem) -> int:
        params = {**wirenames.request_fields("path", item.dest), "key": item.key}
        state = c.get(f"{base}/upload", params=params)
        _refuse_existing(name, item.dest, state.get("existing"), overwrite=overwrite)
        offset = int(state["offset"])
        return 0 if offset > item.size else offset  # a stale part file: start over

    return parallel(client, items, ask)


@_local_failures
def download(
    client: VfdClient,
    console: Console,
    name: str,
    paths: list[str],
    dest: Path,
) -> dict[str, Any]:
    """Download files (resumable) and directories (tar, unpacked) from folder ``name``."""
    if not dest.is_dir():
        raise VfdError(ErrorCode.NOT_A_DIRECTORY, f"{dest} is not a directory")
    base = folder_path(name)
    entries = []
    for path in paths:
        # what it is (entry=true: a directory's own entry, not its listing)
        params = {**wirenames.request_fields("path", path), "entry": "true"}
        listing = client.get(f"{base}/files", params=params)
        entries.append((path, listing["type"] == "dir", listing["entries"]))
    results: list[dict[str, Any]] = []
    total = sum(e[2][0]["size"] for e in entries if not e[1])
    with _progress(console) as progress:
        task = progress.add_task(f"download from {name}", total=total or None)
        for path, is_dir, _listing in entries:
            if is_dir:
                results.append(_download_tree(client, base, path, dest, progress, task))
            else:
                results.append(_download_file(client, base, path, dest, progress, task))
    return {"vfolder": name, "downloaded": results}


def _download_file(
    client: VfdClient, base: str, path: str, dest: Path, progress: Progress | _NoProgress, task: Any
) -> dict[str, Any]:
    filename = path.rstrip("/").rsplit("/", 1)[-1]
    final = dest / filename
    part = dest / f"{filename}.vfd-part"
    tag = dest / f"{filename}.vfd-part.etag"
    offset = part.stat().st_size if part.exists() else 0
    etag = tag.read_text().strip() if tag.exists() else ""
    try:
        offset = _fetch(client, base, path, part, tag, offset if etag else 0, etag, progress, task)
    except VfdError as exc:
        if exc.code is not ErrorCode.RANGE_NOT_SATISFIABLE:
            raise
        # The file is still the version of the part file, which has all of it (stopped
        # before the rename) or more (then it is not what we wrote: start over).
        if exc.details.get("size") != offset:
            offset = _fetch(client, base, path, part, tag, 0, "", progress, task)
        else:
            progress.advance(task, offset)
    os.replace(part, final)
    tag.unlink(missing_ok=True)
    return {"path": path, "to": str(final), "size": final.stat().st_size, "resumed_from": offset}


def _fetch(
    client: VfdClient,
    base: str,
    path: str,
    part: Path,
    tag: Path,
    offset: int,
    etag: str,
    progress: Progress | _NoProgress,
    task: Any,
) -> int:
    """Write the file into ``part`` from ``offset`` (resumed only while the daemon's file is
    still version ``etag``, else from 0); where the written bytes began."""
    headers = {"Range": f"bytes={offset}-", "If-Range": etag} if offset else {}
    params = wirenames.request_fields("path", path)
    with client.stream("GET", f"{base}/download", params=params, headers=headers) as r:
        if r.status_code == 206:
            where = r.headers.get("content-range", "")
            if r.headers.get("etag") != etag or not where.startswith(f"bytes {offset}-"):
                raise VfdError(
                    ErrorCode.INTERNAL,
                    f"{wirenames.escaped(path)}: the daemon resumed another version or place; "
                    f"remove {wirenames.escaped(str(part))}",
                )
        else:
            offset = 0  # the whole file: a new version, or nothing to resume
        progress.advance(task, offset)
        fd = _open_part(part, offset)
        try:
            if not offset:  # the part file is empty before the tag is written
                if new_tag := r.headers.get("etag"):
                    tag.write_text(new_tag)
                else:
                    tag.unlink(missing_ok=True)
            try:  # a call per splice (about 256 KiB): ~7 us each, no throttle needed
                r.copy_to(fd, lambda n: progress.advance(task, n))
            except LocalWriteError as exc:
                raise _local_error(exc.error, part) from None
        finally:
            os.close(fd)
    return offset


def _open_part(part: Path, offset: int) -> int:
    """The part file opened for writing at ``offset``: what lies past it is cut off, and a
    download from the start writes a new file. Not one truncated to nothing: ext4 writes
    such a file back when it is closed (its ``auto_da_alloc`` rule for files rewritten in
    place), which would make the download wait for the disk."""
    if offset:
        fd = os.open(part, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.ftruncate(fd, offset)
            os.lseek(fd, offset, os.SEEK_SET)
        except BaseException:
            os.close(fd)
            raise
        return fd
    part.unlink(missing_ok=True)
    return os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)


def _download_tree(
    client: VfdClient, base: str, path: str, dest: Path, progress: Progress | _NoProgress, task: Any
) -> dict[str, Any]:
    """Unpack the archive of directory ``path`` as ``dest/<its name>``: in a staging
    directory beside it, renamed into place when complete (removed on any failure)."""
    top = path.strip("/").rsplit("/", 1)[-1] or "folder"
    final = dest / top
    if final.exists() or final.is_symlink():
        raise VfdError(
            ErrorCode.PATH_EXISTS,
            f"{wirenames.escaped(str(final))} exists; a directory download never merges into "
            "one: remove it or choose another --dest",
            path=str(final),
        )
    staging = _staging_dir(dest)
    try:
        count, skipped = _unpack(client, base, path, staging, top, progress, task)
        if not (staging / top).is_dir():
            raise VfdError(
                ErrorCode.INTERNAL,
                f"the daemon's archive of {wirenames.escaped(path)} does not hold it",
            )
        try:
            os.rename(staging / top, final)
        except OSError as exc:
            raise _local_error(exc, final) from None
    finally:
        try:
            os.rmdir(staging)  # empty once the tree was renamed out of it
        except OSError:
            import shutil

            shutil.rmtree(staging, ignore_errors=True)
    return {"path": path, "to": str(final), "entries": count, "skipped": skipped}


def _staging_dir(dest: Path) -> Path:
    """A new directory ``dest/.vfd-download-<random>`` (mode 0700), as ``tempfile.mkdtemp``
    makes one (without importing it and what it imports)."""
    for _ in range(100):
        staging = dest / f".vfd-download-{os.urandom(6).hex()}"
        try:
            os.mkdir(staging, 0o700)
        except FileExistsError:
            continue
        except OSError as exc:
            raise _local_error(exc, dest) from None
        return staging
    raise _local_error(OSError(errno.EEXIST, "no unused staging directory name"), dest)


def _unpack(
    client: VfdClient,
    base: str,
    path: str,
    staging: Path,
    top: str,
    progress: Progress | _NoProgress,
    task: Any,
) -> tuple[int, list[dict[str, str]]]:
    """Extract the archive of ``path`` into ``staging``; the entries made and those skipped
    (``{"path", "reason"}``)."""
    reader = _StreamReader()
    params = {**wirenames.request_fields("path", path), "archive": "true"}
    with client.stream("GET", f"{base}/download", params=params) as r:
        reader.iterator = r.iter_bytes(CHUNK)
        reader.advance = lambda n: progress.advance(task, n)
        try:
            out = _Extractor(staging, top)
            try:
                tar = tarread.TarReader(reader)  # type: ignore[arg-type]
                while (member := tar.next()) is not None:
                    out.member(tar, member)
            finally:
                out.close()
        except tarread.TarError as exc:
            raise VfdError(
                ErrorCode.INTERNAL,
                f"the daemon's archive of {wirenames.escaped(path)} is unreadable: {exc}",
            ) from None
        except OSError as exc:
            raise _local_error(exc, staging) from None
    return out.count, out.skipped


class _Extractor:
    """Members of a directory's archive made below ``staging``, each by a few calls on
    directory descriptors (``O_NOFOLLOW`` from ``staging`` down: a name never leads through
    a link, nor out of ``staging``). Directories get the umask's mode and their mtime;
    files the archive's mode less its high and group/other write bits, at least readable
    and writable by their owner, and their mtime (what ``tarfile``'s ``data`` filter
    gives); symbolic links and hard links only when they stay inside ``top``; anything else
    is skipped, with the reason."""

    _MAX_DIRS = 64

    def __init__(self, staging: Path, top: str) -> None:
        self.top = top
        self.count = 0
        self.skipped: list[dict[str, str]] = []
        self.root = os.open(staging, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        self._dirs: dict[tuple[str, ...], int] = {}
        self._umask = _umask()

    def close(self) -> None:
        for fd in self._dirs.values():
            os.close(fd)
        self._dirs.clear()
        os.close(self.root)

    def member(self, tar: tarread.TarReader, m: tarread.Member) -> None:
        why = _refusal(
            m.name,
            m.linkname,
            m.kind in (tarread.SYMLINK, tarread.HARDLINK),
            m.kind == tarread.SYMLINK,
            self.top,
        )
        parts = m.name.split("/")
        if why is None and ("" in parts or "." in parts or ".." in parts):
            why = "a name with an empty, '.' or '..' part"
        if why is None and not (
            m.isreg() or m.kind in (tarread.DIRECTORY, tarread.SYMLINK, tarread.HARDLINK)
        ):
            why = m.what()
        if why is None:
            try:
                why = self._make(tar, m, parts)
            except NotADirectoryError:
                why = "a name leading through a link or a file"
        if why is None:
            self.count += 1
        else:
            self.skipped.append({"path": m.name, "reason": why})

    def _make(self, tar: tarread.TarReader, m: tarread.Member, parts: list[str]) -> str | None:
        if m.kind == tarread.DIRECTORY:
            fd = self._dir(parts)
            os.utime(fd, (m.mtime, m.mtime))
            return None
        parent, name = self._dir(parts[:-1]), parts[-1]
        if m.kind == tarread.SYMLINK:
            os.symlink(m.linkname, name, dir_fd=parent)
            return None
        if not m.isreg():  # a hard link inside top (checked): to a file made before
            tparts = m.linkname.split("/")
            if any(p in ("", ".", "..") for p in tparts):
                return "a hard link with an empty, '.' or '..' part"
            os.link(
                tparts[-1],
                name,
                src_dir_fd=self._dir(tparts[:-1]),
                dst_dir_fd=parent,
                follow_symlinks=False,
            )
            return None
        mode = m.mode & 0o755
        if not mode & 0o100:
            mode &= ~0o111
        mode |= 0o600
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(name, flags, mode, dir_fd=parent)
        try:
            left = m.size
            while left:
                data = tar.read(min(left, CHUNK))
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                left -= len(data)
            tar.end_data()
            if mode & self._umask:  # the umask took bits of it
                os.fchmod(fd, mode)
            os.utime(fd, (m.mtime, m.mtime))
        finally:
            os.close(fd)
        return None

    def _dir(self, parts: list[str]) -> int:
        """The directory ``parts`` below the staging directory, made where missing; its
        descriptor stays this extractor's. ``NotADirectoryError`` when a part is a link or
        not a directory."""
        key = tuple(parts)
        fd = self._dirs.get(key)
        if fd is not None:
            return fd
        if not parts:
            return self.root
        parent = self._dir(parts[:-1])
        try:
            os.mkdir(parts[-1], 0o777, dir_fd=parent)
        except FileExistsError:
            pass
        try:
            fd = os.open(
                parts[-1],
                os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                dir_fd=parent,
            )
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise NotADirectoryError(exc.errno, exc.strerror) from None
            raise
        if len(self._dirs) >= self._MAX_DIRS:  # members come directory by directory
            for old in self._dirs.values():
                if old != parent:
                    os.close(old)
            self._dirs = {k: v for k, v in self._dirs.items() if v == parent}
        self._dirs[key] = fd
        return fd


def _umask() -> int:
    """This process's umask, read without changing it (other threads may be making files)."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o777  # unknown: always fchmod


def _refusal(name: str, target: str, link: bool, symbolic: bool, top: str) -> str | None:
    """Why a member is not unpacked, or None: it must lie inside ``top`` and, if it is a
    link, its target must stay inside ``top`` too (such a link is always safe to make)."""
    if name != top and not name.startswith(top + "/"):
        return f"not inside '{wirenames.escaped(top)}'"
    if link:
        if posixpath.isabs(target):
            return f"a link to an absolute path ({wirenames.escaped(target)})"
        resolved = posixpath.join(posixpath.dirname(name), target) if symbolic else target
        resolved = posixpath.normpath(resolved)
        if resolved != top and not resolved.startswith(top + "/"):
            shown = wirenames.escaped(target)
            return f"a link leading outside '{wirenames.escaped(top)}' ({shown})"
    return None


def _local_error(exc: OSError, where: Path) -> VfdError:
    """A failure of this machine's file system while downloading into ``where``."""
    denied = exc.errno in (errno.EACCES, errno.EPERM)
    code = ErrorCode.PERMISSION_DENIED if denied else ErrorCode.INTERNAL
    shown = wirenames.escaped(str(exc.filename or where))
    return VfdError(code, f"{shown}: {exc.strerror or exc}", path=str(where))


class _StreamReader:
    """A file-like reader over an iterator of byte chunks (for tarfile's stream mode).

    tarfile reads small records; each read copies only what it returns (no re-slicing of the
    rest of a 1 MiB chunk per record).
    """

    def __init__(self) -> None:
        self.iterator: Iterator[bytes] = iter(())
        self.advance: Any = lambda n: None
        self._chunk = b""
        self._pos = 0

    def read(self, n: int = -1) -> bytes:
        pos = self._pos
        if 0 <= n <= len(self._chunk) - pos:  # (most reads: a header, a small file's data)
            self._pos = pos + n
            return self._chunk[pos : pos + n]
        out = bytearray()
        while n < 0 or len(out) < n:
            if self._pos >= len(self._chunk):
                try:
                    self._chunk = next(self.iterator)
                except StopIteration:
                    break
                self._pos = 0
                self.advance(len(self._chunk))
            left = len(self._chunk) - self._pos
            take = left if n < 0 else min(n - len(out), left)
            out += self._chunk[self._pos : self._pos + take]
            self._pos += take
        return bytes(out)
