"""vfd: virtual folders for compute clusters."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("vfd")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"
