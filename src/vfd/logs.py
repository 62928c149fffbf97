"""Logging to stdout with journald priority prefixes.

Under systemd, stdout goes to the journal, which reads a leading ``<N>`` as the syslog priority
of the line (``SyslogLevelPrefix=``, on by default). Every line of a multi-line record
(tracebacks) carries the prefix so that no line is logged at the wrong priority. No log files,
no daemonizing: the service manager owns both. Used by the daemon and by mountd.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

from vfd import wirenames

# syslog priorities (sd-daemon.h): SD_CRIT 2, SD_ERR 3, SD_WARNING 4, SD_INFO 6, SD_DEBUG 7
_PRIORITY = (
    (logging.CRITICAL, 2),
    (logging.ERROR, 3),
    (logging.WARNING, 4),
    (logging.INFO, 6),
)
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def priority(levelno: int) -> int:
    """The syslog priority of a logging level."""
    for floor, prio in _PRIORITY:
        if levelno >= floor:
            return prio
    return 7


class JournalFormatter(logging.Formatter):
    """``<N>logger: message`` on every line of the record."""

    def __init__(self) -> None:
        super().__init__("%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        # a file name that is not UTF-8 (lone surrogates) would make the write fail
        text = wirenames.readable(super().format(record))
        prefix = f"<{priority(record.levelno)}>"
        return "\n".join(prefix + line for line in text.splitlines() or [""])


class _JournalHandler(logging.StreamHandler[TextIO]):
    """Marks the handler installed by :func:`setup_logging` so a second call replaces it."""


def setup_logging(level: str = "info", *, stream: TextIO | None = None) -> None:
    """Send every log record at ``level`` or above to stdout (or ``stream``) with prefixes.

    Idempotent: calling it again replaces the handler it installed. uvicorn's loggers propagate
    to the root logger; its per-request access log is shown at ``debug`` only.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _JournalHandler):
            root.removeHandler(handler)
    handler = _JournalHandler(stream if stream is not None else sys.stdout)
    handler.setFormatter(JournalFormatter())
    root.addHandler(handler)
    numeric = _LEVELS.get(level.lower(), logging.INFO)
    root.setLevel(numeric)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    access = logging.getLogger("uvicorn.access")
    access.setLevel(logging.DEBUG if numeric <= logging.DEBUG else logging.WARNING)
