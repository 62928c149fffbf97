"""What a session gets (``dotfiles.for_session`` on a real store) and how it is written into its
home (``dotfiles.write_into`` on a real directory); the input rules of paths and modes."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from vfd.daemon.services.dotfile_rules import check_reserved, normalize_path, parse_mode
from vfd.daemon.services.dotfiles import DotfileEntry, for_session, write_into
from vfd.errors import ErrorCode, VfdError
from vfd.store.db import make_engine, migrate, session_scope
from vfd.store.models import Dotfile, DotfileScope, Project, ProjectMember, User

UID, GID = 4321, 4322


@pytest.fixture
def home(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    work = tmp_path / "work"
    work.mkdir()
    os.chown(work, UID, GID)
    fd = os.open(work, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield work, fd
    finally:
        os.close(fd)


def test_dotfiles_write_into_sets_mode_owner_and_parents(home: tuple[Path, int]) -> None:
    work, fd = home
    old = os.umask(0o077)  # the modes must not depend on the umask
    try:
        write_into(
            fd,
            [
                DotfileEntry(".bashrc", 0o644, b"alias ll='ls -l'\n"),
                DotfileEntry(".config/tool/run.sh", 0o755, b"#!/bin/sh\n"),
                DotfileEntry(".config/tool/secret", 0o600, b""),
            ],
            UID,
            GID,
        )
    finally:
        os.umask(old)
    expected = {
        ".bashrc": (0o644, stat.S_IFREG),
        ".config": (0o755, stat.S_IFDIR),
        ".config/tool": (0o755, stat.S_IFDIR),
        ".config/tool/run.sh": (0o755, stat.S_IFREG),
        ".config/tool/secret": (0o600, stat.S_IFREG),
    }
    for path, (mode, kind) in expected.items():
        st = os.lstat(work / path)
        assert (stat.S_IMODE(st.st_mode), stat.S_IFMT(st.st_mode)) == (mode, kind), path
        assert (st.st_uid, st.st_gid) == (UID, GID), path
    assert (work / ".bashrc").read_bytes() == b"alias ll='ls -l'\n"


def test_dotfiles_write_into_never_follows_a_symlink(
    home: tuple[Path, int], tmp_path: Path
) -> None:
    work, fd = home
    outside = tmp_path / "outside"
    outside.mkdir()
    (work / ".config").symlink_to(outside)
    (work / ".profile").symlink_to(outside / "target")
    with pytest.raises(VfdError) as caught:
        write_into(fd, [DotfileEntry(".config/x", 0o644, b"x")], UID, GID)
    assert caught.value.code is ErrorCode.NOT_A_DIRECTORY
    with pytest.raises(VfdError) as caught:
        write_into(fd, [DotfileEntry(".profile", 0o644, b"x")], UID, GID)
    assert caught.value.code is ErrorCode.PATH_EXISTS
    assert list(outside.iterdir()) == []


def test_dotfiles_write_into_keeps_an_existing_file(home: tuple[Path, int]) -> None:
    work, fd = home
    (work / ".bashrc").write_bytes(b"mine")
    with pytest.raises(VfdError) as caught:
        write_into(fd, [DotfileEntry(".bashrc", 0o644, b"theirs")], UID, GID)
    assert caught.value.code is ErrorCode.PATH_EXISTS
    assert (work / ".bashrc").read_bytes() == b"mine"


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        (".bashrc", ".bashrc"),
        ("/home/work/.bashrc", ".bashrc"),
        ("~/.config/x", ".config/x"),
        ("bin/tool", "bin/tool"),
    ],
)
def test_dotfiles_normalize_path_accepts(raw: str, path: str) -> None:
    assert normalize_path(raw) == path


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "/etc/passwd",
        "/home/work",
        "/home/work/",
        "/home/workx/a",
        "~",
        "~root/x",
        "a//b",
        "a/",
        "./a",
        "a/../b",
        "..",
        "a\x00b",
        "a\x1bb",
        "x" * 257,
        "é" * 129,
    ],
)
def test_dotfiles_normalize_path_refuses(raw: str) -> None:
    with pytest.raises(VfdError) as caught:
        normalize_path(raw)
    assert caught.value.code is ErrorCode.INVALID_PATH


@pytest.mark.parametrize(
    "path", [".ssh/authorized_keys", ".ssh/id_container", ".vfd", ".vfd/x", ".local/bin/x"]
)
def test_dotfiles_check_reserved_refuses(path: str) -> None:
    with pytest.raises(VfdError) as caught:
        check_reserved(path, automounts={".local"})
    assert caught.value.code is ErrorCode.RESERVED_NAME


def test_dotfiles_check_reserved_allows_other_ssh_files() -> None:
    check_reserved(".ssh/config", automounts={".local"})
    check_reserved(".localrc", automounts={".local"})


@pytest.mark.parametrize(("text", "mode"), [("644", 0o644), ("0755", 0o755), ("600", 0o600)])
def test_dotfiles_parse_mode_accepts(text: str, mode: int) -> None:
    assert parse_mode(text) == mode


@pytest.mark.parametrize("text", ["4755", "2755", "1777", "888", "64", "0o644", "rwx", "", "00644"])
def test_dotfiles_parse_mode_refuses(text: str) -> None:
    with pytest.raises(VfdError) as caught:
        parse_mode(text)
    assert caught.value.code is ErrorCode.INVALID_ARGUMENT


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'vfd.db'}")
    migrate(engine)
    try:
        yield engine
    finally:
        engine.dispose()


def _put(session: Session, scope: str, path: str, data: bytes, mode: int = 0o644) -> None:
    kind = DotfileScope(scope.partition(":")[0])
    session.add(Dotfile(scope_kind=kind, scope=scope, path=path, mode=mode, data=data))


def test_dotfiles_for_session_layers_scopes(store: Engine) -> None:
    with session_scope(store) as session:
        user = User(email="u@x.y", username="u", uid=UID, gid=GID)
        other = User(email="o@x.y", username="o", uid=UID + 1, gid=GID)
        alpha = Project(name="alpha", gid=7001)
        beta = Project(name="beta", gid=7002)
        session.add_all([user, other, alpha, beta])
        session.flush()
        session.add(ProjectMember(project_id=alpha.id, user_id=user.id))
        session.add(ProjectMember(project_id=beta.id, user_id=user.id))
        _put(session, "cluster", ".bashrc", b"cluster", 0o600)
        _put(session, "cluster", ".profile", b"cluster")
        _put(session, "cluster", ".config", b"a file")  # yields to alpha's .config/tool
        _put(session, "cluster", "data/x", b"under a mount")
        _put(session, f"project:{alpha.id.hex}", ".profile", b"alpha")
        _put(session, f"project:{alpha.id.hex}", ".config/tool", b"alpha")
        _put(session, f"project:{beta.id.hex}", ".profile", b"beta")
        _put(session, f"user:{user.id.hex}", ".bashrc", b"mine", 0o640)
        _put(session, f"user:{other.id.hex}", ".vimrc", b"not mine")
        session.flush()
        entries = for_session(session, user, mount_targets=["/home/work/data", "/opt/x"])
    assert entries == [
        DotfileEntry(".bashrc", 0o640, b"mine"),
        DotfileEntry(".config/tool", 0o644, b"alpha"),
        DotfileEntry(".profile", 0o644, b"beta"),
    ]
