"""vfd's web file manager: a small HTTP server over a session's folder views.

One process per session, with the user's uid, confined to the session's folders (each a
directory at its root); reachable only with a random token. ``server`` holds the HTTP side,
``tree`` the file operations, ``uploads`` the all-or-nothing uploads, ``static/`` the page
(plain HTML, CSS and JavaScript: nothing to build). ``python -m vfd.apps.filebrowser`` runs
it standalone on a plain directory (docs/apps.md "Web file manager").
"""
