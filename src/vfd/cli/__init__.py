"""The ``vfd`` command line: a typer app talking JSON over HTTP to the daemon's unix socket.

main.py      root command, global options, the one place errors become exit codes
commands.py  the root's sub-commands and their one-line help (imported when they run)
coercion.py  plain option values without typer's Pydantic coercion
context.py   per-invocation state (config, client, --json; state.py), shared by every command
quickrun.py  ``vfd run`` read without typer when it is sure how;  runflow.py  what run does
client.py    HTTP over the unix socket; the one place wire errors become VfdError
output.py    tables, JSON output and messages
sizes.py     the size parser (10G, 512M, 1.5T) and human sizes
vfolder.py   ``vfd vfolder`` folder commands;  sharing.py  invitations and members
admin.py     ``vfd admin`` users, projects, policies, hosts, tokens
system.py    ``vfd status``, ``vfd daemon``, ``vfd mountd``;  up.py  ``vfd up``
"""
