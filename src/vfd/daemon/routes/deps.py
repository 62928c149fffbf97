"""What every router needs: the daemon, the caller, strict request bodies, and a thread hop."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Annotated, Any, ClassVar, ParamSpec, TypeVar

from fastapi import Depends, Header, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from vfd.daemon import runtime
from vfd.daemon.identity import get_caller
from vfd.daemon.runtime import Pool
from vfd.daemon.services.context import Caller, Daemon
from vfd.errors import ErrorCode, VfdError

P = ParamSpec("P")
T = TypeVar("T")


ActAsHeader = Annotated[
    str | None,
    Header(alias="X-Vfd-Act-As", description="an administrator acts as the user of this email"),
]
AuthorizationHeader = Annotated[
    str | None, Header(alias="Authorization", description="Bearer <token> (TCP only)")
]


def get_daemon(
    request: Request, act_as: ActAsHeader = None, authorization: AuthorizationHeader = None
) -> Daemon:
    """The daemon serving ``request``, once the request's path and query parameters are known
    to hold no NUL (every route depends on this; see :func:`refuse_nul`).

    ``act_as`` and ``authorization`` are read by :func:`vfd.daemon.identity.get_caller`; they
    are declared here, where every route gets them, so that the OpenAPI schema shows them."""
    refuse_nul(request)
    daemon: Daemon = request.app.state.daemon
    return daemon


def refuse_nul(request: Request) -> None:
    """``400 invalid_argument`` for a path or query parameter holding NUL (``%00``): no name,
    email or path can hold one, and PostgreSQL refuses it in text (a lookup would fail)."""
    params = [("path", k, v) for k, v in request.path_params.items()]
    params += [("query", k, v) for k, v in request.query_params.multi_items()]
    for location, key, value in params:
        if isinstance(value, str) and "\x00" in value:
            raise VfdError(
                ErrorCode.INVALID_ARGUMENT,
                f"{key} must not contain NUL",
                field=key,
                location=location,
            )


DaemonDep = Annotated[Daemon, Depends(get_daemon)]
CallerDep = Annotated[Caller, Depends(get_caller)]


class Body(BaseModel):
    """A request body: unknown fields and wrong types are refused (400 invalid_argument).

    Strict: ``"12"`` is no integer and ``1`` no boolean. Enum fields are declared with
    :data:`Choice`, which accepts the enum's string values. No string may hold NUL or a lone
    surrogate (``400``, with the code ``text_codes`` gives the field).
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    text_codes: ClassVar[Mapping[str, ErrorCode]] = {}
    """The code that refuses a field's text (default ``invalid_argument``)."""

    @field_validator("*", mode="before")
    @classmethod
    def _plain_text(cls, value: Any, info: ValidationInfo) -> Any:
        """Refuse a string holding NUL or a lone surrogate (JSON ``"\\ud800"`` parses to one,
        which is no Unicode text and could be neither stored nor answered; PostgreSQL refuses
        NUL in text). A file name whose bytes are not UTF-8 travels in the field's ``_b64``
        twin (:mod:`vfd.wirenames`)."""
        field = info.field_name or "body"
        code = cls.text_codes.get(field, ErrorCode.INVALID_ARGUMENT)
        for text in _strings(value):
            if "\x00" in text:
                raise VfdError(code, f"{field} must not contain NUL", field=field)
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise VfdError(
                    code,
                    f"{field} is not valid Unicode text (it holds a lone surrogate)",
                    field=field,
                ) from None
        return value


def _strings(value: Any) -> Iterator[str]:
    """Every string in a JSON value (keys included)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(k)
            yield from _strings(v)


INT64_MAX = 2**63 - 1
"""The largest integer the store holds (``BIGINT``) and the largest file offset or size."""
INT32_MAX = 2**31 - 1
"""The largest integer of a plain ``INTEGER`` column (PostgreSQL's ``int4``)."""

Int64 = Annotated[int, Field(ge=0, le=INT64_MAX)]
"""A count of bytes or files, or seconds: 0 to 2^63-1; larger answers 400 invalid_argument."""
Int32 = Annotated[int, Field(ge=0, le=INT32_MAX)]
"""A count kept in an ``INTEGER`` column: 0 to 2^31-1."""


async def run(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Call a blocking service function that works on the store, in a store worker thread."""
    return await runtime.current().run(Pool.STORE, fn, *args, **kwargs)


async def run_files(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Call a blocking function that touches files through the views (it may block on the
    mount), in a file worker thread; ``503 mountd_unavailable`` after ``[workers]
    mountd_wait`` seconds (the call goes on: see :meth:`Runtime.run_until`)."""
    live = runtime.current()
    return await live.run_until(Pool.FILES, live.limits.mountd_wait, fn, *args, **kwargs)


async def run_mountd(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Call a blocking function that waits on mountd's control socket, in a mountd worker
    thread; ``503 mountd_unavailable`` after ``[workers] mountd_wait`` seconds."""
    live = runtime.current()
    return await live.run_until(Pool.MOUNTD, live.limits.mountd_wait, fn, *args, **kwargs)


JSON = dict[str, Any]

E = TypeVar("E")
Choice = Annotated[E, Field(strict=False)]
"""An enum-valued body field, given by its string value."""
