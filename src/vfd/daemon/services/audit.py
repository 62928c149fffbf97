"""Audit events: one row per mutation, written in the mutation's own transaction."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from vfd.daemon.services.context import Caller
from vfd.store.models import AuditEvent


def record(session: Session, caller: Caller, action: str, target: str, **detail: Any) -> None:
    """Add an audit event (``action`` like ``vfolder.create``, ``target`` a name or email)."""
    if caller.user.id != caller.actor.id:
        detail = {**detail, "as": caller.user.email}
    session.add(
        AuditEvent(actor_id=caller.actor.id, action=action, target=target[:256], detail=detail)
    )
