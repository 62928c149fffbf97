"""Reaching past pyfuse3 into the libfuse session it created — found, never guessed.

pyfuse3 keeps its session, its table of libfuse callbacks and the coroutine a callback
produced in module-level C variables. They are located through the symbol table of the
pyfuse3 extension (ELF ``.symtab``) and the address it is loaded at (``/proc/self/maps``);
the session's own copy of the callback table is the one spot in the session that matches
pyfuse3's table byte for byte. :func:`find` returns None when any of this is not as expected
(a stripped or different pyfuse3 build), and callers then keep to pyfuse3's public API.
"""

from __future__ import annotations

import ctypes
import logging
import os
import struct
from dataclasses import dataclass
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

SYMBOLS = (
    "__pyx_v_7pyfuse3_session",
    "__pyx_v_7pyfuse3_fuse_ops",
    "__pyx_v_7pyfuse3_py_retval",
    "__pyx_f_7pyfuse3_fuse_statfs",
    "__pyx_f_7pyfuse3_fuse_forget_multi",
    "__pyx_f_7pyfuse3_fuse_readdirplus",
)


class FuseBuf(ctypes.Structure):
    """``struct fuse_buf`` (fuse_common.h)."""

    _fields_ = [
        ("size", ctypes.c_size_t),
        ("flags", ctypes.c_int),
        ("mem", ctypes.c_void_p),
        ("fd", ctypes.c_int),
        ("pos", ctypes.c_int64),
    ]


FUSE_BUF_IS_FD = 1 << 1


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


def _load_base(path: str) -> int | None:
    real = os.path.realpath(path)
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 6 and parts[5] == real and int(parts[2], 16) == 0:
                return int(parts[0].split("-")[0], 16)
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


def _find_ops_copy(session: int, ops_addr: int, ops_size: int) -> int | None:
    wanted = ctypes.string_at(ops_addr, ops_size)
    window = ctypes.string_at(session, 512 + ops_size)
    at = window.find(wanted)
    if at < 0 or at % PTR or window.find(wanted, at + 1) >= 0:
        return None
    return session + at


def find() -> Internals | None:
    """The session's internals, checked; None (and a log line) when they cannot be trusted."""
    try:
        return _find()
    except Exception:
        log.exception("cannot locate pyfuse3's libfuse session")
        return None


def _find() -> Internals | None:
    so = pyfuse3.__file__
    if so is None or not so.endswith(".so"):
        return None
    syms = elf_symbols(so, SYMBOLS)
    base = _load_base(so)
    if base is None or len(syms) != len(SYMBOLS):
        log.info("pyfuse3 has no symbol table; using its public API only")
        return None
    session = ctypes.c_void_p.from_address(base + syms["__pyx_v_7pyfuse3_session"][0]).value
    ops_addr, ops_size = syms["__pyx_v_7pyfuse3_fuse_ops"]
    if not session or ops_size < (SLOT_READDIRPLUS + 1) * PTR:
        return None
    table = _find_ops_copy(session, base + ops_addr, ops_size)
    if table is None:
        log.info("libfuse's session does not hold pyfuse3's callback table; not patching")
        return None
    slots = (ctypes.c_void_p * (ops_size // PTR)).from_address(table)
    expect = {
        SLOT_STATFS: "__pyx_f_7pyfuse3_fuse_statfs",
        SLOT_FORGET_MULTI: "__pyx_f_7pyfuse3_fuse_forget_multi",
        SLOT_READDIRPLUS: "__pyx_f_7pyfuse3_fuse_readdirplus",
    }
    for slot, name in expect.items():
        if slots[slot] != base + syms[name][0]:
            log.info("libfuse's callback table is not laid out as expected; not patching")
            return None
    lib = ctypes.CDLL("libfuse3.so.3")
    lib.fuse_reply_err.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.fuse_session_receive_buf.argtypes = [ctypes.c_void_p, ctypes.POINTER(FuseBuf)]
    lib.fuse_session_receive_buf.restype = ctypes.c_int
    # process_buf calls back into pyfuse3 (Python): it must keep the GIL, as PyDLL does
    pylib = ctypes.PyDLL("libfuse3.so.3")
    process = pylib.fuse_session_process_buf
    process.argtypes = [ctypes.c_void_p, ctypes.POINTER(FuseBuf)]
    process.restype = None
    lib.fuse_session_exited.argtypes = [ctypes.c_void_p]
    lib.fuse_session_exited.restype = ctypes.c_int
    lib.fuse_session_fd.argtypes = [ctypes.c_void_p]
    lib.fuse_session_fd.restype = ctypes.c_int
    return Internals(base, syms, session, slots, lib, process)
