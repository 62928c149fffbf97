"""Every error vfd reports, in one table.

    VfdError                      raised by domain code; carries one ErrorCode
      ErrorCode                   stable string code -> (HTTP status, errno)

The HTTP API translates a VfdError into the JSON error shape in exactly one place
(``vfd.daemon.errors``); the FUSE layer answers ``ErrorCode.errno``; the CLI prints the
message and exits non-zero. Domain errors never inherit from a web framework's exceptions.
"""

from __future__ import annotations

import enum
import errno as _errno
from typing import Any


class ErrorCode(enum.Enum):
    """A stable error code. The value is the code's wire name; ``http`` and ``errno`` map it."""

    def __new__(cls, wire: str, http: int, err: int) -> ErrorCode:
        obj = object.__new__(cls)
        obj._value_ = wire
        obj.http = http
        obj.errno = err
        return obj

    http: int
    errno: int

    # bad input
    INVALID_ARGUMENT = ("invalid_argument", 400, _errno.EINVAL)
    USAGE_ERROR = ("usage_error", 400, _errno.EINVAL)  # the CLI's: bad options or arguments
    AMBIGUOUS_ID = ("ambiguous_id", 400, _errno.EINVAL)
    INVALID_NAME = ("invalid_name", 400, _errno.EINVAL)
    NAME_TOO_LONG = ("name_too_long", 400, _errno.ENAMETOOLONG)
    RESERVED_NAME = ("reserved_name", 400, _errno.EINVAL)
    INVALID_PATH = ("invalid_path", 400, _errno.EINVAL)
    CONFIRMATION_MISMATCH = ("confirmation_mismatch", 400, _errno.EINVAL)
    NOT_SHAREABLE = ("not_shareable", 400, _errno.EINVAL)
    METHOD_NOT_ALLOWED = ("method_not_allowed", 405, _errno.EINVAL)
    INVALID_MOUNT = ("invalid_mount", 400, _errno.EINVAL)  # a bad -m spec or target
    SESSION_REJECTED = ("session_rejected", 400, _errno.EPERM)  # a plugin refused the request
    APP_REJECTED = ("app_rejected", 400, _errno.EPERM)  # a plugin refused an app's launch
    EXCEEDS_CAPACITY = ("exceeds_capacity", 400, _errno.ENOSPC)  # larger than any node
    # above a resource policy's absolute limit: details.limit, asked, allowed
    POLICY_VIOLATION = ("policy_violation", 403, _errno.EPERM)
    # identity and permission
    UNAUTHENTICATED = ("unauthenticated", 401, _errno.EACCES)
    PERMISSION_DENIED = ("permission_denied", 403, _errno.EACCES)
    ADMIN_REQUIRED = ("admin_required", 403, _errno.EPERM)
    USER_INACTIVE = ("user_inactive", 403, _errno.EACCES)
    CSRF_FAILED = ("csrf_failed", 403, _errno.EACCES)  # a console call without its CSRF token
    HOST_NOT_ALLOWED = ("host_not_allowed", 403, _errno.EACCES)
    FOLDER_LIMIT_REACHED = ("folder_limit_reached", 403, _errno.EDQUOT)
    READ_ONLY = ("read_only", 403, _errno.EROFS)
    # missing things
    NOT_FOUND = ("not_found", 404, _errno.ENOENT)
    VFOLDER_NOT_FOUND = ("vfolder_not_found", 404, _errno.ENOENT)
    USER_NOT_FOUND = ("user_not_found", 404, _errno.ENOENT)
    PROJECT_NOT_FOUND = ("project_not_found", 404, _errno.ENOENT)
    HOST_NOT_FOUND = ("host_not_found", 404, _errno.ENOENT)
    POLICY_NOT_FOUND = ("policy_not_found", 404, _errno.ENOENT)
    INVITATION_NOT_FOUND = ("invitation_not_found", 404, _errno.ENOENT)
    SCOPE_NOT_FOUND = ("scope_not_found", 404, _errno.ENOENT)
    PATH_NOT_FOUND = ("path_not_found", 404, _errno.ENOENT)
    TOKEN_NOT_FOUND = ("token_not_found", 404, _errno.ENOENT)
    SESSION_NOT_FOUND = ("session_not_found", 404, _errno.ENOENT)
    IMAGE_NOT_FOUND = ("image_not_found", 404, _errno.ENOENT)
    DOTFILE_NOT_FOUND = ("dotfile_not_found", 404, _errno.ENOENT)
    PLUGIN_NOT_FOUND = ("plugin_not_found", 404, _errno.ENOENT)
    GROUP_NOT_FOUND = ("group_not_found", 404, _errno.ENOENT)  # a resource group
    PRESET_NOT_FOUND = ("preset_not_found", 404, _errno.ENOENT)
    NODE_NOT_FOUND = ("node_not_found", 404, _errno.ENOENT)
    APP_NOT_FOUND = ("app_not_found", 404, _errno.ENOENT)  # no such app (running) in a session
    # conflicts
    VFOLDER_EXISTS = ("vfolder_exists", 409, _errno.EEXIST)
    USER_EXISTS = ("user_exists", 409, _errno.EEXIST)
    PROJECT_EXISTS = ("project_exists", 409, _errno.EEXIST)
    POLICY_EXISTS = ("policy_exists", 409, _errno.EEXIST)
    PATH_EXISTS = ("path_exists", 409, _errno.EEXIST)
    ALREADY_MEMBER = ("already_member", 409, _errno.EEXIST)
    NOT_A_MEMBER = ("not_a_member", 409, _errno.ENOENT)
    INVITATION_EXISTS = ("invitation_exists", 409, _errno.EEXIST)
    INVALID_STATUS = ("invalid_status", 409, _errno.EBUSY)
    SESSION_EXISTS = ("session_exists", 409, _errno.EEXIST)  # a live session has that name
    SESSION_NOT_RUNNING = ("session_not_running", 409, _errno.EINVAL)
    DOTFILE_EXISTS = ("dotfile_exists", 409, _errno.EEXIST)
    GROUP_EXISTS = ("group_exists", 409, _errno.EEXIST)
    PRESET_EXISTS = ("preset_exists", 409, _errno.EEXIST)
    GROUP_IN_USE = ("group_in_use", 409, _errno.EBUSY)  # nodes or live sessions in it
    DOTFILE_LIMIT_REACHED = ("dotfile_limit_reached", 403, _errno.EDQUOT)
    FOLDER_IN_USE = ("folder_in_use", 409, _errno.EBUSY)
    CONSOLE_UNAVAILABLE = ("console_unavailable", 409, _errno.ENOTCONN)  # no tcp_listen
    NOT_A_DIRECTORY = ("not_a_directory", 409, _errno.ENOTDIR)
    IS_A_DIRECTORY = ("is_a_directory", 409, _errno.EISDIR)
    NOT_A_REGULAR_FILE = ("not_a_regular_file", 409, _errno.EINVAL)  # a FIFO, socket, device
    DIRECTORY_NOT_EMPTY = ("directory_not_empty", 409, _errno.ENOTEMPTY)
    CROSS_SCOPE = ("cross_scope", 409, _errno.EXDEV)
    UPLOAD_OFFSET_MISMATCH = ("upload_offset_mismatch", 409, _errno.EINVAL)
    PRECONDITION_FAILED = ("precondition_failed", 412, _errno.ESTALE)  # If-Match: it changed
    RANGE_NOT_SATISFIABLE = ("range_not_satisfiable", 416, _errno.EINVAL)
    # capacity
    TOO_MANY_REQUESTS = ("too_many_requests", 429, _errno.EAGAIN)  # details.retry_after (s)
    QUOTA_EXCEEDED = ("quota_exceeded", 507, _errno.EDQUOT)
    # the system itself
    MOUNTD_UNAVAILABLE = ("mountd_unavailable", 503, _errno.EIO)
    DAEMON_UNAVAILABLE = ("daemon_unavailable", 503, _errno.ECONNREFUSED)
    RUNTIME_UNAVAILABLE = ("runtime_unavailable", 503, _errno.EIO)  # docker not reachable
    PLUGIN_FAILED = ("plugin_failed", 500, _errno.EIO)  # a plugin raised where it may not
    APP_FAILED = ("app_failed", 500, _errno.EIO)  # an app server did not start
    NO_FREE_PORT = ("no_free_port", 503, _errno.EADDRINUSE)  # the [apps] ports are all taken
    CONFIG_INVALID = ("config_invalid", 500, _errno.EINVAL)
    INTERNAL = ("internal", 500, _errno.EIO)

    @classmethod
    def from_wire(cls, wire: str) -> ErrorCode:
        """The code named ``wire``; INTERNAL for an unknown name (newer server, older client)."""
        for code in cls:
            if code.value == wire:
                return code
        return cls.INTERNAL


class VfdError(Exception):
    """A failure with a stable code, a message for people, and optional structured details."""

    def __init__(self, code: ErrorCode, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    def to_json(self) -> dict[str, Any]:
        """The one JSON error shape used everywhere: ``{"error": {code, message, details}}``."""
        body = {"code": self.code.value, "message": self.message, "details": self.details}
        return {"error": body}

    @classmethod
    def from_json(cls, body: Any) -> VfdError | None:
        """Rebuild an error from the JSON shape, or None when ``body`` is not one."""
        if not isinstance(body, dict) or not isinstance(body.get("error"), dict):
            return None
        err = body["error"]
        code = ErrorCode.from_wire(str(err.get("code", "")))
        details = err.get("details") if isinstance(err.get("details"), dict) else {}
        return cls(code, str(err.get("message", code.value)), **details)

    def __repr__(self) -> str:
        return f"VfdError({self.code.value!r}, {self.message!r})"
