"""The framing of a session's output on the wire (logs, exec), shared by daemon and CLI.

Each frame is ``<kind: 1 byte><length: 4 bytes, big-endian><payload>``:

- ``STDOUT`` (1) and ``STDERR`` (2): bytes the container wrote;
- ``END`` (0): the last frame, a JSON object — for logs ``{"status", "exit_code", "reason"}``
  once the session ended (or the output so far, without ``follow``), for exec
  ``{"exit_code"}``;
- ``ERROR`` (3): the stream cannot go on; a JSON object in the error shape
  (``{"error": {code, message, details}}``), then the stream ends.

The media type is :data:`MEDIA_TYPE`.
"""

from __future__ import annotations

import enum
import json
import struct
from collections.abc import Iterator
from typing import Any

MEDIA_TYPE = "application/vnd.vfd.frames"
HEADER = struct.Struct(">BI")
MAX_FRAME = 1 << 24


class Kind(enum.IntEnum):
    END = 0
    STDOUT = 1
    STDERR = 2
    ERROR = 3


def encode(kind: Kind, payload: bytes) -> bytes:
    """One frame; a payload longer than :data:`MAX_FRAME` is split into several."""
    if len(payload) <= MAX_FRAME:
        return HEADER.pack(kind, len(payload)) + payload
    return b"".join(
        HEADER.pack(kind, len(payload[i : i + MAX_FRAME])) + payload[i : i + MAX_FRAME]
        for i in range(0, len(payload), MAX_FRAME)
    )


def encode_json(kind: Kind, value: dict[str, Any]) -> bytes:
    return encode(kind, json.dumps(value).encode())


class Decoder:
    """Feed bytes as they arrive; iterate the complete frames."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> Iterator[tuple[Kind, bytes]]:
        self._buf += data
        while len(self._buf) >= HEADER.size:
            kind, length = HEADER.unpack_from(self._buf)
            if length > MAX_FRAME:
                raise ValueError(f"frame of {length} bytes is larger than {MAX_FRAME}")
            if len(self._buf) < HEADER.size + length:
                return
            if kind not in Kind._value2member_map_:
                raise ValueError(f"unknown frame kind {kind}")
            payload = bytes(self._buf[HEADER.size : HEADER.size + length])
            del self._buf[: HEADER.size + length]
            yield Kind(kind), payload

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame (non-zero at the end of a stream: it was cut)."""
        return len(self._buf)
