"""``vfd image list``: the images of this node's docker engine that sessions may run.

vfd never pulls: a session runs an image already present on its node (``docker load``,
``docker build`` or ``docker import`` put them there), so this list is what ``vfd run``
accepts.
"""

from __future__ import annotations

from typing import Any

import typer

from vfd.cli.context import JsonOption, use
from vfd.cli.output import table
from vfd.cli.session import ago
from vfd.cli.sizes import format_size

app = typer.Typer(help="Images sessions may run: those on this node.", no_args_is_help=True)

IMAGE_COLUMNS = ("REPOSITORY:TAG", "ID", "SIZE", "CREATED")


def short_image_id(value: object) -> str:
    """An image id as ``docker images`` shows it: 12 hex digits, without ``sha256:``."""
    text = str(value or "")
    return text.split(":", 1)[-1][:12]


def image_rows(images: list[dict[str, Any]]) -> list[list[object]]:
    """One row per tag (``<none>`` for an untagged image)."""
    rows: list[list[object]] = []
    for image in images:
        size = image.get("size")
        for tag in image.get("tags") or ["<none>"]:
            rows.append(
                [
                    tag,
                    short_image_id(image.get("id")),
                    format_size(size) if isinstance(size, int) else size,
                    ago(image.get("created")),
                ]
            )
    return rows


@app.command("list")
def list_(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """List the images on this node that sessions may run."""
    cli = use(ctx, json_output)
    result = cli.client().get("/v1/images")
    cli.emit(
        result,
        lambda: table(
            cli.console, IMAGE_COLUMNS, image_rows(result.get("images", [])), empty="no images"
        ),
    )
