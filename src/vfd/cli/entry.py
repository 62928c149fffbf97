"""The ``vfd`` program (the console script): :func:`vfd.cli.main.main`, then a quick exit.

A command line that one of the fast paths of :mod:`vfd.cli.quick` reads (``vfd --help``,
``vfd run``, ``vfd vfolder list``...) is run by it without typer (starting typer is most of
the time of such a command); typer reads every other one.

When the command is done, Python first joins the threads left, then runs the exit handlers
(``atexit``: logging's flush, ``weakref.finalize`` hooks such as temporary directories'
removal), and then tears down every module and object it imported one by one — for the few
hundred modules a ``vfd`` command imports, a noticeable part of a short command's run. Here
the process ends with ``os._exit`` right after the other exit handlers, its output flushed:
nothing that Python would have done for vfd is skipped but the teardown of memory that the
kernel frees anyway. :func:`main` called in-process (tests, ``python -c``) exits normally.
"""

from __future__ import annotations

import atexit
import os
import sys

_status = 1
"""The exit status to end with (set when the command returns or exits)."""


def _leave() -> None:
    for stream in (sys.stdout, sys.stderr):
        if stream is None:  # started with that descriptor closed (`vfd ... >&-`)
            continue
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe, a closed stream: nothing more to say
            pass
    os._exit(_status)


def run() -> None:
    """Run the ``vfd`` command line and end the process with its exit status."""
    global _status
    # registered first, so it runs last of the exit handlers (they run last-in, first-out)
    atexit.register(_leave)
    try:
        from vfd.cli import quick

        status = quick.run(sys.argv[1:])
        if status is not None:
            raise SystemExit(status)
        from vfd.cli.main import main

        main()
    except SystemExit as exc:
        code = exc.code
        _status = code if isinstance(code, int) else (0 if code is None else 1)
        raise
    except KeyboardInterrupt:
        _status = 130  # 128 + SIGINT, as a shell reports it
        raise
    except BaseException:
        _status = 1
        raise
    _status = 0
