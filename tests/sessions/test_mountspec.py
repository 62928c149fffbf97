"""Mount specs of sessions (``vfd.sessions.mounts``): parsing, target rules, overlaps."""

from __future__ import annotations

import pytest

from vfd.enums import Permission
from vfd.errors import ErrorCode, VfdError
from vfd.sessions.mounts import (
    LINUXBREW_TARGET,
    MAX_TARGET_CHARS,
    check_overlaps,
    default_target,
    parse,
    reserved,
)


@pytest.mark.parametrize(
    ("spec", "name", "target", "permission", "explicit"),
    [
        ("f1", "f1", "/home/work/f1", Permission.RW, False),
        ("f1:ro", "f1", "/home/work/f1", Permission.RO, False),
        ("f1:rw", "f1", "/home/work/f1", Permission.RW, False),
        ("f1:data", "f1", "/home/work/data", Permission.RW, True),
        ("f1:data/sub:ro", "f1", "/home/work/data/sub", Permission.RO, True),
        ("f1:/data", "f1", "/data", Permission.RW, True),
        ("f1:/mnt/x:ro", "f1", "/mnt/x", Permission.RO, True),
        ("f1:ro:rw", "f1", "/home/work/ro", Permission.RW, True),
        ("f1:./ro", "f1", "/home/work/ro", Permission.RW, True),
        ("f1://data//x/./", "f1", "/data/x", Permission.RW, True),
        ("ro", "ro", "/home/work/ro", Permission.RW, False),
        ("my data", "my data", "/home/work/my data", Permission.RW, False),
        (".local", ".local", "/home/work/.local", Permission.RW, False),
        (".linuxbrew", ".linuxbrew", LINUXBREW_TARGET, Permission.RW, False),
        (".linuxbrew:ro", ".linuxbrew", LINUXBREW_TARGET, Permission.RO, False),
        ("f1:/tmp/data", "f1", "/tmp/data", Permission.RW, True),
        ("f1:/usr/local/data", "f1", "/usr/local/data", Permission.RW, True),
        ("f1:/opt", "f1", "/opt", Permission.RW, True),
        ("f1:/library", "f1", "/library", Permission.RW, True),
        ("f1:/home/other", "f1", "/home/other", Permission.RW, True),
    ],
)
def test_mountspec_parses(
    spec: str, name: str, target: str, permission: Permission, explicit: bool
) -> None:
    got = parse(spec)
    assert (got.spec, got.name, got.target, got.permission, got.explicit_target) == (
        spec,
        name,
        target,
        permission,
        explicit,
    )


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ("", "empty"),
        (":ro", "no folder name"),
        (":data", "no folder name"),
        ("f1:", "empty"),
        ("f1::ro", "empty"),
        ("f1:a:b:ro", "too many ':'"),
        ("f1:a:b", "too many ':'"),
        ("f1\x00", "NUL"),
        ("f1:a\x00b", "NUL"),
        ("f1:../x", "'..'"),
        ("f1:/home/work/../etc", "'..'"),
        ("f1:a\nb", "U+000A"),
        ("f1:a\u202eb", "U+202E"),
        ("f1:/", "reserved"),
        ("f1:/home", "reserved"),
        ("f1:/home/work", "session's home"),
        ("f1:/home/work/", "session's home"),
        ("f1:.", "session's home"),
        ("f1:/proc", "reserved"),
        ("f1:/proc/1", "reserved"),
        ("f1:/sys/fs", "reserved"),
        ("f1:/dev", "reserved"),
        ("f1:/dev/shm/x", "reserved"),
        ("f1:/etc", "reserved"),
        ("f1:/etc/ssl", "reserved"),
        ("f1:/run/secrets", "reserved"),
        ("f1:/var/run", "reserved"),
        ("f1:/boot", "reserved"),
        ("f1:/bin", "reserved"),
        ("f1:/sbin", "reserved"),
        ("f1:/lib", "reserved"),
        ("f1:/lib64", "reserved"),
        ("f1:/usr", "reserved"),
        ("f1:/usr/lib", "reserved"),
        ("f1:/usr/lib/x86_64-linux-gnu", None),  # under /usr/lib is allowed
        ("f1:/usr/bin", "reserved"),
        ("f1:/var", "reserved"),
        ("f1:/tmp", "reserved"),
        ("f1:.jupyter", "home uses it"),
        ("f1:.ssh", None),  # the automount .ssh folder's place; any folder may go there
        ("f1:/home/work/.bashrc", "home uses it"),
        ("f1:.jupyter/keys", "home uses it"),
        ("f1:/" + "a" * 256, "longer than 255"),
        ("f1:/" + "/".join(["a" * 200] * 6), "longer than"),
    ],
)
def test_mountspec_refuses(spec: str, why: str | None) -> None:
    if why is None:
        parse(spec)
        return
    with pytest.raises(VfdError) as caught:
        parse(spec)
    assert caught.value.code is ErrorCode.INVALID_MOUNT
    assert why in caught.value.message
    assert repr(spec) in caught.value.message
    assert caught.value.details["spec"] == spec


def test_mountspec_target_length_limit() -> None:
    deep = "/" + "/".join(["d" * 9] * 200)
    longest = deep[:MAX_TARGET_CHARS].rstrip("/")
    assert parse(f"f1:{longest}").target == longest
    with pytest.raises(VfdError, match="longer than"):
        parse(f"f1:{deep[: MAX_TARGET_CHARS + 10]}")


def test_mountspec_reserved_allows_ordinary_paths() -> None:
    for path in ("/data", "/home/work/f1", "/home/work/.local", "/mnt/a/b", LINUXBREW_TARGET):
        assert reserved(path) is None


def test_mountspec_default_target() -> None:
    assert default_target("f1") == "/home/work/f1"
    assert default_target(".config") == "/home/work/.config"
    assert default_target(".linuxbrew") == LINUXBREW_TARGET


@pytest.mark.parametrize(
    ("targets", "clash"),
    [
        (["/home/work/a", "/home/work/a"], "also the target"),
        (["/data", "/data/x"], "lies inside /data"),
        (["/data/x/y/z", "/data"], "lies inside /data"),
        (["/home/work/a", "/home/work/a/b/c"], "lies inside /home/work/a"),
    ],
)
def test_mountspec_overlaps_refused(targets: list[str], clash: str) -> None:
    with pytest.raises(VfdError) as caught:
        check_overlaps((f"spec{i}", t) for i, t in enumerate(targets))
    assert caught.value.code is ErrorCode.INVALID_MOUNT
    assert clash in caught.value.message


def test_mountspec_siblings_do_not_overlap() -> None:
    check_overlaps(
        [
            ("a", "/data"),
            ("b", "/data-2"),
            ("c", "/data2/x"),
            ("d", "/home/work/a"),
            ("e", "/home/work/ab"),
        ]
    )


def test_mountspec_overlap_check_is_linear() -> None:
    many = [(f"f{i}", f"/home/work/f{i}") for i in range(20000)]
    check_overlaps(many)


@pytest.mark.parametrize(
    ("spec", "read_only"),
    [
        ("f1", "f1:ro"),
        ("f1:rw", "f1:ro"),
        ("f1:data", "f1:data:ro"),
        ("f1:/data:rw", "f1:/data:ro"),
        ("f1:ro:rw", "f1:ro:ro"),
        ("rw", "rw:ro"),
        ("f1:ro", "f1:ro"),
    ],
)
def test_mountspec_read_only_spec_mounts_the_same_target(spec: str, read_only: str) -> None:
    """The spec the "read-only for you" refusal suggests is a valid spec of the same folder
    and target (``-m f1:rw`` suggests ``f1:ro``, not ``f1:rw:ro``)."""
    parsed = parse(spec)
    assert parsed.read_only_spec() == read_only
    again = parse(read_only)
    assert (again.name, again.target, again.permission) == (
        parsed.name,
        parsed.target,
        Permission.RO,
    )
