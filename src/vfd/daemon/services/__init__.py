"""Domain operations of the control plane, one module per concept.

Every function here blocks (SQL, filesystem, mountd) and is called from the API through
``asyncio.to_thread``. They take the daemon's :class:`~vfd.daemon.services.context.Daemon` and
the :class:`~vfd.daemon.services.context.Caller`, raise ``VfdError`` for every refusal, and
return JSON-ready dictionaries (see ``render``).
"""
