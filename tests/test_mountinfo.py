"""The one mountinfo reader: octal escapes and raw bytes decoded as the kernel wrote them."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from vfd import mountinfo

LINE = (
    b"36 35 98:0 /mnt\\040dir/caf\xc3\xa9 /srv/a\\040b/\xc3\xa9t\\303\\251 rw,noatime master:1"
    b" - ext3 /dev/root rw,errors=continue\n"
)


def test_mountinfo_decodes_octal_escapes_and_utf8() -> None:
    entry = mountinfo.parse_line(LINE)
    assert entry.mount_id == 36 and entry.parent_id == 35 and entry.device == "98:0"
    assert entry.root == "/mnt dir/café"
    # UTF-8 as raw bytes and as escaped bytes both decode to the same characters
    assert entry.mount_point == "/srv/a b/été" == "/srv/a b/\u00e9t\u00e9"
    assert entry.options == ("rw", "noatime")
    assert (entry.fstype, entry.source) == ("ext3", "/dev/root")
    assert entry.super_options == ("rw", "errors=continue")


def test_mountinfo_keeps_bytes_that_are_not_utf8() -> None:
    entry = mountinfo.parse_line(b"1 0 0:1 / /data/x\\377y rw - tmpfs none rw\n")
    assert os.fsencode(entry.mount_point) == b"/data/x\xffy"


def test_mountinfo_backslash_and_newline_escapes() -> None:
    entry = mountinfo.parse_line(b"1 0 0:1 / /a\\134b\\012c\\011d rw - tmpfs none rw\n")
    assert entry.mount_point == "/a\\b\nc\td"


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_mountinfo_finds_a_real_mount_whose_path_has_spaces_and_accents() -> None:
    base = Path(tempfile.mkdtemp(prefix="vfd-mi-"))
    target = base / "données d'été"
    target.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "vfd-test", str(target)], check=True)
    try:
        found = mountinfo.mounts_at(target)
        assert [e.fstype for e in found] == ["tmpfs"]
        assert found[0].source == "vfd-test"
        assert mountinfo.by_id(found[0].mount_id) == found[0]
    finally:
        subprocess.run(["umount", str(target)], check=True)
        target.rmdir()
        base.rmdir()
    assert mountinfo.mounts_at(target) == []
