"""The fast path's gate (``vfd.fuse.libfuse``) and its C callbacks' error answering
(``vfd.fuse.hooks.answering``), in-process and without a mount."""

from __future__ import annotations

import ctypes
import errno
import os
import re
from pathlib import Path

import pyfuse3
import pytest

from vfd.fuse import hooks, libfuse

HEADER = Path("/usr/include/fuse3/fuse_common.h")


def test_libfuse_mapped_is_the_one_pyfuse3_linked() -> None:
    """After importing pyfuse3 exactly one libfuse3 is mapped, by a real path; its
    ``fuse_version()`` is read from that file (not from whatever a soname resolves to)."""
    (path,) = libfuse.mapped_libfuse()
    assert os.path.isfile(path)
    assert os.path.basename(path).startswith("libfuse3.so")
    major, minor = libfuse.libfuse_version(path)
    assert major == 3 and minor >= 0
    assert libfuse.mapped_libfuse() == [path]  # loading it by its path mapped no second copy
    if HEADER.exists():  # the headers installed with it name the same release
        text = HEADER.read_text()
        want = tuple(
            int(re.search(rf"#define FUSE_{w}_VERSION (\d+)", text)[1])  # type: ignore[index]
            for w in ("MAJOR", "MINOR")
        )
        assert (major, minor) == want


def test_libfuse_verify_names_what_is_not_verified() -> None:
    ok = next(iter(libfuse.PYFUSE3_VERIFIED))
    verified = next(iter(libfuse.LAYOUTS))
    assert libfuse.verify("x86_64", ok, verified) is None
    why = libfuse.verify("aarch64", ok, verified)
    assert why is not None and "x86-64 only" in why
    why = libfuse.verify("x86_64", "3.0.0", verified)
    assert why is not None and "pyfuse3 3.0.0 is not a verified release" in why
    why = libfuse.verify("x86_64", ok, (3, 17))
    assert why is not None and "libfuse 3.17 is not a verified release" in why
    why = libfuse.verify("x86_64", ok, None)
    assert why is not None and "libfuse unknown" in why


def test_libfuse_layouts_match_the_installed_headers() -> None:
    """The verified layout of the installed release agrees with its headers, compiled."""
    (path,) = libfuse.mapped_libfuse()
    layout = libfuse.LAYOUTS.get(libfuse.libfuse_version(path))
    if layout is None:
        pytest.skip(f"{path} is not a verified libfuse release")
    assert ctypes.sizeof(libfuse.FuseBuf) == layout.buf_size
    fields = dict(
        (name, getattr(libfuse.FuseBuf, name).offset) for name, _ in libfuse.FuseBuf._fields_
    )
    assert fields == {"size": 0, "flags": 8, "mem": 16, "fd": 24, "pos": 32}


def test_libfuse_probe_off_is_off_with_the_reason() -> None:
    """Turned off, nothing is located, but the status still names the libfuse mapped."""
    internals, status = libfuse.probe("off")
    assert internals is None
    (path,) = libfuse.mapped_libfuse()
    major, minor = libfuse.libfuse_version(path)
    assert status.to_json() == {
        "setting": "off",
        "on": False,
        "reason": "turned off (fuse.fast_path = off)",
        "libfuse": path,
        "libfuse_version": f"{major}.{minor}",
        "pyfuse3_version": pyfuse3.__version__,
    }


def test_libfuse_probe_without_a_session_stays_off() -> None:
    """Before ``pyfuse3.init`` (no session) ``auto`` finds nothing to patch and says so."""
    internals, status = libfuse.probe("auto")
    assert internals is None and not status.on
    assert status.reason
    assert status.libfuse is not None


def test_hooks_answering_replies_once_whatever_the_handler_does(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A callback's handler replies as its last step; what it raises before is answered
    with its errno (EIO for bugs and for BaseException) exactly once, and nothing escapes."""
    sent: list[tuple[int, int]] = []

    def reply_err(req: int, err: int) -> int:
        sent.append((req, err))
        return 0

    def replies(req: int, value: int) -> None:
        reply_err(req, 0)

    def fails_os(req: int, value: int) -> None:
        raise OSError(errno.ENOTDIR, "not a directory")

    def fails_fuse(req: int, value: int) -> None:
        raise pyfuse3.FUSEError(errno.ENOENT)

    def bug(req: int, value: int) -> None:
        raise ZeroDivisionError(value)

    def interrupted(req: int, value: int) -> None:
        raise KeyboardInterrupt

    for req, fn in enumerate((replies, fails_os, fails_fuse, bug, interrupted), start=1):
        hooks.answering(fn.__name__, reply_err, fn)(req, 0)
    assert sent == [
        (1, 0),
        (2, errno.ENOTDIR),
        (3, errno.ENOENT),
        (4, errno.EIO),
        (5, errno.EIO),
    ]
    assert "unexpected error in bug" in caplog.text
    assert "interrupted interrupted; answering EIO" in caplog.text


def test_hooks_answering_survives_a_failing_reply(caplog: pytest.LogCaptureFixture) -> None:
    def reply_err(req: int, err: int) -> int:
        raise ctypes.ArgumentError("bad request pointer")

    def bug(req: int) -> None:
        raise ValueError("bug")

    hooks.answering("bug", reply_err, bug)(1)  # raises nothing into libfuse
    assert "bug: cannot answer the request" in caplog.text
