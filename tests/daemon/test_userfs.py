"""File operations as a user inside one folder: identity, containment, uploads.

These run on a plain directory; the same operations on the FUSE views are covered by the
daemon's file API tests.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from vfd.daemon.userfs import FolderFS, Identity, acting_as, split_path
from vfd.errors import ErrorCode, VfdError

USER = Identity(uid=4242, gid=4243, groups=(4243,))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "folder"
    r.mkdir()
    os.chown(r, USER.uid, USER.gid)
    return r


@pytest.fixture
def fs(root: Path) -> FolderFS:
    return FolderFS(str(root), USER)


def code_of(fn: object, *args: object, **kw: object) -> ErrorCode:
    with pytest.raises(VfdError) as info:
        fn(*args, **kw)  # type: ignore[operator]
    return info.value.code


@pytest.mark.parametrize("path", ["..", "a/../b", "../../etc/passwd", "a/.."])
def test_userfs_split_path_refuses_dotdot(path: str) -> None:
    assert code_of(split_path, path) is ErrorCode.INVALID_PATH


def test_userfs_split_path_limits() -> None:
    assert split_path("/a//b/./c/") == ["a", "b", "c"]
    assert split_path("") == [] == split_path("/")
    assert code_of(split_path, "x" * 256) is ErrorCode.NAME_TOO_LONG
    assert split_path("x" * 255) == ["x" * 255]
    assert code_of(split_path, "a\x00b") is ErrorCode.INVALID_PATH
    assert code_of(split_path, "a/" * 2048) is ErrorCode.INVALID_PATH


def test_userfs_acting_as_is_per_thread_and_restored(tmp_path: Path) -> None:
    seen: list[int] = []
    other_done = threading.Event()
    inside = threading.Event()

    def other() -> None:
        inside.wait(5)
        (tmp_path / "root-file").write_text("x")  # this thread stays root
        seen.append((tmp_path / "root-file").stat().st_uid)
        other_done.set()

    t = threading.Thread(target=other)
    t.start()
    with acting_as(USER):
        inside.set()
        other_done.wait(5)
        with pytest.raises(PermissionError):  # root's process, but 4242 on the filesystem
            os.chmod(tmp_path, 0o777)
    t.join()
    assert seen == [0]
    (tmp_path / "after").write_text("x")
    assert (tmp_path / "after").stat().st_uid == 0


def test_userfs_files_are_created_by_the_user(fs: FolderFS, root: Path) -> None:
    fs.mkdir("a/b/c", parents=True)
    fd = fs.upload_open("a/b/c/file", "key-0001", 0)
    os.write(fd, b"hello")
    os.close(fd)
    fs.upload_complete("a/b/c/file", "key-0001", size=5)
    for p in (root / "a", root / "a/b/c", root / "a/b/c/file"):
        st = p.stat()
        assert (st.st_uid, st.st_gid) == (USER.uid, USER.gid), p
    assert (root / "a/b/c/file").read_bytes() == b"hello"


def test_userfs_unix_permissions_apply_to_the_user(fs: FolderFS, root: Path) -> None:
    private = root / "private"
    private.mkdir(mode=0o700)  # root's directory inside the folder
    assert code_of(fs.listdir, "private") is ErrorCode.PERMISSION_DENIED
    assert code_of(fs.mkdir, "private/x") is ErrorCode.PERMISSION_DENIED


def test_userfs_symlinks_are_never_followed(fs: FolderFS, root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("secret")
    os.symlink(outside, root / "link")
    os.symlink(outside / "secret", root / "filelink")
    assert code_of(fs.listdir, "link") is ErrorCode.NOT_A_DIRECTORY
    assert code_of(fs.open_file, "link/secret") is ErrorCode.NOT_A_DIRECTORY
    assert code_of(fs.open_file, "filelink") is ErrorCode.INVALID_PATH
    assert code_of(fs.mkdir, "link/new", parents=True) is ErrorCode.NOT_A_DIRECTORY
    assert code_of(fs.upload_open, "link/up", "key-0001", 0) is ErrorCode.NOT_A_DIRECTORY
    entry = fs.stat("link")
    assert entry["type"] == "symlink" and entry["target"] == str(outside)
    fs.remove("link")  # removes the link, not its target
    assert (outside / "secret").exists()
    assert not (root / "link").exists()


def test_userfs_listdir_and_stat(fs: FolderFS, root: Path) -> None:
    (root / "b.txt").write_bytes(b"12345")
    (root / "a").mkdir()
    names = [(e["name"], e["type"], e["size"]) for e in fs.listdir("/")]
    assert names[0][:2] == ("a", "dir") and names[1] == ("b.txt", "file", 5)
    assert code_of(fs.listdir, "nope") is ErrorCode.PATH_NOT_FOUND
    assert code_of(fs.listdir, "b.txt") is ErrorCode.NOT_A_DIRECTORY


def test_userfs_mkdir_rules(fs: FolderFS) -> None:
    fs.mkdir("d")
    assert code_of(fs.mkdir, "d") is ErrorCode.PATH_EXISTS
    fs.mkdir("d", parents=True)  # like mkdir -p: no error
    assert code_of(fs.mkdir, "x/y") is ErrorCode.PATH_NOT_FOUND
    assert code_of(fs.mkdir, "/") is ErrorCode.PATH_EXISTS


def test_userfs_remove_rules(fs: FolderFS, root: Path) -> None:
    fs.mkdir("d/e", parents=True)
    (root / "d/e/f").write_text("x")
    assert code_of(fs.remove, "d") is ErrorCode.DIRECTORY_NOT_EMPTY
    fs.remove("d", recursive=True)
    assert not (root / "d").exists()
    assert code_of(fs.remove, "d") is ErrorCode.PATH_NOT_FOUND
    assert code_of(fs.remove, "/") is ErrorCode.INVALID_PATH


def test_userfs_remove_expecting_an_entry_spares_one_swapped_in(fs: FolderFS, root: Path) -> None:
    """Pruning lists part files, then removes them: a name swapped meanwhile is left alone."""
    (root / "p.part").write_text("old")
    st = os.lstat(root / "p.part")
    (root / "other").write_text("someone else's")
    os.rename(root / "other", root / "p.part")
    assert code_of(fs.remove, "p.part", expect=(st.st_dev, st.st_ino)) is ErrorCode.PATH_NOT_FOUND
    assert (root / "p.part").read_text() == "someone else's"
    now = os.lstat(root / "p.part")
    fs.remove("p.part", expect=(now.st_dev, now.st_ino))
    assert not (root / "p.part").exists()


def test_userfs_move_rules(fs: FolderFS, root: Path) -> None:
    (root / "f").write_text("1")
    (root / "g").write_text("2")
    fs.mkdir("dir")
    assert code_of(fs.move, "f", "g") is ErrorCode.PATH_EXISTS
    fs.move("f", "dir")  # into an existing directory
    assert (root / "dir/f").read_text() == "1"
    fs.move("dir/f", "h")
    assert (root / "h").read_text() == "1"
    assert code_of(fs.move, "dir", "dir/sub") is ErrorCode.INVALID_PATH
    assert code_of(fs.move, "missing", "x") is ErrorCode.PATH_NOT_FOUND


def test_userfs_upload_resumes_from_stored_offset(fs: FolderFS, root: Path) -> None:
    path, key = "big.bin", "resume-key-1"
    fd = fs.upload_open(path, key, 0)
    os.write(fd, b"a" * 100)
    os.close(fd)  # interrupted here
    assert not (root / path).exists()  # nothing visible under the final name
    assert fs.upload_state(path, key) == (100, None)
    with pytest.raises(VfdError) as info:
        fs.upload_open(path, key, 50)
    assert info.value.code is ErrorCode.UPLOAD_OFFSET_MISMATCH
    assert info.value.details["offset"] == 100
    assert code_of(fs.upload_complete, path, key, size=150) is ErrorCode.UPLOAD_OFFSET_MISMATCH
    fd = fs.upload_open(path, key, 100)
    os.write(fd, b"b" * 50)
    os.close(fd)
    fs.upload_complete(path, key, size=150)
    assert (root / path).read_bytes() == b"a" * 100 + b"b" * 50
    assert [p.name for p in root.iterdir()] == [path]  # the part file is gone


def test_userfs_upload_refuses_overwrite_unless_asked(fs: FolderFS, root: Path) -> None:
    (root / "f").write_text("old")
    assert fs.upload_state("f", "overwrite-1") == (0, "file")
    assert fs.upload_state("no/such/dir/f", "overwrite-1") == (0, None)
    # refused before a part file is made
    assert code_of(fs.upload_open, "f", "overwrite-1", 0) is ErrorCode.PATH_EXISTS
    assert [p.name for p in root.iterdir()] == ["f"]
    fd = fs.upload_open("f", "overwrite-1", 0, overwrite=True)
    os.write(fd, b"new")
    os.close(fd)
    # completing without overwrite still refuses (the file may have appeared meanwhile)
    assert code_of(fs.upload_complete, "f", "overwrite-1", size=3) is ErrorCode.PATH_EXISTS
    fs.upload_complete("f", "overwrite-1", size=3, overwrite=True)
    assert (root / "f").read_text() == "new"


def test_userfs_upload_abort_and_bad_key(fs: FolderFS, root: Path) -> None:
    fd = fs.upload_open("f", "abort-key-1", 0)
    os.close(fd)
    fs.upload_abort("f", "abort-key-1")
    fs.upload_abort("f", "abort-key-1")
    assert list(root.iterdir()) == []
    for key in ("short", "../../../../x", "a" * 65, "bad key!"):
        assert code_of(fs.upload_open, "f", key, 0) is ErrorCode.INVALID_ARGUMENT
    fs.mkdir("d")
    assert code_of(fs.upload_open, "d", "dir-key-01", 0) is ErrorCode.IS_A_DIRECTORY


def test_userfs_missing_view_is_reported(tmp_path: Path) -> None:
    fs = FolderFS(str(tmp_path / "gone"), USER)
    assert code_of(fs.listdir, "/") is ErrorCode.MOUNTD_UNAVAILABLE


def test_userfs_tar_keeps_links_as_links(fs: FolderFS, root: Path, tmp_path: Path) -> None:
    import io
    import tarfile

    from vfd.daemon.tarwrite import write_tar

    def archived(path: str) -> io.BytesIO:
        with open(tmp_path / "out.tar", "w+b") as out:
            write_tar(fs, path, out.fileno())
            out.seek(0)
            return io.BytesIO(out.read())

    (root / "d/e").mkdir(parents=True)
    (root / "d/e/f.txt").write_text("content")
    os.symlink("/etc", root / "d/etc-link")
    with tarfile.open(fileobj=archived("d")) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert set(members) == {"d", "d/e", "d/e/f.txt", "d/etc-link"}
        assert members["d/etc-link"].issym() and members["d/etc-link"].linkname == "/etc"
        f = tar.extractfile("d/e/f.txt")
        assert f is not None and f.read() == b"content"
    with tarfile.open(fileobj=archived("d/e/f.txt")) as tar:
        assert tar.getnames() == ["f.txt"]
    with pytest.raises(VfdError):
        archived("d/etc-link/passwd")
