"""vfd's fixtures for plugin tests: ``vfd_plugins`` (a hermetic manager), ``vfd_test_daemon``
and ``vfd_register_plugin`` (a running daemon, a plugin registered for one test)."""

pytest_plugins = ["vfd.plugins.testing"]
