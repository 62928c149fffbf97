"""The plugin tests use vfd's own fixture module for plugin authors (``vfd.plugins.testing``),
imported here as a plugin's ``conftest.py`` would enable it with ``pytest_plugins``."""

from __future__ import annotations

import sys
from pathlib import Path

from vfd.plugins.testing import vfd_plugins, vfd_register_plugin, vfd_test_daemon

sys.path.insert(0, str(Path(__file__).parent))

__all__ = ["vfd_plugins", "vfd_register_plugin", "vfd_test_daemon"]
