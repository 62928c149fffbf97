"""Plain option values without Pydantic: the CLI's start-up does not pay for a validator.

typer (0.2x) converts every parameter value through a Pydantic ``TypeAdapter`` built on first
use, even ``--state-dir`` left unset: importing Pydantic and building the adapters costs most
of a command's start. A value that needs no conversion is taken as it is here: a ``str`` for a
``str`` parameter, a ``bool`` for a flag, a ``str`` or ``Path`` for a plain ``Path`` option,
``None`` for an optional one, a list or tuple of ``str`` for a ``list[str]`` parameter (``-m A
-m B``, a command's arguments); and a single value of a parameter with a ``parser=`` is
handed to that parser, as typer's coercion does (``--cpu 0.5``, ``--mem 1g``, a session ID,
whose parser may refuse it with a usage error). Anything else (enums,
numbers typed on the command line without a parser, constrained paths, a flag's value from the
environment) still goes through typer's own coercion, so its checks and messages are
unchanged.

:func:`install` wraps ``typer.core.build_runtime_param``; with a typer that has no such hook
(older releases convert with click's types, which are cheap) it does nothing.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import typer.core

_PLAIN = (str, bool, Path)


def _optional_of(annotation: Any) -> Any:
    """``X`` for ``X | None`` (``annotation`` itself otherwise)."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _plain_type(annotation: Any) -> type | None:
    """``str``, ``bool`` or ``Path`` when ``annotation`` is one of them (or it ``| None``)."""
    annotation = _optional_of(annotation)
    return annotation if annotation in _PLAIN else None


def _one_value(annotation: Any) -> bool:
    """Not a list or tuple (or it ``| None``): one value, which a ``parser=`` takes whole."""
    return get_origin(_optional_of(annotation)) not in (list, tuple)


def _str_list(annotation: Any) -> bool:
    """``list[str]`` (or it ``| None``)."""
    annotation = _optional_of(annotation)
    return get_origin(annotation) is list and get_args(annotation) == (str,)


def _unconstrained(info: Any) -> bool:
    """No click type or path check asked of the parameter (a ``parser=`` is judged apart)."""
    return not (
        getattr(info, "click_type", None) is not None
        or getattr(info, "exists", False)
        or getattr(info, "writable", False)
        or getattr(info, "resolve_path", False)
        or getattr(info, "allow_dash", False)
        or getattr(info, "path_type", None) is not None
        or not getattr(info, "file_okay", True)
        or not getattr(info, "dir_okay", True)
    )


def install() -> None:
    """Make typer take plain values as they are (idempotent)."""
    found = getattr(typer.core, "build_runtime_param", None)
    if found is None or getattr(found, "vfd_plain", False):
        return
    build: Callable[[Any], Any] = found

    class PlainFirst:
        """The runtime parameter typer asked for, built only when a value needs it."""

        def __init__(
            self, descriptor: Any, plain: type | None, parser: Callable[[Any], Any] | None
        ) -> None:
            self._descriptor = descriptor
            self._plain = plain
            self._parser = parser
            self._full: Any = None

        def coerce(self, value: Any, param: Any, ctx: Any) -> Any:
            if value is None:  # as typer's own coercion answers a value not given
                return () if param.multiple or param.nargs == -1 else None
            if self._parser is not None:  # what typer's coercion does with a parser=
                if not (param.multiple or param.nargs != 1):
                    return self._parser(value)
            elif self._plain is list:
                if isinstance(value, list | tuple) and all(type(v) is str for v in value):
                    return list(value)
            elif self._plain is Path and isinstance(value, str | Path):
                return Path(value)
            elif self._plain is not Path and type(value) is self._plain:
                return value
            if self._full is None:
                self._full = build(self._descriptor)
            return self._full.coerce(value, param=param, ctx=ctx)

    def build_runtime_param(descriptor: Any) -> Any:
        info = descriptor.parameter_info
        parser = getattr(info, "parser", None)
        if parser is not None and not _one_value(descriptor.annotation):
            parser = None  # a parser of each of several values: typer's own coercion
            plain: type | None = None
        elif parser is not None:
            plain = None
        elif _str_list(descriptor.annotation):
            plain = list
        else:
            plain = _plain_type(descriptor.annotation)
        wanted = plain is not None or parser is not None
        if not wanted or descriptor.file_annotation is not None or not _unconstrained(info):
            return build(descriptor)
        return PlainFirst(descriptor, plain, parser)

    build_runtime_param.vfd_plain = True  # type: ignore[attr-defined]
    setattr(typer.core, "build_runtime_param", build_runtime_param)  # noqa: B010
