"""What ``vfd vfolder upload`` and ``vfd vfolder download`` do, without typer: the one
implementation that both the typer commands (:mod:`vfd.cli.files`) and the console script's
fast path (:mod:`vfd.cli.quickcmds`) run, so that the two print the same. The transfers
themselves are :mod:`vfd.cli.transfer`'s."""

from __future__ import annotations

import contextlib
import errno
from pathlib import Path

from vfd import wirenames
from vfd.cli.output import print_warning
from vfd.cli.sizes import format_size
from vfd.cli.state import CliState
from vfd.errors import ErrorCode, VfdError


def upload(cli: CliState, name: str, sources: list[Path], dest: str, overwrite: bool) -> None:
    """``vfd vfolder upload NAME SOURCE... [--dest DIR] [--overwrite]``."""
    from vfd.cli import transfer  # tarfile, hashlib: only for transfers

    done = transfer.upload(cli.client(), cli.console, name, sources, dest, overwrite=overwrite)
    cli.emit(
        done.result,
        lambda: f"Uploaded {done.files} file(s), {format_size(done.bytes)}, to {name}",
    )


def download(cli: CliState, name: str, paths: list[str], dest: Path) -> None:
    """``vfd vfolder download NAME PATH... [--dest DIR]``."""
    made = make_local_dir(dest)
    try:
        from vfd.cli import transfer

        result = transfer.download(cli.client(), cli.console, name, paths, dest)
    except BaseException:
        if made is not None:  # nothing came: leave no empty directories behind
            for directory in made:
                with contextlib.suppress(OSError):
                    directory.rmdir()
        raise

    def human() -> str:
        for item in result["downloaded"]:
            for skip in item.get("skipped", ()):
                print_warning(f"skipped {wirenames.escaped(skip['path'])}: {skip['reason']}")
        return f"Downloaded {len(result['downloaded'])} item(s) to {dest}"

    cli.emit(result, human)


def make_local_dir(dest: Path) -> list[Path] | None:
    """Make the download directory ``dest`` (and missing parents) unless it exists; the
    directories made, innermost first, or None when there were none to make."""
    if dest.is_dir():
        return None
    if dest.exists() or dest.is_symlink():
        raise VfdError(ErrorCode.NOT_A_DIRECTORY, f"{dest} is not a directory", path=str(dest))
    missing = [dest, *(p for p in dest.absolute().parents if not p.exists())]
    try:
        dest.mkdir(parents=True)
    except OSError as exc:
        code = (
            ErrorCode.PERMISSION_DENIED
            if exc.errno in (errno.EACCES, errno.EPERM)
            else (ErrorCode.INVALID_PATH)
        )
        raise VfdError(code, f"cannot make {dest}: {exc.strerror}", path=str(dest)) from None
    return missing
