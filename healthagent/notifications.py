"""Messages to users: shown in the site (the count beside the user's name, the notifications page) and emailed
when email is configured (``settings.EMAIL_HOST``).

An email is queued after the transaction that made the notification commits and sent by a worker of the "quick" job
queue (healthagent.tasks.send_email), so the request that caused it never waits for the mail server; a server that
fails or is slow (``EMAIL_TIMEOUT``) loses only the email: the notification in the site is kept, the failure logged.
"""

import logging
import smtplib
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, cast

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.core.mail import EmailMessage, get_connection
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from healthagent.models import Notification

logger = logging.getLogger(__name__)


def notify(*, users: Iterable[User], text: str, url: str = "", subject: str = "", body: str = "") -> list[Notification]:
    """One notification per user (each user once); an email to those with an address when email is configured.
    ``subject`` and ``body`` are the email's (default: ``text``); the email ends with the link (absolute with
    ``SITE_URL``)."""
    unique = list({user.pk: user for user in users}.values())
    made = Notification.objects.bulk_create(
        [Notification(user=user, text=text[:300], url=url[:300]) for user in unique]
    )
    recipients = [user.email for user in unique if user.email]
    if settings.EMAIL_HOST and recipients:
        link = f"{settings.SITE_URL}{url}" if url else ""
        message = (body or f"{text}\n") + (f"\n{link}\n" if link else "")
        transaction.on_commit(partial(_queue, subject=subject or text[:120], body=message, recipients=recipients))
    return made


def _queue(*, subject: str, body: str, recipients: list[str]) -> None:
    """Hand the email to a worker of the "quick" queue: a slow or absent mail server never holds up the request."""
    from healthagent.tasks import send_email

    try:
        send_email.apply_async(kwargs={"subject": subject, "body": body, "recipients": recipients}, queue="quick")
    except Exception:  # the broker is down: the notification in the site is kept all the same
        logger.exception("the notification email to %d recipients was not queued", len(recipients))


def email_send(*, subject: str, body: str, recipients: list[str]) -> bool:
    """One email per recipient (no one sees another's address), over one connection; False (logged) when the mail
    server refuses, fails or is not there."""
    try:
        with get_connection(fail_silently=False) as connection:
            connection.send_messages(
                [EmailMessage(subject.replace("\n", " ").replace("\r", " "), body, to=[to]) for to in recipients]
            )
    except (OSError, smtplib.SMTPException, ValueError):  # ValueError: BadHeaderError, a malformed address
        logger.exception("the notification email to %d recipients was not sent", len(recipients))
        return False
    return True


def notifications_for(*, user: User) -> QuerySet[Notification]:
    return Notification.objects.filter(user=user)


def notifications_mark_read(*, user: User) -> int:
    marked = Notification.objects.filter(user=user, read_at__isnull=True).update(read_at=timezone.now())
    if hasattr(user, "unread_notifications"):
        cast(Any, user).unread_notifications = 0  # as read with the request's user: this request now shows none
    return marked


def notifications_resolve(*, url: str) -> int:
    """Mark read everyone's unread notifications that point at ``url`` (what they asked for is done: an incident
    decided)."""
    return Notification.objects.filter(url=url, read_at__isnull=True).update(read_at=timezone.now())


def notifications_unread(user_id: int) -> int:
    """The user's unread count, counted now."""
    return Notification.objects.filter(user_id=user_id, read_at__isnull=True).count()


def notifications_context(request) -> dict[str, Callable[[], int]]:
    """Template context: the user's unread count, where a template shows it. Every signed-in request's user is read
    with it (healthagent.roles.user_columns), so it costs no query; a user read otherwise is counted."""
    user = getattr(request, "user", None)  # none on an error page of a request refused before its user was read
    if user is None or isinstance(user, AnonymousUser) or not user.is_authenticated:
        return {}
    counted = getattr(user, "unread_notifications", None)
    return {
        "unread_notifications": (lambda: counted) if counted is not None else partial(notifications_unread, user.pk)
    }
