"""Reaching past pyfuse3 into the libfuse session it created — only where verified.

pyfuse3 keeps its session, its table of libfuse callbacks and the coroutine a callback
produced in module-level C variables. They are located through the symbol table of the
pyfuse3 extension (ELF ``.symtab``) and the address it is loaded at (``/proc/self/maps``).
Everything else this package relies on — the layouts of ``struct fuse_file_info``,
``struct fuse_conn_info``, ``struct fuse_buf``, the slots of ``struct fuse_lowlevel_ops``
and where the session keeps its copy of that table — is taken from :data:`LAYOUTS`, written
from the headers (and, for the session, ``lib/fuse_i.h``) of each verified libfuse release,
and used only when:

* the setting (``fuse.fast_path``) is ``auto``;
* the machine is x86-64 (the only ABI the layouts were written for);
* ``pyfuse3.__version__`` is in :data:`PYFUSE3_VERIFIED` (the private symbols and the
  ``py_retval`` hand-over are those of that release);
* exactly one libfuse3 shared object is mapped in the process (the one pyfuse3 linked), and
  ``fuse_version()`` of that very file — loaded by its mapped path, never by soname — is a
  key of :data:`LAYOUTS`;
* the symbols are found, pyfuse3's callback table has the size of the verified
  ``fuse_lowlevel_ops``, and the session holds a byte-for-byte copy of it at the verified
  offset, with pyfuse3's callbacks in the verified slots.

:func:`probe` returns the internals with a :class:`FastPathStatus` saying so, or None with
the status saying which check failed; callers then keep to pyfuse3's public API.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import struct
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pyfuse3

log = logging.getLogger("vfd.fuse")

PTR = ctypes.sizeof(ctypes.c_void_p)

# Slots in struct fuse_lowlevel_ops (libfuse 3 fuse_lowlevel.h; the ABI only appends).
SLOT_INIT = 0
SLOT_LOOKUP = 2
SLOT_GETATTR = 4
SLOT_READDIR = 21
SLOT_STATFS = 24
SLOT_GETXATTR = 26
SLOT_FORGET_MULTI = 38
SLOT_FALLOCATE = 40
SLOT_READDIRPLUS = 41

PYFUSE3_VERIFIED = frozenset({"3.5.0"})
"""pyfuse3 releases whose private symbols and callback protocol (``save_retval`` into
``py_retval``, awaited by the caller of ``fuse_session_process_buf``) were checked."""

FAST_PATH_SETTINGS = ("auto", "off")


@dataclass(frozen=True)
class Layout:
    """Offsets and sizes (bytes, x86-64) in one libfuse release's structures."""

    fi_fh: int
    """``fuse_file_info.fh`` (fuse_common.h)."""
    conn_capable: int
    conn_want: int
    """``fuse_conn_info.capable`` and ``.want`` (fuse_common.h)."""
    ops_slots: int
    """Function pointers in ``struct fuse_lowlevel_ops`` (fuse_lowlevel.h)."""
    session_ops: int
    """Offset of ``op`` in ``struct fuse_session`` (lib/fuse_i.h)."""
    buf_size: int
    """``sizeof(struct fuse_buf)`` (fuse_common.h): what :class:`FuseBuf` must be."""


LAYOUTS: dict[tuple[int, int], Layout] = {
    # libfuse 3.14.0 and 3.14.1 (Debian 12): fuse_file_info {int flags; 32 bits of flags;
    # 32 bits of padding; uint64_t fh; ...}; fuse_conn_info {proto_major, proto_minor,
    # max_write, max_read, max_readahead, capable, want, ...} (unsigned); fuse_lowlevel_ops
    # init ... lseek (44 pointers); fuse_session {char *mountpoint; int exited; int fd;
    # struct fuse_custom_io *io; struct mount_opts *mo; int debug; int deny_others;
    # struct fuse_lowlevel_ops op; ...}; fuse_buf {size_t size; enum flags; void *mem;
    # int fd; off_t pos} (3.17 appends size_t mem_size).
    (3, 14): Layout(
        fi_fh=16, conn_capable=20, conn_want=24, ops_slots=44, session_ops=40, buf_size=40
    ),
}

SYMBOLS = (
    "__pyx_v_7pyfuse3_session",
    "__pyx_v_7pyfuse3_fuse_ops",
    "__pyx_v_7pyfuse3_py_retval",
    "__pyx_f_7pyfuse3_fuse_statfs",
    "__pyx_f_7pyfuse3_fuse_forget_multi",
    "__pyx_f_7pyfuse3_fuse_readdirplus",
)


class FuseBuf(ctypes.Structure):
    """``struct fuse_buf`` (fuse_common.h of the libfuse releases in :data:`LAYOUTS`)."""

    _fields_ = [
        ("size", ctypes.c_size_t),
        ("flags", ctypes.c_int),
        ("mem", ctypes.c_void_p),
        ("fd", ctypes.c_int),
        ("pos", ctypes.c_int64),
    ]


FUSE_BUF_IS_FD = 1 << 1


@dataclass(frozen=True)
class FastPathStatus:
    """Whether mountd runs its low-level fast path, and why (reported by ``health``)."""

    setting: str
    on: bool
    reason: str
    libfuse: str | None = None
    """Path of the libfuse3 shared object mapped in mountd."""
    libfuse_version: str | None = None
    pyfuse3_version: str | None = None

    def off(self, reason: str) -> FastPathStatus:
        return replace(self, on=False, reason=reason)

    def to_json(self) -> dict[str, Any]:
        return {
            "setting": self.setting,
            "on": self.on,
            "reason": self.reason,
            "libfuse": self.libfuse,
            "libfuse_version": self.libfuse_version,
            "pyfuse3_version": self.pyfuse3_version,
        }


def elf_symbols(path: str, names: tuple[str, ...]) -> dict[str, tuple[int, int]]:
    """``name -> (value, size)`` from the ELF64 ``.symtab`` of ``path`` (empty if stripped)."""
    data = Path(path).read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2:
        return {}
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [
        struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)
    ]
    wanted = {n.encode() for n in names}
    found: dict[str, tuple[int, int]] = {}
    for sec in sections:
        if sec[1] != 2:  # SHT_SYMTAB
            continue
        stroff = sections[sec[6]][4]
        for off in range(sec[4], sec[4] + sec[5], 24):
            st_name, _info, _other, _shndx, value, size = struct.unpack_from("<IBBHQQ", data, off)
            end = data.index(b"\0", stroff + st_name)
            name = data[stroff + st_name : end]
            if name in wanted:
                found[name.decode()] = (value, size)
    return found


def _maps() -> list[tuple[int, int, str]]:
    """``(start, file offset, path)`` of every file mapping of this process."""
    out = []
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split(maxsplit=5)
            if len(parts) == 6 and parts[5].startswith("/"):
                out.append((int(parts[0].split("-")[0], 16), int(parts[2], 16), parts[5].strip()))
    return out


def _load_base(path: str) -> int | None:
    real = os.path.realpath(path)
    for start, offset, mapped in _maps():
        if mapped == real and offset == 0:
            return start
    return None


def mapped_libfuse() -> list[str]:
    """Paths of the libfuse3 shared objects mapped in this process (one, after importing
    pyfuse3; a path ending in `` (deleted)`` was replaced on disk since)."""
    return sorted({p for _, _, p in _maps() if os.path.basename(p).startswith("libfuse3.so")})


def libfuse_version(path: str) -> tuple[int, int]:
    """``fuse_version()`` of the library at ``path`` (already mapped: same handle)."""
    raw = ctypes.CDLL(path).fuse_version()
    return divmod(int(raw), 100)  # FUSE_MAKE_VERSION(maj, min) = maj * 100 + min


def verify(machine: str, pyfuse3_version: str, libfuse: tuple[int, int] | None) -> str | None:
    """Why the fast path may not run with these versions, or None when it may."""
    if machine != "x86_64":
        return f"the structure layouts are verified on x86-64 only, not on {machine}"
    if pyfuse3_version not in PYFUSE3_VERIFIED:
        return (
            f"pyfuse3 {pyfuse3_version} is not a verified release "
            f"({', '.join(sorted(PYFUSE3_VERIFIED))})"
        )
    if libfuse not in LAYOUTS:
        verified = ", ".join(f"{a}.{b}" for a, b in sorted(LAYOUTS))
        got = "unknown" if libfuse is None else f"{libfuse[0]}.{libfuse[1]}"
        return f"libfuse {got} is not a verified release ({verified})"
    return None


@dataclass
class Internals:
    """Addresses inside pyfuse3 and its libfuse session (after ``pyfuse3.init``)."""

    base: int
    syms: dict[str, tuple[int, int]]
    session: int
    slots: Any
    """The session's callback table, as a ctypes array of pointers."""
    lib: ctypes.CDLL
    process_buf: Any
    """``fuse_session_process_buf``, called with the GIL held."""
    layout: Layout

    def addr(self, name: str) -> int:
        return self.base + self.syms[name][0]

    def retval_taker(self) -> Any:
        """A function returning the coroutine the last callback left for the loop (or None),
        and clearing pyfuse3's variable, keeping reference counts right."""
        addr = self.addr("__pyx_v_7pyfuse3_py_retval")
        raw = ctypes.c_void_p.from_address(addr)
        obj = ctypes.py_object.from_address(addr)
        none_ptr = id(None)
        incref, decref = ctypes.pythonapi.Py_IncRef, ctypes.pythonapi.Py_DecRef
        incref.argtypes = decref.argtypes = [ctypes.py_object]

        def take() -> Any:
            if raw.value == none_ptr:
                return None
            coro = obj.value  # a new reference, ours
            incref(None)  # the variable's reference to None...
            raw.value = none_ptr  # ...which it holds from now on
            decref(coro)  # and the variable's reference to the coroutine, dropped
            return coro

        return take


def probe(setting: str) -> tuple[Internals | None, FastPathStatus]:
    """The session's internals and a status saying they are used, or None and why not.

    Call after ``pyfuse3.init``. Never raises: an unexpected failure turns the fast path off.
    The status names the libfuse mapped in mountd and its version even when it is off.
    """
    status = FastPathStatus(setting, False, "", pyfuse3_version=pyfuse3.__version__)
    try:
        libs = mapped_libfuse()
        why: str | None = None
        layout: Layout | None = None
        if len(libs) != 1:
            why = f"expected one libfuse3 mapped in mountd, found {libs}"
        elif libs[0].endswith(" (deleted)"):
            status = replace(status, libfuse=libs[0])
            why = f"{libs[0]}: replaced on disk since mountd started"
        else:
            major, minor = libfuse_version(libs[0])
            status = replace(status, libfuse=libs[0], libfuse_version=f"{major}.{minor}")
            why = verify(platform.machine(), pyfuse3.__version__, (major, minor))
            layout = LAYOUTS.get((major, minor))
        if setting == "off":
            return None, status.off("turned off (fuse.fast_path = off)")
        if why is not None or layout is None or status.libfuse is None:
            return None, status.off(why or "libfuse is not a verified release")
        internals = _find(status.libfuse, layout)
    except Exception as exc:
        log.exception("cannot locate pyfuse3's libfuse session")
        return None, status.off(f"cannot locate pyfuse3's libfuse session: {exc}")
    if isinstance(internals, str):
        return None, status.off(internals)
    return internals, replace(status, on=True, reason="verified versions and layouts")


def _find(libpath: str, layout: Layout) -> Internals | str:
    """The internals, or why they cannot be trusted."""
    if ctypes.sizeof(FuseBuf) != layout.buf_size:
        return f"struct fuse_buf is {layout.buf_size} bytes, not {ctypes.sizeof(FuseBuf)}"
    so = pyfuse3.__file__
    if so is None or not so.endswith(".so"):
        return f"pyfuse3 is not an extension module ({so})"
    syms = elf_symbols(so, SYMBOLS)
    base = _load_base(so)
    if base is None or len(syms) != len(SYMBOLS):
        return "pyfuse3's extension has no symbol table (stripped)"
    if syms["__pyx_v_7pyfuse3_py_retval"][1] != PTR:
        return "pyfuse3's py_retval is not one object pointer"
    session = ctypes.c_void_p.from_address(base + syms["__pyx_v_7pyfuse3_session"][0]).value
    ops_addr, ops_size = syms["__pyx_v_7pyfuse3_fuse_ops"]
    if not session:
        return "pyfuse3 has no session (not initialised)"
    if ops_size != layout.ops_slots * PTR:
        return (
            f"pyfuse3 was built with a fuse_lowlevel_ops of {ops_size} bytes, "
            f"this libfuse's has {layout.ops_slots * PTR}"
        )
    table = session + layout.session_ops
    if ctypes.string_at(table, ops_size) != ctypes.string_at(base + ops_addr, ops_size):
        return "libfuse's session does not hold pyfuse3's callback table where expected"
    slots = (ctypes.c_void_p * layout.ops_slots).from_address(table)
    expect = {
        SLOT_STATFS: "__pyx_f_7pyfuse3_fuse_statfs",
        SLOT_FORGET_MULTI: "__pyx_f_7pyfuse3_fuse_forget_multi",
        SLOT_READDIRPLUS: "__pyx_f_7pyfuse3_fuse_readdirplus",
    }
    for slot, name in expect.items():
        if slots[slot] != base + syms[name][0]:
            return "libfuse's callback table is not laid out as expected"
    lib = ctypes.CDLL(libpath)
    lib.fuse_reply_err.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.fuse_session_receive_buf.argtypes = [ctypes.c_void_p, ctypes.POINTER(FuseBuf)]
    lib.fuse_session_receive_buf.restype = ctypes.c_int
    # process_buf calls back into pyfuse3 (Python): it must keep the GIL, as PyDLL does
    process = ctypes.PyDLL(libpath).fuse_session_process_buf
    process.argtypes = [ctypes.c_void_p, ctypes.POINTER(FuseBuf)]
    process.restype = None
    lib.fuse_session_exited.argtypes = [ctypes.c_void_p]
    lib.fuse_session_exited.restype = ctypes.c_int
    lib.fuse_session_fd.argtypes = [ctypes.c_void_p]
    lib.fuse_session_fd.restype = ctypes.c_int
    return Internals(base, syms, session, slots, lib, process, layout)
