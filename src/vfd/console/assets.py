"""The console's static files (``static/``, shipped inside the package), served at
``/console/`` with the headers that keep them in their own origin."""

from __future__ import annotations

from pathlib import Path

from starlette.responses import FileResponse

from vfd.errors import ErrorCode, VfdError

STATIC = Path(__file__).resolve().parent / "static"
INDEX = "index.html"

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
    ".txt": "text/plain; charset=utf-8",
}

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
"""Scripts only from the console's own files (no inline script: an injected name cannot run);
no framing (clickjacking); forms post only to the daemon."""

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}
"""Sent with every console page and file (and the sign-in answers)."""


def _missing(path: str) -> VfdError:
    return VfdError(ErrorCode.NOT_FOUND, f"no console file {path!r}", path=path)


def find(path: str) -> Path:
    """The file of ``/console/<path>``: one under :data:`STATIC`, never outside it (no
    ``..``, hidden names or links out). A path without a file extension that names no file is
    the console's page itself (its views are addressed in the page)."""
    parts = [p for p in path.split("/") if p]
    if any(p.startswith(".") or "\x00" in p or "\\" in p for p in parts):
        raise _missing(path)
    target = STATIC.joinpath(*parts) if parts else STATIC / INDEX
    try:
        real = target.resolve(strict=True)
    except (OSError, RuntimeError):
        real = None
    if real is not None and real.is_dir():
        real = (real / INDEX) if (real / INDEX).is_file() else None
    if real is None and (not parts or "." not in parts[-1]):
        real = STATIC / INDEX if (STATIC / INDEX).is_file() else None
        if real is None:
            raise VfdError(
                ErrorCode.NOT_FOUND,
                "the console's files are not installed with this vfd (vfd/console/static)",
                path=path,
            )
    if real is None or not real.is_relative_to(STATIC) or not real.is_file():
        raise _missing(path)
    return real


def response(path: str) -> FileResponse:
    """The file of ``/console/<path>`` with its type and the security headers; revalidated on
    every load (ETag), so a new vfd's files are picked up at once."""
    real = find(path)
    media = _TYPES.get(real.suffix.lower(), "application/octet-stream")
    headers = {**SECURITY_HEADERS, "Cache-Control": "no-cache"}
    return FileResponse(real, media_type=media, headers=headers)
