"""Webhooks: signed events to the receivers researchers and admins register (the Standard Webhooks format).

An event is emitted inside the transaction of what it reports (:func:`webhook_emit`): one ``WebhookDelivery`` per
endpoint that wants it, committed with the action or not at all, and handed to a worker of the "quick" queue once
the transaction commits. The worker makes one attempt (:func:`webhook_attempt`): a POST of the JSON body with the
``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` headers, signed with the endpoint's secret by the
``standardwebhooks`` package, which is also what receivers verify with. Anything but a 2xx answer is tried again
after ``WEBHOOK_RETRY_BASE_S``, twice as long each time, until ``WEBHOOK_MAX_ATTEMPTS``; every attempt keeps the
same ``webhook-id``, so a receiver can tell an event it has seen.

Payloads carry event types, ids and pseudonyms only: no names, no email addresses, no scores, no free text (a
pipeline that may read more fetches it through the API with its own token).
"""

import base64
import ipaddress
import json
import logging
import secrets
import socket
from collections.abc import Callable, Iterable
from datetime import timedelta
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.contrib.auth.models import User
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from healthagent.audit import Action, audit_record
from healthagent.models import WebhookDelivery, WebhookEndpoint
from healthagent.roles import Role, user_has_role

logger = logging.getLogger(__name__)

# Event type -> what it reports. Study events reach the study's endpoints and the site-wide ones.
EVENT_TYPES = {
    "rating.committed": "A clinician's rating was saved (a first submit or a revision).",
    "item.completed": "A study item has every rating it needs.",
    "study.opened": "A study was opened, or reopened.",
    "study.closed": "A study was closed.",
    "incident.raised": "A rating opened a safety incident.",
    "job.finished": "A job ended: succeeded, failed or cancelled (site-wide endpoints only).",
    "webhook.test": "The test event sent from the webhooks page.",
}
STUDY_EVENTS = ("rating.committed", "item.completed", "study.opened", "study.closed", "incident.raised")
USER_AGENT = "healthagent-webhooks/1"


class WebhookError(Exception):
    """A webhook request refused; the message says why."""


def check_webhook_url(url: str) -> None:
    """Refuse an address a webhook may not be sent to: not http(s), with credentials, or (unless its host is in
    ``WEBHOOK_ALLOWED_HOSTS``) outside the allow-list when there is one, or resolving to a loopback, private,
    link-local or reserved address, so that a researcher cannot make the workers probe the hospital's network."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise WebhookError("a webhook address starts with https:// (or http://) and names a host")
    if parts.username or parts.password:
        raise WebhookError("a webhook address carries no user name or password: the signature authenticates it")
    allowed = settings.WEBHOOK_ALLOWED_HOSTS
    if parts.hostname in allowed or parts.netloc in allowed:
        return
    if allowed:
        raise WebhookError(f"{parts.hostname} is not among the hosts webhooks may be sent to (WEBHOOK_ALLOWED_HOSTS)")
    try:
        addresses = {str(info[4][0]) for info in socket.getaddrinfo(parts.hostname, parts.port or 443)}
    except (OSError, UnicodeError) as error:
        raise WebhookError(f"{parts.hostname} cannot be resolved: {error}") from error
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved or ip.is_multicast:
            raise WebhookError(
                f"{parts.hostname} is an internal address ({ip}): name it in WEBHOOK_ALLOWED_HOSTS to send there"
            )


def _check_event_types(event_types: Iterable[str], *, site_wide: bool) -> list[str]:
    chosen = sorted(set(event_types))
    unknown = [name for name in chosen if name not in EVENT_TYPES]
    if unknown:
        raise WebhookError(f"no such event type: {', '.join(unknown)}")
    if not site_wide and "job.finished" in chosen:
        raise WebhookError("job.finished goes to site-wide endpoints only: a job belongs to no study")
    return chosen


def new_secret() -> str:
    """A signing secret in the Standard Webhooks form: ``whsec_`` and 24 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def webhook_endpoint_create(
    *, owner: User, url: str, study_id: int | None, event_types: Iterable[str] = (), description: str = ""
) -> WebhookEndpoint:
    """Register an endpoint (the caller has checked that ``owner`` may: evaluation's views do, for the study).

    ``event_types`` empty means every event of its scope.
    """
    url = (url or "").strip()
    check_webhook_url(url)
    endpoint = WebhookEndpoint(
        url=url,
        description=(description or "").strip(),
        secret=new_secret(),
        owner=owner,
        study_id=study_id,
        event_types=_check_event_types(event_types, site_wide=study_id is None),
    )
    try:
        endpoint.full_clean()
    except ValidationError as error:
        message = "; ".join(f"{field}: {' '.join(errors)}" for field, errors in error.message_dict.items())
        raise WebhookError(message) from error
    with transaction.atomic():
        endpoint.save()
        audit_record(
            actor=owner,
            action=Action.WEBHOOK_CREATED,
            target=endpoint,
            details={"study": study_id, "events": endpoint.event_types or "all"},
        )
    return endpoint


def webhook_endpoint_delete(*, endpoint: WebhookEndpoint, user: User) -> None:
    """Remove an endpoint and its delivery log; deliveries under way stop at their next attempt."""
    with transaction.atomic():
        audit_record(actor=user, action=Action.WEBHOOK_DELETED, target=endpoint, details={"study": endpoint.study_id})
        endpoint.delete()


def webhook_endpoints_of_study_delete(*, study_id: int) -> None:
    """Called when a study is deleted: its endpoints go with it."""
    WebhookEndpoint.objects.filter(study_id=study_id).delete()


# Whether a user may still read a study (registered by evaluation, which knows studies): an endpoint whose owner has
# lost the study, or their role, or their account, hears nothing more.
StudyReadable = Callable[[User, int], bool]
_study_readable: list[StudyReadable] = []


def webhook_study_access_register(check: StudyReadable) -> None:
    _study_readable[:] = [check]


def _owner_may_hear(endpoint: WebhookEndpoint) -> bool:
    owner = endpoint.owner
    if not owner.is_active:
        return False
    if endpoint.study_id is None:
        return user_has_role(owner, Role.ADMIN)
    return user_has_role(owner, Role.RESEARCHER, Role.ADMIN) and all(
        check(owner, endpoint.study_id) for check in _study_readable
    )


def webhook_endpoints_for(*, study_id: int | None) -> list[WebhookEndpoint]:
    """The active endpoints that hear events of ``study_id`` (its own and the site-wide ones; only the site-wide ones
    for None), whatever their event types, whose owners may still read what they hear: one query (and one per
    endpoint found), for a caller that emits several events."""
    scope = Q(study_id__isnull=True) | Q(study_id=study_id) if study_id is not None else Q(study_id__isnull=True)
    endpoints = WebhookEndpoint.objects.filter(scope, active=True).select_related("owner")
    return [endpoint for endpoint in endpoints if _owner_may_hear(endpoint)]


def wanting(endpoints: Iterable[WebhookEndpoint], event_type: str) -> list[WebhookEndpoint]:
    return [endpoint for endpoint in endpoints if not endpoint.event_types or event_type in endpoint.event_types]


def _message(event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"type": event_type, "timestamp": timezone.now().isoformat(), "data": data}


def webhook_emit(
    *,
    event_type: str,
    data: dict[str, Any],
    study_id: int | None = None,
    endpoints: list[WebhookEndpoint] | None = None,
) -> list[WebhookDelivery]:
    """Record the event for every active endpoint that wants it, and queue their deliveries once the transaction
    commits (nothing is sent for an action that rolls back). ``data`` holds ids and pseudonyms only. ``endpoints``:
    those of :func:`webhook_endpoints_for` the caller already has (saves the query)."""
    if event_type not in EVENT_TYPES:
        raise WebhookError(f"no such event type: {event_type}")
    endpoints = wanting(webhook_endpoints_for(study_id=study_id) if endpoints is None else endpoints, event_type)
    if not endpoints:
        return []
    payload = _message(event_type, {**data, **({"study_id": study_id} if study_id is not None else {})})
    deliveries = WebhookDelivery.objects.bulk_create(
        [
            WebhookDelivery(
                endpoint=endpoint, message_id=f"msg_{secrets.token_hex(12)}", event_type=event_type, payload=payload
            )
            for endpoint in endpoints
        ]
    )
    transaction.on_commit(partial(_queue_and_sweep, [delivery.pk for delivery in deliveries]), robust=True)
    return deliveries


OVERDUE_GRACE_S = 300
SWEEP_EVERY_S = 60


def webhook_deliveries_requeue(*, grace_s: float = OVERDUE_GRACE_S, scheduled_too: bool = False) -> int:
    """Queue again every pending delivery overdue by more than ``grace_s``: one whose message was lost (the broker
    was down when it was queued, or it was dropped with a worker); with ``scheduled_too``, also those whose next
    attempt is still to come, each for its time (the embedded workers' broker keeps no message of a stopped worker).
    A copy of a message still on its way costs nothing: :func:`webhook_attempt` claims each attempt once. Run when
    the embedded workers start, at most once a minute as events are emitted, and by ``manage.py webhooks_requeue``
    (for cron). Returns how many."""
    now = timezone.now()
    cutoff = now - timedelta(seconds=grace_s)
    pending = WebhookDelivery.objects.filter(state=WebhookDelivery.State.PENDING)
    if not scheduled_too:
        pending = pending.filter(Q(next_attempt_at__lt=cutoff) | Q(next_attempt_at__isnull=True, created_at__lt=cutoff))
    rows = list(pending.order_by("pk").values_list("pk", "next_attempt_at")[:1000])
    for number, (delivery_id, due) in enumerate(rows):
        if not _queue([delivery_id], countdown_s=max(0.0, (due - now).total_seconds()) if due else 0.0):
            return number  # the broker is down: the next sweep carries on
    return len(rows)


def _queue_and_sweep(delivery_ids: list[int]) -> None:
    if not _queue(delivery_ids):
        return  # the broker is down: no sweep now (it would only be refused again)
    if cache.add("webhooks:swept", 1, timeout=SWEEP_EVERY_S):  # at most one sweep a minute in each process
        try:
            webhook_deliveries_requeue()
        except Exception:  # the sweep is a safety net: an event's own delivery never fails for it
            logger.exception("the sweep of overdue webhook deliveries failed")


def webhook_requeue_lines(queues: tuple[str, ...]) -> list[str]:
    """The embedded workers' start hook (healthagent.celery.before_workers_start): deliveries a stopped worker
    left, queued again."""
    if "quick" not in queues:
        return []
    count = webhook_deliveries_requeue(scheduled_too=True)
    return [f"{count} webhook deliveries queued again"] if count else []


def webhook_send_test(*, endpoint: WebhookEndpoint) -> WebhookDelivery:
    """A ``webhook.test`` event to this endpoint alone, whatever event types it chose."""
    with transaction.atomic():
        delivery = WebhookDelivery.objects.create(
            endpoint=endpoint,
            message_id=f"msg_{secrets.token_hex(12)}",
            event_type="webhook.test",
            payload=_message("webhook.test", {"endpoint_id": endpoint.pk}),
        )
        transaction.on_commit(partial(_queue, [delivery.pk]), robust=True)
    return delivery


def webhook_delivery_retry(*, delivery: WebhookDelivery) -> None:
    """Try a failed (or stuck) delivery again from its first attempt, with the same ``webhook-id``."""
    with transaction.atomic():
        changed = (
            WebhookDelivery.objects.filter(pk=delivery.pk)
            .exclude(state=WebhookDelivery.State.DELIVERED)  # decided in the update: a delivery landing now wins
            .update(state=WebhookDelivery.State.PENDING, attempts=0, next_attempt_at=None)
        )
        if not changed:
            raise WebhookError("this event was delivered: it is not sent twice")
        transaction.on_commit(partial(_queue, [delivery.pk]), robust=True)


def _queue(delivery_ids: list[int], countdown_s: float = 0) -> bool:
    """Send each delivery's message; False at the first the broker refuses (it is down: the rest stay pending, for
    the sweep or "Retry" on the page, and nobody waits on more refusals)."""
    from healthagent.tasks import deliver_webhook

    for delivery_id in delivery_ids:
        try:
            deliver_webhook.apply_async(kwargs={"delivery_id": delivery_id}, queue="quick", countdown=countdown_s)
        except Exception:
            logger.exception("webhook delivery %s was not queued (and %d after it)", delivery_id, len(delivery_ids) - 1)
            return False
    return True


def retry_delay_s(attempts: int) -> float:
    """Seconds before the attempt after ``attempts`` failed ones: the base, doubled each time, capped."""
    return min(settings.WEBHOOK_RETRY_BASE_S * 2 ** max(attempts - 1, 0), settings.WEBHOOK_RETRY_MAX_S)


def signed_headers(*, endpoint: WebhookEndpoint, message_id: str, body: str) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt (signed now)."""
    now = timezone.now()
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(endpoint.secret).sign(message_id, now, body),
    }


def _post(endpoint: WebhookEndpoint, message_id: str, body: str) -> tuple[int | None, str]:
    """One POST of a signed body: the status code (None without an answer) and what went wrong ("" for a 2xx)."""
    try:
        if not endpoint.active:
            raise WebhookError("the endpoint is switched off")
        check_webhook_url(endpoint.url)
        response = httpx.post(
            endpoint.url,
            content=body.encode(),
            headers=signed_headers(endpoint=endpoint, message_id=message_id, body=body),
            timeout=settings.WEBHOOK_TIMEOUT_S,
            follow_redirects=False,
        )
    except Exception as failure:  # any failure is this attempt's outcome, never the task's crash
        return None, f"{type(failure).__name__}: {failure}"
    if 200 <= response.status_code < 300:
        return response.status_code, ""
    return response.status_code, f"the receiver answered {response.status_code}"


def webhook_attempt(*, delivery_id: int) -> float | None:
    """Make the delivery's next attempt if it is pending and due; the seconds until the attempt after it, or None
    when there is none to make (delivered, failed for good, gone, or not yet due: another message will come then).

    The attempt is claimed in a short transaction (``next_attempt_at`` moved past the POST's time-out, so a copy of
    the task arriving meanwhile leaves it alone), the POST is made outside any transaction (no row stays locked while
    a receiver is slow), and its outcome is written in a second one.
    """
    with transaction.atomic():
        delivery = (
            WebhookDelivery.objects.select_for_update(of=("self",))
            .select_related("endpoint__owner")
            .filter(pk=delivery_id)
            .first()
        )
        if delivery is None or delivery.state != WebhookDelivery.State.PENDING:
            return None
        if not _owner_may_hear(delivery.endpoint):  # access lost since the event: nothing more is sent
            delivery.state, delivery.next_attempt_at = WebhookDelivery.State.FAILED, None
            delivery.error = "not sent: the endpoint's owner may no longer receive this event"
            delivery.save(update_fields=["state", "next_attempt_at", "error"])
            return None
        now = timezone.now()
        if delivery.next_attempt_at and now < delivery.next_attempt_at - timedelta(seconds=1):
            return None  # a duplicate message, or an attempt under way: the one due then makes it
        delivery.next_attempt_at = now + timedelta(seconds=3 * settings.WEBHOOK_TIMEOUT_S + 30)
        delivery.save(update_fields=["next_attempt_at"])
    endpoint = delivery.endpoint
    body = json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True)
    status_code, error = _post(endpoint, delivery.message_id, body)
    with transaction.atomic():
        delivery = WebhookDelivery.objects.select_for_update().filter(pk=delivery_id).first()
        if delivery is None or delivery.state != WebhookDelivery.State.PENDING:
            return None  # removed, or retried from the page meanwhile
        now = timezone.now()
        delivery.attempts += 1
        delivery.status_code, delivery.error, delivery.last_attempt_at = status_code, error[:300], now
        if not error:
            delivery.state, delivery.delivered_at, delivery.next_attempt_at = WebhookDelivery.State.DELIVERED, now, None
        elif delivery.attempts >= settings.WEBHOOK_MAX_ATTEMPTS or not endpoint.active:
            delivery.state, delivery.next_attempt_at = WebhookDelivery.State.FAILED, None
        else:
            delivery.next_attempt_at = now + timedelta(seconds=retry_delay_s(delivery.attempts))
        delivery.save()
    if delivery.state != WebhookDelivery.State.PENDING:
        return None
    return retry_delay_s(delivery.attempts)


def webhook_endpoints_managed_by(*, user: User) -> QuerySet[WebhookEndpoint]:
    """The endpoints ``user`` may see and change: every one for admins, their own for researchers, none otherwise."""
    if user_has_role(user, Role.ADMIN):
        return WebhookEndpoint.objects.select_related("owner")
    if user_has_role(user, Role.RESEARCHER):
        return WebhookEndpoint.objects.select_related("owner").filter(owner=user)
    return WebhookEndpoint.objects.none()


def webhook_deliveries_recent(*, endpoint: WebhookEndpoint, limit: int = 20) -> list[WebhookDelivery]:
    return list(endpoint.deliveries.order_by("-created_at", "-pk")[:limit])
