"""The one place where anything a request handler raises becomes an errno for the kernel.

Under trio an exception escaping a pyfuse3 handler ends ``pyfuse3.main()`` and with it the
whole mount (ENOTCONN in every container using it). So every handler is wrapped:

* ``FUSEError`` passes through;
* ``OSError`` from a backing syscall answers its errno (the expected failures: ENOENT,
  ENOTEMPTY, EEXIST...);
* ``VfdError`` answers its code's errno;
* anything else is a bug: it is logged with its traceback and answered with EIO.
"""

from __future__ import annotations

import errno
import functools
import logging
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

import pyfuse3

from vfd.errors import VfdError

log = logging.getLogger("vfd.fuse")

P = ParamSpec("P")
T = TypeVar("T")

COUNTS: Counter[str] = Counter()
"""Requests handled, by handler name (reported by ``health``)."""


def to_fuse_error(exc: BaseException, where: str) -> pyfuse3.FUSEError:
    """The FUSEError to answer for ``exc`` raised while handling ``where``."""
    if isinstance(exc, pyfuse3.FUSEError):
        return exc
    if isinstance(exc, OSError) and exc.errno:
        return pyfuse3.FUSEError(exc.errno)
    if isinstance(exc, VfdError):
        return pyfuse3.FUSEError(exc.code.errno)
    log.error("unexpected error in %s; answering EIO", where, exc_info=exc)
    return pyfuse3.FUSEError(errno.EIO)


def handler(fn: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """Wrap a request handler so that it raises nothing but ``FUSEError``."""
    name = fn.__name__

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        COUNTS[name] += 1
        try:
            return await fn(*args, **kwargs)
        except pyfuse3.FUSEError:
            raise
        except Exception as exc:
            raise to_fuse_error(exc, name) from None

    return wrapper


def quiet(
    fn: Callable[P, Coroutine[Any, Any, None]],
) -> Callable[P, Coroutine[Any, Any, None]]:
    """Wrap a handler that may not fail at all (``forget``, ``release``): log and go on."""
    name = fn.__name__

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        COUNTS[name] += 1
        try:
            await fn(*args, **kwargs)
        except Exception as exc:
            if not isinstance(exc, pyfuse3.FUSEError | OSError):
                log.error("unexpected error in %s", name, exc_info=exc)
            else:
                log.debug("%s failed: %s", name, exc)

    return wrapper
