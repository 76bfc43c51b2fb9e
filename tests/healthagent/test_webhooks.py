"""Webhooks: endpoints, events of each type, signed deliveries to a real HTTP receiver on loopback (verified with the
``standardwebhooks`` package), back-off with a real Celery worker, and the page."""

import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import transaction
from django.urls import reverse
from standardwebhooks.webhooks import Webhook

from evaluation.assignment import assignment_next
from evaluation.services import rating_submit, study_set_status
from healthagent.models import AuditEntry, WebhookDelivery, WebhookEndpoint
from healthagent.roles import Role
from healthagent.webhooks import (
    WebhookError,
    retry_delay_s,
    webhook_attempt,
    webhook_emit,
    webhook_endpoint_create,
    webhook_send_test,
)
from modeling.jobs import job_cancel
from modeling.models import Job
from tests.factories import UserFactory

SCORES = {"relevance": 4, "context": 3, "safety": 5}


class Receiver:
    """A real HTTP server on a free loopback port: answers each POST with the next scripted status (then 200) and
    keeps what it received (arrival time, headers, body)."""

    def __init__(self, statuses=()):
        self.statuses, self.received, self.lock = list(statuses), [], threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"])).decode()
                with receiver.lock:
                    receiver.received.append((time.monotonic(), dict(self.headers), body))
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self, secret: str) -> list[dict]:
        """Every received body, its signature verified (raises if one does not verify)."""
        return [Webhook(secret).verify(body, headers) for _, headers, body in self.received]


@pytest.fixture(autouse=True)
def loopback_allowed(settings):
    """The receivers of these tests are on loopback, which an endpoint may name only when allow-listed."""
    settings.WEBHOOK_ALLOWED_HOSTS = [
        "127.0.0.1",
        "a.test",
        "b.test",
        "c.test",
        "d.test",
        "e.test",
        "hooks.hospital.test",
    ]


@pytest.fixture
def receiver():
    made = []

    def make(statuses=()):
        made.append(Receiver(statuses))
        return made[-1]

    yield make
    for server in made:
        server.server.shutdown()
        server.server.server_close()


def wait_for(condition, seconds=20.0):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def deliver_all() -> None:
    """What the worker does, in this process: an attempt of every pending delivery."""
    for delivery_id in WebhookDelivery.objects.filter(state="pending").values_list("pk", flat=True):
        webhook_attempt(delivery_id=delivery_id)


@pytest.mark.django_db
def test_an_endpoint_is_checked_and_gets_a_standard_webhooks_secret(settings):
    owner = UserFactory(role=Role.RESEARCHER)
    for url, message in [
        ("ftp://hooks.hospital.test/", "starts with https://"),
        ("https://user:pw@hooks.hospital.test/", "no user name or password"),
    ]:
        with pytest.raises(WebhookError, match=message):
            webhook_endpoint_create(owner=owner, url=url, study_id=None)
    with pytest.raises(WebhookError, match=r"no such event type: rating\.deleted"):
        webhook_endpoint_create(
            owner=owner, url="https://hooks.hospital.test/", study_id=None, event_types=["rating.deleted"]
        )
    with pytest.raises(WebhookError, match="site-wide endpoints only"):
        webhook_endpoint_create(
            owner=owner, url="https://hooks.hospital.test/", study_id=7, event_types=["job.finished"]
        )
    with pytest.raises(WebhookError, match=r"elsewhere\.test is not among the hosts"):
        webhook_endpoint_create(owner=owner, url="https://elsewhere.test/", study_id=None)
    settings.WEBHOOK_ALLOWED_HOSTS = []  # no allow-list: any public host, no internal one
    for internal in (
        "http://127.0.0.1:8000/",
        "http://10.1.2.3/",
        "http://169.254.169.254/latest/",
        "http://localhost/",
    ):
        with pytest.raises(WebhookError, match="is an internal address"):
            webhook_endpoint_create(owner=owner, url=internal, study_id=None)
    settings.WEBHOOK_ALLOWED_HOSTS = ["hooks.hospital.test"]
    endpoint = webhook_endpoint_create(owner=owner, url="https://hooks.hospital.test/x", study_id=None)
    assert endpoint.secret.startswith("whsec_") and len(Webhook(endpoint.secret)._whsecret) == 24
    assert AuditEntry.objects.filter(action="webhook.created", object_id=str(endpoint.pk)).exists()
    assert endpoint.secret not in json.dumps(list(AuditEntry.objects.values("details")))
    assert WebhookEndpoint.objects.count() == 1  # the refused ones made nothing


@pytest.mark.django_db
def test_a_retry_never_resends_a_delivered_event(receiver):
    from healthagent.webhooks import webhook_delivery_retry

    server = receiver()
    endpoint = webhook_endpoint_create(owner=UserFactory(role=Role.ADMIN), url=server.url, study_id=None)
    delivery = webhook_send_test(endpoint=endpoint)
    stale = WebhookDelivery.objects.get(pk=delivery.pk)  # what the page showed: still pending
    assert webhook_attempt(delivery_id=delivery.pk) is None
    with pytest.raises(WebhookError, match="it is not sent twice"):
        webhook_delivery_retry(delivery=stale)
    assert WebhookDelivery.objects.get(pk=delivery.pk).state == "delivered" and len(server.received) == 1


def test_the_back_off_doubles_up_to_its_cap(settings):
    settings.WEBHOOK_RETRY_BASE_S, settings.WEBHOOK_RETRY_MAX_S = 30, 200
    assert [retry_delay_s(attempts) for attempts in range(1, 6)] == [30, 60, 120, 200, 200]


@pytest.mark.django_db
def test_events_reach_the_endpoints_that_want_them_and_only_once_the_action_commits(grounded_study):
    from evaluation.models import Study

    owner = UserFactory(role=Role.ADMIN)
    five = grounded_study.pk
    six = Study.objects.create(name="Another", rubric=grounded_study.rubric).pk
    site = webhook_endpoint_create(owner=owner, url="https://a.test/", study_id=None)
    study_5 = webhook_endpoint_create(owner=owner, url="https://b.test/", study_id=five)
    only_closed = webhook_endpoint_create(
        owner=owner, url="https://c.test/", study_id=five, event_types=["study.closed"]
    )
    webhook_endpoint_create(owner=owner, url="https://d.test/", study_id=six)
    off = webhook_endpoint_create(owner=owner, url="https://e.test/", study_id=None)
    WebhookEndpoint.objects.filter(pk=off.pk).update(active=False)

    made = webhook_emit(event_type="rating.committed", data={"rating_id": 1}, study_id=five)
    assert {delivery.endpoint_id for delivery in made} == {site.pk, study_5.pk}
    made = webhook_emit(event_type="study.closed", data={}, study_id=five)
    assert {delivery.endpoint_id for delivery in made} == {site.pk, study_5.pk, only_closed.pk}
    assert {d.endpoint_id for d in webhook_emit(event_type="job.finished", data={"job_id": 1})} == {site.pk}
    assert made[0].payload["data"] == {"study_id": five} and made[0].payload["type"] == "study.closed"

    before = WebhookDelivery.objects.count()
    with pytest.raises(RuntimeError), transaction.atomic():
        webhook_emit(event_type="study.opened", data={}, study_id=five)
        raise RuntimeError("the action failed")
    assert WebhookDelivery.objects.count() == before


@pytest.mark.django_db
def test_each_event_type_is_delivered_signed_with_ids_only(
    grounded_study, receiver, django_capture_on_commit_callbacks
):
    admin = UserFactory(role=Role.ADMIN)
    server = receiver()
    endpoint = webhook_endpoint_create(owner=admin, url=server.url, study_id=None)
    raters = list(grounded_study.clinicians.all())
    first = assignment_next(study=grounded_study, rater=raters[0])
    rating = rating_submit(
        assignment_id=first.pk, rater=raters[0], scores=SCORES, unsafe=True, unsafe_reason="stops a medication"
    )
    second = assignment_next(study=grounded_study, rater=raters[1])
    while second.item_id != first.item_id:  # the second rating of the same item completes it (k = 2)
        rating_submit(assignment_id=second.pk, rater=raters[1], scores=SCORES)
        second = assignment_next(study=grounded_study, rater=raters[1])
    rating_submit(assignment_id=second.pk, rater=raters[1], scores=SCORES)
    study_set_status(study=grounded_study, status="closed")
    job = Job.objects.create(kind="demo_training", config={}, state="queued")
    job_cancel(job=job)
    webhook_send_test(endpoint=endpoint)
    deliver_all()

    events = server.events(endpoint.secret)  # every signature verifies
    types = [event["type"] for event in events]
    for expected in (
        "rating.committed",
        "incident.raised",
        "item.completed",
        "study.closed",
        "job.finished",
        "webhook.test",
    ):
        assert expected in types, expected
    by_type = {event["type"]: event["data"] for event in events}
    assert by_type["incident.raised"]["item_id"] == first.item_id and by_type["incident.raised"]["reasons"] == [
        "unsafe"
    ]
    assert {"study_id": grounded_study.pk, "item_id": first.item_id, "ratings": 2} == by_type["item.completed"]
    assert by_type["job.finished"] == {"job_id": job.pk, "kind": "demo_training", "state": "cancelled"}
    first_rating = next(
        e["data"] for e in events if e["type"] == "rating.committed" and e["data"]["rating_id"] == rating.pk
    )
    assert first_rating == {
        "study_id": grounded_study.pk,
        "item_id": first.item_id,
        "rating_id": rating.pk,
        "revision": 1,
        "purpose": "main",
    }
    bodies = " ".join(body for _, _, body in server.received)
    for private in ("stops a medication", raters[0].username, raters[0].email or "@", grounded_study.name):
        assert private not in bodies
    assert WebhookDelivery.objects.exclude(state="delivered").count() == 0
    ids = [headers["webhook-id"] for _, headers, _ in server.received]
    assert len(ids) == len(set(ids))


@pytest.mark.django_db
def test_a_failing_receiver_is_tried_again_later_and_then_given_up(settings, receiver):
    settings.WEBHOOK_MAX_ATTEMPTS, settings.WEBHOOK_RETRY_BASE_S = 3, 60
    server = receiver(statuses=[500, 503, 500])
    endpoint = webhook_endpoint_create(owner=UserFactory(role=Role.ADMIN), url=server.url, study_id=None)
    delivery = webhook_send_test(endpoint=endpoint)
    assert webhook_attempt(delivery_id=delivery.pk) == 60
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts, delivery.status_code) == ("pending", 1, 500)
    assert webhook_attempt(delivery_id=delivery.pk) is None  # a duplicate message before it is due: no attempt
    assert len(server.received) == 1
    for expected_delay in (120, None):
        WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=None)  # as if the wait were over
        assert webhook_attempt(delivery_id=delivery.pk) == expected_delay
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts, delivery.error) == ("failed", 3, "the receiver answered 500")
    assert len({headers["webhook-id"] for _, headers, _ in server.received}) == 1  # one message, three attempts


@pytest.mark.django_db
def test_a_receiver_that_is_not_there_is_recorded_not_raised(settings):
    settings.WEBHOOK_TIMEOUT_S = 2
    endpoint = webhook_endpoint_create(owner=UserFactory(role=Role.ADMIN), url="http://127.0.0.1:9/", study_id=None)
    delivery = webhook_send_test(endpoint=endpoint)
    assert webhook_attempt(delivery_id=delivery.pk) == settings.WEBHOOK_RETRY_BASE_S
    delivery.refresh_from_db()
    assert delivery.status_code is None and delivery.error.startswith("ConnectError")


@pytest.mark.services
@pytest.mark.django_db(transaction=True)  # the worker's thread has its own database connection
def test_a_worker_delivers_again_after_back_off_and_exactly_once_more(
    settings, receiver, worker, django_capture_on_commit_callbacks
):
    settings.WEBHOOK_RETRY_BASE_S = 1.0
    server = receiver(statuses=[500, 502])  # fails twice, then 200
    endpoint = webhook_endpoint_create(owner=UserFactory(role=Role.ADMIN), url=server.url, study_id=None)
    with django_capture_on_commit_callbacks(execute=True):
        delivery = webhook_send_test(endpoint=endpoint)
    wait_for(lambda: WebhookDelivery.objects.get(pk=delivery.pk).state == "delivered", seconds=30)
    time.sleep(2.5)  # long enough for a stray fourth attempt to show
    assert len(server.received) == 3
    times = [arrived for arrived, _, _ in server.received]
    assert times[1] - times[0] >= 0.9 and times[2] - times[1] >= 1.9  # 1 s, then 2 s
    assert len({headers["webhook-id"] for _, headers, _ in server.received}) == 1
    assert [event["type"] for event in server.events(endpoint.secret)] == ["webhook.test"] * 3
    delivery.refresh_from_db()
    assert (delivery.attempts, delivery.status_code, delivery.error) == (3, 200, "")


@pytest.mark.django_db
def test_the_page_registers_tests_and_removes_endpoints_within_each_role(client, grounded_study, receiver):
    owner = grounded_study.created_by
    other = UserFactory(role=Role.RESEARCHER)
    client.force_login(owner)
    page = client.get(reverse("evaluation:webhooks"))
    assert page.status_code == 200 and "the whole site" not in page.content.decode()  # site-wide is for admins
    refused = client.post(reverse("evaluation:webhooks"), {"url": "https://a.test/", "study": ""})
    assert refused.status_code == 400 and WebhookEndpoint.objects.count() == 0
    bad = client.post(
        reverse("evaluation:webhooks"),
        {"url": "https://a.test/", "study": str(grounded_study.pk), "event_types": ["job.finished"]},
    )
    assert bad.status_code == 400 and "site-wide endpoints only" in bad.content.decode()
    assert 'value="https://a.test/"' in bad.content.decode()  # what was typed is kept
    server = receiver()
    made = client.post(
        reverse("evaluation:webhooks"), {"url": server.url, "study": str(grounded_study.pk), "description": "nightly"}
    )
    assert made.status_code == 302
    endpoint = WebhookEndpoint.objects.get()
    assert (endpoint.owner, endpoint.study_id, endpoint.event_types) == (owner, grounded_study.pk, [])
    client.post(reverse("evaluation:webhook_test", args=[endpoint.pk]))
    deliver_all()
    page = client.get(reverse("evaluation:webhooks")).content.decode()
    assert endpoint.secret in page and 'data-state="delivered"' in page and "200" in page

    client.force_login(other)  # another researcher sees nothing of it and cannot act on it
    assert endpoint.url not in client.get(reverse("evaluation:webhooks")).content.decode()
    assert client.post(reverse("evaluation:webhook_test", args=[endpoint.pk])).status_code == 404
    assert client.post(reverse("evaluation:webhook_delete", args=[endpoint.pk])).status_code == 404
    client.force_login(UserFactory(role=Role.CLINICIAN))
    assert client.get(reverse("evaluation:webhooks")).status_code == 403

    client.force_login(owner)
    assert client.post(reverse("evaluation:webhook_delete", args=[endpoint.pk])).status_code == 302
    assert not WebhookEndpoint.objects.exists() and not WebhookDelivery.objects.exists()


@pytest.mark.django_db
def test_a_deleted_study_takes_its_endpoints_with_it(grounded_study):
    endpoint = webhook_endpoint_create(
        owner=grounded_study.created_by, url="https://a.test/", study_id=grounded_study.pk
    )
    site = webhook_endpoint_create(owner=UserFactory(role=Role.ADMIN), url="https://b.test/", study_id=None)
    grounded_study.delete()
    assert not WebhookEndpoint.objects.filter(pk=endpoint.pk).exists()
    assert WebhookEndpoint.objects.filter(pk=site.pk).exists()


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_a_delivery_whose_message_was_lost_is_sent_by_the_sweep_and_only_once(receiver, worker):
    """The broker was down when the event happened (so no message was queued): the cron command, and the next
    event's sweep, send what is overdue; what is not yet overdue, or delivered, is left alone."""
    from datetime import timedelta

    from django.core.cache import cache
    from django.core.management import call_command
    from django.utils import timezone

    server = receiver()
    endpoint = webhook_endpoint_create(owner=UserFactory(role=Role.ADMIN), url=server.url, study_id=None)

    def lost(age_s: float, state: str = "pending") -> WebhookDelivery:
        delivery = WebhookDelivery.objects.create(
            endpoint=endpoint,
            message_id=f"msg_lost{age_s:.0f}{state}",
            event_type="webhook.test",
            payload={"type": "webhook.test", "timestamp": "2026-12-04T00:00:00+00:00", "data": {}},
            state=state,
        )
        WebhookDelivery.objects.filter(pk=delivery.pk).update(created_at=timezone.now() - timedelta(seconds=age_s))
        return delivery

    old, recent, done = lost(900), lost(10), lost(900, state="delivered")
    printed = io.StringIO()
    call_command("webhooks_requeue", stdout=printed)
    assert printed.getvalue().strip() == "1 webhook deliveries queued again"
    wait_for(lambda: WebhookDelivery.objects.get(pk=old.pk).state == "delivered")
    assert [headers["webhook-id"] for _, headers, _ in server.received] == [old.message_id]

    WebhookDelivery.objects.filter(pk=recent.pk).update(created_at=timezone.now() - timedelta(seconds=900))
    cache.delete("webhooks:swept")
    webhook_emit(event_type="job.finished", data={"job_id": 1})  # the next event sweeps what is overdue
    wait_for(lambda: WebhookDelivery.objects.get(pk=recent.pk).state == "delivered")
    wait_for(lambda: len(server.received) == 3)
    time.sleep(1.0)  # a stray copy would show by now
    ids = [headers["webhook-id"] for _, headers, _ in server.received]
    assert sorted(ids[1:]) == sorted([recent.message_id, WebhookDelivery.objects.latest("pk").message_id])
    assert done.message_id not in ids and len(ids) == len(set(ids))


@pytest.mark.django_db
def test_an_endpoint_hears_nothing_more_once_its_owner_may_not_read_what_it_would_hear(grounded_study):
    from healthagent.roles import user_assign_roles

    researcher, admin = UserFactory(role=Role.RESEARCHER), UserFactory(role=Role.ADMIN)
    theirs = webhook_endpoint_create(owner=researcher, url="https://a.test/", study_id=grounded_study.pk)
    site = webhook_endpoint_create(owner=admin, url="https://b.test/", study_id=None)

    def heard() -> set[int]:
        return {d.endpoint_id for d in webhook_emit(event_type="study.closed", data={}, study_id=grounded_study.pk)}

    assert heard() == {theirs.pk, site.pk}
    grounded_study.restricted = True  # restricted to its owner and named researchers: this one is neither
    grounded_study.save(update_fields=["restricted"])
    assert heard() == {site.pk}
    owed = WebhookDelivery.objects.filter(endpoint=theirs, state="pending").first()  # recorded while it could hear
    assert webhook_attempt(delivery_id=owed.pk) is None  # not sent now either
    owed.refresh_from_db()
    assert owed.state == "failed" and owed.attempts == 0 and "may no longer receive" in owed.error
    user_assign_roles(user=admin, roles=[Role.RESEARCHER])  # no longer an admin: site-wide events are not theirs
    assert heard() == set()
    grounded_study.restricted = False
    grounded_study.save(update_fields=["restricted"])
    researcher.is_active = False
    researcher.save(update_fields=["is_active"])
    assert heard() == set()
