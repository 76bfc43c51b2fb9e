"""The audit log of administrative actions: jobs queued, cancelled or retried; studies created,
opened or closed; users created, changed or given other roles; cohorts imported.

Services call :func:`audit_record` inside the same ``transaction.atomic()`` block as the action,
so the entry exists exactly when the action committed. Entries are append-only
(:class:`healthagent.models.AuditEntry` refuses updates and deletes; the Django admin shows them
read-only).
"""

from django.db import models, transaction

from healthagent.models import AuditEntry

Action = AuditEntry.Action


def audit_record(
    *, actor, action: Action, target: models.Model | None = None, details: dict | None = None, via: str = ""
) -> AuditEntry:
    """Append one entry. ``actor`` is the user who acted (None for a command or the system, named by ``via``)."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("audit_record must run inside the transaction of the action it records")
    authenticated = actor is not None and getattr(actor, "is_authenticated", False)
    return AuditEntry.objects.create(
        actor=actor if authenticated else None,
        actor_name=actor.get_username() if authenticated else (via or "system"),
        action=action,
        object_type=target._meta.label_lower if target is not None else "",
        object_id=str(target.pk) if target is not None else "",
        object_repr=str(target)[:200] if target is not None else "",
        details=details or {},
    )


def audit_entries(*, action: str = ""):
    """Entries newest first, optionally of one action."""
    entries = AuditEntry.objects.select_related("actor")
    return entries.filter(action=action) if action else entries
