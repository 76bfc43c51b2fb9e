"""Invitations in bulk: a researcher or admin pastes or uploads a list (email, role, optional display name and study);
each person gets a one-time link by email that expires (``INVITATION_DAYS``); opening it, they choose a user name and
a password and hold the role, enrolled in the study if one was named.

All or nothing: every row is checked first, and one bad row (named by its number) creates no invitation and sends
no email. The link's token is stored only as a SHA-256 hash. Enrolment in a study belongs to the evaluation layer,
which registers it (:func:`acceptance_hook_register`); this module only knows the study's id.
"""

import csv
import hashlib
import io
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from healthagent.accounts import AccountError, user_create_with_role
from healthagent.audit import Action, audit_record
from healthagent.models import Invitation
from healthagent.roles import Role, user_has_role

logger = logging.getLogger(__name__)
MAX_ROWS = 5000
COLUMNS = ("email", "role", "display_name", "study")


class InvitationError(Exception):
    """Invitations refused, or a link that does not work; the message says why."""


@dataclass(frozen=True)
class InvitationRow:
    email: str
    role: Role
    display_name: str
    study_id: int | None


# Called inside the acceptance's transaction with (invitation, user); returns a sentence for the person, e.g. the
# study they were enrolled in. Registered by the layers above (evaluation enrols in the study).
AcceptanceHook = Callable[[Invitation, User], str]
_acceptance_hooks: list[AcceptanceHook] = []


def acceptance_hook_register(hook: AcceptanceHook) -> None:
    if hook not in _acceptance_hooks:
        _acceptance_hooks.append(hook)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def invitation_rows_parse(
    *,
    text: str,
    default_role: str,
    default_study: str,
    invited_by: User,
    resolve_study: Callable[[str], int],
) -> list[InvitationRow]:
    """Read the list: CSV with a header naming ``email`` (and ``role``, ``display_name``, ``study``), or one person a
    line as ``email[,role[,display name[,study]]]``. Missing role and study take the defaults. ``resolve_study``
    turns a study's id or name into its id, raising InvitationError when the inviter may not enrol people in it.
    Raises InvitationError naming every bad row (at most 20)."""
    lines = [line for line in (text or "").splitlines() if line.strip()]
    if not lines:
        raise InvitationError("the list is empty: one email address a line, or a CSV file with an email column")
    has_header = "email" in [cell.strip().lower() for cell in next(csv.reader([lines[0]]))]
    if has_header:
        reader = csv.DictReader(io.StringIO("\n".join(lines)))
        fields = [name.strip().lower() for name in reader.fieldnames or []]
        if unknown := sorted(set(fields) - set(COLUMNS)):
            raise InvitationError(f"unknown columns: {', '.join(unknown)} (expected {', '.join(COLUMNS)})")
        records = [{key.strip().lower(): (value or "") for key, value in row.items() if key} for row in reader]
        first_line = 2
    else:
        records = [dict(zip(COLUMNS, row, strict=False)) for row in csv.reader(lines)]
        first_line = 1
    if len(records) > MAX_ROWS:
        raise InvitationError(f"{len(records)} people: at most {MAX_ROWS} in one list")
    rows, errors, seen = [], [], set()
    may_invite = set(Role) if user_has_role(invited_by, Role.ADMIN) else {Role.CLINICIAN}
    for number, record in enumerate(records, start=first_line):
        email = record.get("email", "").strip().lower()
        role = (record.get("role") or "").strip().lower() or default_role
        study = (record.get("study") or "").strip() or default_study
        try:
            validate_email(email)
        except ValidationError:
            errors.append(f"row {number}: {email or 'no email'} is not an email address")
            continue
        if email in seen:
            errors.append(f"row {number}: {email} is on the list twice")
            continue
        seen.add(email)
        if role not in {str(choice) for choice in Role}:
            errors.append(f"row {number}: {role!r} is not a role (clinician, researcher or admin)")
            continue
        if Role(role) not in may_invite:
            errors.append(f"row {number}: only admins may invite a {role}")
            continue
        try:
            study_id = resolve_study(study) if study else None
        except InvitationError as error:
            errors.append(f"row {number}: {error}")
            continue
        if study_id is not None and role != Role.CLINICIAN:
            errors.append(f"row {number}: only clinicians are enrolled in a study (a {role} would see its results)")
            continue
        display_name = (record.get("display_name") or "").strip()
        if len(display_name) > 150:
            errors.append(f"row {number}: the display name is longer than 150 characters")
            continue
        rows.append(InvitationRow(email=email, role=Role(role), display_name=display_name, study_id=study_id))
    if errors:
        more = f" (and {len(errors) - 20} more)" if len(errors) > 20 else ""
        raise InvitationError("nobody was invited: " + "; ".join(errors[:20]) + more)
    return rows


def invitations_send(*, rows: list[InvitationRow], invited_by: User, base_url: str) -> list[Invitation]:
    """Make one invitation per row and email each its link once the transaction commits (``base_url`` is the site's
    address, e.g. https://eval.hospital.org). All or none."""
    expires = timezone.now() + timedelta(days=settings.INVITATION_DAYS)
    tokens = [secrets.token_urlsafe(32) for _ in rows]
    with transaction.atomic():
        invitations = Invitation.objects.bulk_create(
            [
                Invitation(
                    email=row.email,
                    role=row.role,
                    display_name=row.display_name,
                    study_id=row.study_id,
                    token_hash=_token_hash(token),
                    invited_by=invited_by,
                    expires_at=expires,
                )
                for row, token in zip(rows, tokens, strict=True)
            ]
        )
        audit_record(
            actor=invited_by,
            action=Action.INVITATIONS_SENT,
            target=None,
            details={"count": len(rows), "roles": sorted({str(row.role) for row in rows})},
        )
        for invitation, token in zip(invitations, tokens, strict=True):
            transaction.on_commit(
                partial(_email, invitation=invitation, link=f"{base_url.rstrip('/')}/invitations/{token}/"),
                robust=True,
            )
    return invitations


def _email(*, invitation: Invitation, link: str) -> None:
    from healthagent.tasks import send_email

    days = settings.INVITATION_DAYS
    body = (
        f"You are invited to the health agent evaluation site as a {invitation.get_role_display().lower()}.\n\n"
        f"Open this link within {days} days to choose your user name and password (it works once):\n{link}\n"
    )
    try:
        send_email.apply_async(
            kwargs={"subject": "Your invitation", "body": body, "recipients": [invitation.email]}, queue="quick"
        )
    except Exception:  # the broker is down: the invitation stands; "send again" on the page makes a new link
        logger.exception("the email of invitation #%s was not queued", invitation.pk)


def access_invitation(*, token: str, for_update: bool = False) -> Invitation:
    """The invitation of a link, if it still works; InvitationError saying why not."""
    invitations = Invitation.objects.select_for_update() if for_update else Invitation.objects.all()
    invitation = invitations.filter(token_hash=_token_hash(token or "")).first()
    if invitation is None:
        raise InvitationError("this invitation link is not valid: check that it was copied whole")
    if invitation.accepted_at is not None:
        raise InvitationError("this invitation was used already: sign in with the account it made")
    if invitation.expires_at <= timezone.now():
        raise InvitationError("this invitation has expired: ask whoever invited you for a new one")
    return invitation


def invitation_accept(*, token: str, username: str, password: str) -> tuple[User, list[str]]:
    """Make the invited account (exactly the invitation's role), mark the link used and run the acceptance hooks
    (enrolment), all in one transaction that locks the invitation: a link works once even when opened twice at the
    same moment. Returns the user and what the hooks said."""
    with transaction.atomic():
        invitation = access_invitation(token=token, for_update=True)
        if User.objects.filter(email__iexact=invitation.email).exists():
            raise InvitationError("an account with this email address exists already: sign in with it")
        try:
            user = user_create_with_role(
                username=(username or "").strip(),
                role=Role(invitation.role),
                password=password,
                email=invitation.email,
                via=f"invitation #{invitation.pk}",
            )
        except AccountError as error:
            raise InvitationError(str(error).rstrip(".")) from error
        if invitation.display_name:
            user.first_name = invitation.display_name[:150]
            user.save(update_fields=["first_name"])
        invitation.accepted_at, invitation.user = timezone.now(), user
        invitation.save(update_fields=["accepted_at", "user"])
        audit_record(
            actor=user, action=Action.INVITATION_ACCEPTED, target=invitation, details={"role": invitation.role}
        )
        said = [sentence for hook in _acceptance_hooks if (sentence := hook(invitation, user))]
    return user, said


def invitations_made_by(*, user: User) -> QuerySet[Invitation]:
    """The invitations ``user`` may follow: every one for admins, their own for researchers."""
    if user_has_role(user, Role.ADMIN):
        return Invitation.objects.select_related("invited_by", "user")
    return Invitation.objects.select_related("invited_by", "user").filter(invited_by=user)
