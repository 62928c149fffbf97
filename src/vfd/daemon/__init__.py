"""The control plane: REST API over a unix socket (and optional TCP), store, mountd glue.

``vfd.daemon.server.serve(config)`` is the entry point (``vfd daemon``, ``python -m vfd.daemon``).
"""
