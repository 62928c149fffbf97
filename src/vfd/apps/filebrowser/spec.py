"""What a file manager server is started with: its root, folders, token and limits.

The daemon (or a person running the server standalone) sends it as one JSON object on the
server's standard input, never on its command line, where other users could read the token::

    {"root": "/", "folders": [{"name": "data", "readonly": false}], "token": "...",
     "host": "127.0.0.1", "port": 0}
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from vfd.apps.filebrowser.tree import Folder, check_name
from vfd.errors import ErrorCode, VfdError

MIN_TOKEN = 16
TIMEOUTS = ("header_timeout", "body_timeout")


@dataclass(frozen=True)
class BrowserSpec:
    """A file manager server's settings."""

    root: str
    folders: list[Folder]
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    host: str = "127.0.0.1"
    port: int = 0
    stall: float = 60.0
    """Seconds an upload may go without a request before it is removed."""
    page: int = 200
    """Entries per page of a listing (the browser may ask for up to 1000)."""
    header_timeout: float = 30.0
    """Seconds a connection may take to send a request head."""
    body_timeout: float = 60.0
    """Seconds a request body may stall (then the connection is closed: an upload in
    flight is removed)."""


def _bad(message: str, key: str) -> VfdError:
    return VfdError(ErrorCode.INVALID_ARGUMENT, f"file manager spec: {message}", field=key)


def parse_spec(obj: Any) -> BrowserSpec:
    """The spec a JSON object describes; ``invalid_argument`` naming the bad field."""
    if not isinstance(obj, dict):
        raise _bad("expected a JSON object", "")
    known = {"root", "folders", "token", "host", "port", "stall", "page"} | set(TIMEOUTS)
    unknown = set(obj) - known
    if unknown:
        raise _bad(f"unknown fields {sorted(unknown)}", sorted(unknown)[0])
    root = obj.get("root")
    if not isinstance(root, str) or not root.startswith("/"):
        raise _bad("root must be an absolute path", "root")
    folders_raw = obj.get("folders")
    if not isinstance(folders_raw, list) or not folders_raw:
        raise _bad("folders must be a non-empty list", "folders")
    folders = []
    for item in folders_raw:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise _bad("each folder is {name, readonly}", "folders")
        name = check_name(item["name"], "folders")
        readonly = item.get("readonly", False)
        if not isinstance(readonly, bool):
            raise _bad("readonly must be true or false", "folders")
        folders.append(Folder(name, readonly))
    if len({f.name for f in folders}) != len(folders):
        raise _bad("folder names must be unique", "folders")
    spec = BrowserSpec(root=root, folders=folders)
    token = obj.get("token", spec.token)
    if not isinstance(token, str) or len(token) < MIN_TOKEN or not token.isascii():
        raise _bad(f"token must be at least {MIN_TOKEN} ASCII characters", "token")
    host = obj.get("host", spec.host)
    port = obj.get("port", spec.port)
    if not isinstance(host, str) or not host:
        raise _bad("host must be an address", "host")
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise _bad("port must be 0-65535", "port")
    seconds = {}
    for key in ("stall", *TIMEOUTS):
        value = obj.get(key, getattr(spec, key))
        if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
            raise _bad(f"{key} must be a positive number of seconds", key)
        seconds[key] = float(value)
    page = obj.get("page", spec.page)
    if not isinstance(page, int) or isinstance(page, bool) or not 1 <= page <= 1000:
        raise _bad("page must be 1-1000", "page")
    return BrowserSpec(root, folders, token, host, port, page=page, **seconds)
