"""The console script's fast paths, tried before typer (:mod:`vfd.cli.entry`).

Each reads only the command lines it is sure about and returns None for every other, which
typer then reads: ``vfd --help`` (:mod:`vfd.cli.roothelp`), ``vfd --version``, ``vfd run``
(:mod:`vfd.cli.quickrun`) and the read-only commands of :mod:`vfd.cli.quickcmds`. The words
are looked at first, so a command line for typer imports nothing more here.

``VFD_QUICK=off`` turns the fast paths off: every command line is typer's (tests compare
the two ways with it).
"""

from __future__ import annotations

import os
import sys


def run(argv: list[str]) -> int | None:
    """Run ``vfd ARGV`` on a fast path; its exit status, or None for typer to run it."""
    if os.environ.get("VFD_QUICK") == "off" or sys.stdout is None or sys.stderr is None:
        return None  # (a closed stdout or stderr: what click makes of it is click's business)
    if argv in (["--help"], ["-h"]):
        from vfd.cli import roothelp

        return roothelp.show()
    if argv == ["--version"]:
        import vfd

        sys.stdout.write(f"vfd {vfd.__version__}\n")
        sys.stdout.flush()
        return 0
    if "run" in argv:
        from vfd.cli import quickrun

        status = quickrun.run(argv)
        if status is not None:
            return status
    if "vfolder" in argv:
        from vfd.cli import quickcmds

        return quickcmds.run(argv)
    return None
