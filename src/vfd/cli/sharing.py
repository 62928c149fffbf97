"""Sharing commands of ``vfd vfolder``: invitations, leaving, per-member permissions.

A user folder is shared by invitation (the invitee accepts or rejects it); a project folder is
shared with the project's members, whose permission an admin may override one by one.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from vfd.cli.client import folder_path, segment
from vfd.cli.context import JsonOption, PermissionArg, use
from vfd.cli.output import short_id, table
from vfd.enums import Permission

NameArg = Annotated[str, typer.Argument(help="The folder's name.", show_default=False)]
EmailArg = Annotated[str, typer.Argument(help="The member's email.", show_default=False)]
InvitationArg = Annotated[
    str,
    typer.Argument(
        metavar="ID",
        help="The invitation: its id as `vfd vfolder invitations` shows it (the first "
        "characters are enough), or the name of the folder it invites you to.",
        show_default=False,
    ),
]
INVITATION_COLUMNS = ("id", "folder", "from", "to", "permission", "state", "created")


def invitation_rows(invitations: list[dict[str, Any]]) -> list[list[object]]:
    return [
        [
            short_id(i.get("id")),
            i.get("vfolder"),
            i.get("inviter"),
            i.get("invitee"),
            i.get("permission"),
            i.get("state"),
            i.get("created_at"),
        ]
        for i in invitations
    ]


def invite(
    ctx: typer.Context,
    name: NameArg,
    emails: Annotated[
        list[str], typer.Argument(help="Emails of the users to invite.", show_default=False)
    ],
    permission: Annotated[
        Permission,
        typer.Option(
            "--permission", help="What the invitees may do: ro, rw or wd.", show_default=False
        ),
    ],
    json_output: JsonOption = False,
) -> None:
    """Invite users to one of your folders; each one accepts or rejects the invitation."""
    cli = use(ctx, json_output)
    body = {"emails": emails, "permission": permission.value}
    result = cli.client().post(f"{folder_path(name)}/invite", body)
    sent = result.get("invitations", [])

    cli.emit(
        result,
        lambda: "\n".join(
            f"Invited {i.get('invitee')} to {name} with {i.get('permission')} (invitation "
            f"{short_id(i.get('id'))})"
            for i in sent
        ),
    )


def invitations(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """List pending invitations you received and sent."""
    cli = use(ctx, json_output)
    result = cli.client().get("/v1/invitations")

    def render() -> None:
        table(
            cli.console,
            INVITATION_COLUMNS,
            invitation_rows(result.get("received", [])),
            title="received",
            empty="no invitations received",
        )
        table(
            cli.console,
            INVITATION_COLUMNS,
            invitation_rows(result.get("sent", [])),
            title="sent",
            empty="no invitations sent",
        )

    cli.emit(result, render)


def accept(ctx: typer.Context, invitation: InvitationArg, json_output: JsonOption = False) -> None:
    """Accept an invitation: the folder appears in your list."""
    cli = use(ctx, json_output)
    result = cli.client().post(f"/v1/invitations/{segment(invitation)}/accept")
    cli.emit(
        result,
        lambda: (
            f"Accepted the invitation to {result.get('vfolder')} from {result.get('inviter')} "
            f"({result.get('permission')})"
        ),
    )


def reject(ctx: typer.Context, invitation: InvitationArg, json_output: JsonOption = False) -> None:
    """Reject an invitation."""
    cli = use(ctx, json_output)
    result = cli.client().post(f"/v1/invitations/{segment(invitation)}/reject")
    cli.emit(
        result,
        lambda: f"Rejected the invitation to {result.get('vfolder')} from {result.get('inviter')}",
    )


def leave(ctx: typer.Context, name: NameArg, json_output: JsonOption = False) -> None:
    """Stop having access to a folder that was shared with you."""
    cli = use(ctx, json_output)
    result = cli.client().post(f"{folder_path(name)}/leave")
    cli.emit(result, lambda: f"Left folder {result.get('left', name)}")


def members(ctx: typer.Context, name: NameArg, json_output: JsonOption = False) -> None:
    """List who a folder is shared with: its members and the pending invitations to it.

    For your own folder: the users who accepted an invitation, and those who have not answered
    yet. For a project folder (admins): the members with a permission of their own."""
    cli = use(ctx, json_output)
    result = cli.client().get(f"{folder_path(name)}/members")

    def render() -> None:
        default = result.get("default_permission")
        table(
            cli.console,
            ("email", "permission", "since"),
            [[m.get("email"), m.get("permission"), m.get("since")] for m in result["members"]],
            title="members",
            empty=(
                f"no member has a permission of their own (the default is {default})"
                if default
                else "shared with no one"
            ),
        )
        if result.get("ownership") == "project":
            return
        table(
            cli.console,
            ("id", "email", "permission", "created"),
            [
                [short_id(i.get("id")), i.get("email"), i.get("permission"), i.get("created_at")]
                for i in result.get("invitations", [])
            ],
            title="pending invitations",
            empty="no pending invitations",
        )

    cli.emit(result, render)


def set_member_permission(
    ctx: typer.Context,
    name: NameArg,
    email: EmailArg,
    permission: PermissionArg,
    json_output: JsonOption = False,
) -> None:
    """Give one project member a permission other than the folder's default (admins)."""
    cli = use(ctx, json_output)
    path = f"{folder_path(name)}/members/{segment(email)}"
    result = cli.client().put(path, {"permission": permission.value})
    cli.emit(
        result,
        lambda: (
            f"{result.get('email', email)} now has {result.get('permission')} on "
            f"{result.get('vfolder', name)}"
        ),
    )


def unset_member_permission(
    ctx: typer.Context, name: NameArg, email: EmailArg, json_output: JsonOption = False
) -> None:
    """Drop a project member's own permission; the folder's default applies again.

    On your own folder: stop sharing it with that user (`vfd vfolder members` lists them)."""
    cli = use(ctx, json_output)
    result = cli.client().delete(f"{folder_path(name)}/members/{segment(email)}")
    cli.emit(
        result,
        lambda: (
            f"{name} is no longer shared with {email}"
            if result.get("permission") is None
            else f"{email} has the default permission on {name} again"
        ),
    )


def register(app: typer.Typer) -> None:
    """Add the sharing commands to the ``vfd vfolder`` group."""
    app.command("invite")(invite)
    app.command("invitations")(invitations)
    app.command("accept")(accept)
    app.command("reject")(reject)
    app.command("leave")(leave)
    app.command("members")(members)
    app.command("set-member-permission")(set_member_permission)
    app.command("unset-member-permission")(unset_member_permission)
