"""The web console: served by the daemon at ``/console/`` (docs/console.md).

Server side: the sign-in records (:mod:`vfd.console.auth`: one-time links, cookie sessions,
their CSRF tokens) and the routes (:mod:`vfd.console.routes`: the static assets, sign-in,
sign-out, who is signed in). The pages themselves are static files under ``static/``,
shipped inside the package; they call the same API as the CLI.
"""
