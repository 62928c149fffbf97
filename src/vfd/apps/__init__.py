"""Apps of sessions: servers the daemon runs over a session's folders, as its user.

:mod:`vfd.apps.confine` confines a server process to the folder views (a private tmpfs root,
one bind per folder, chroot, the user's ids); :mod:`vfd.apps.process` starts, follows and
stops those processes and picks their ports; the servers themselves are modules run as
``python -m vfd.apps.<server>`` (:mod:`vfd.apps.sftpd`). What the daemon records of them and
which hooks it calls is in ``vfd.daemon.services.session_apps`` (docs/apps.md).
"""
