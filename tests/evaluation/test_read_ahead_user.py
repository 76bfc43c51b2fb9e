"""The rated item's page, chart and submit read the request's user with the assignment, in one statement
(evaluation.access.access_assignment_as_session_user, access_turn_as_session_user), and authenticate the request with it through Django's own
checks: a session that any request would sign out, or a user any request would refuse, is signed out or refused here
too, before anything of the item is shown."""

import pytest
from django.contrib.auth import SESSION_KEY
from django.contrib.auth.models import Group
from django.urls import reverse

from evaluation.assignment import assignment_next
from evaluation.models import Assignment, Rating
from healthagent.roles import Role, user_roles
from tests.factories import submit_led_to

pytestmark = pytest.mark.django_db


FORM = {"score-relevance": "4", "score-context": "3", "score-safety": "5"}


@pytest.fixture
def own_item(client, grounded_study):
    rater = grounded_study.clinicians.order_by("pk").first()
    assignment = assignment_next(study=grounded_study, rater=rater)
    client.force_login(rater)
    urls = [reverse(name, args=[assignment.pk]) for name in ("evaluation:assignment", "evaluation:assignment_chart")]
    return rater, urls


@pytest.fixture
def own_submit(client, own_item):
    rater, (page, _) = own_item
    return rater, page + "submit/"


def nothing_rated(rater) -> bool:
    return not Rating.objects.filter(assignment__rater=rater).exists() and not Assignment.objects.filter(
        rater=rater, state="done"
    )


def test_the_submit_reads_the_user_with_the_turn_and_rates(
    client, own_submit, grounded_study, django_assert_max_num_queries
):
    from django.conf import settings
    from django.db import connection

    type(grounded_study).objects.filter(pk=grounded_study.pk).update(gold_rate=0.0)  # every turn a main item
    rater, submit = own_submit
    response = client.post(submit, FORM)
    assert response.status_code == 200 and submit_led_to(response).startswith("/evaluation/items/")  # the next page
    assert response.wsgi_request.user.pk == rater.pk and response.wsgi_request.user.is_authenticated
    assert Rating.objects.get(assignment__rater=rater).scores == {"relevance": 4, "context": 3, "safety": 5}
    if connection.vendor == "postgresql" and settings.SESSION_ENGINE != "django.contrib.sessions.backends.db":
        # No statement reads the user alone: it came with the locked assignment (session from Redis). The next
        # item's page, the submit's answer, reads the assignment (+1) and, the first time, the participant's record
        # (+3): with the user the submit read, not read again.
        with django_assert_max_num_queries(12 + 1 + 3) as captured:
            assert client.post(submit_led_to(response) + "submit/", FORM).status_code == 200
        assert not [q for q in captured.captured_queries if 'FROM "auth_user" ' in q["sql"]]
        assert [q for q in captured.captured_queries if 'JOIN "auth_user" u ON u.id = a.rater_id' in q["sql"]]


@pytest.mark.parametrize("change", ["password", "deactivated"])
def test_a_submit_of_a_session_every_request_would_sign_out_saves_nothing(client, own_submit, change):
    rater, submit = own_submit
    if change == "password":
        rater.set_password("changed elsewhere, by the user or an admin")
    else:
        rater.is_active = False
    rater.save()
    response = client.post(submit, FORM)
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    assert nothing_rated(rater)


def test_a_submit_by_a_user_who_lost_the_clinician_role_is_refused_and_saves_nothing(client, own_submit):
    rater, submit = own_submit
    rater.groups.clear()
    assert client.post(submit, FORM).status_code == 403
    assert nothing_rated(rater)


def test_an_anonymous_submit_goes_to_the_login_page_and_saves_nothing(client, own_submit):
    rater, submit = own_submit
    client.logout()
    response = client.post(submit, FORM)
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    assert nothing_rated(rater)


def test_a_submit_of_another_clinicians_item_is_a_404(client, own_submit, grounded_study):
    rater, submit = own_submit
    other = grounded_study.clinicians.exclude(pk=rater.pk).order_by("pk").first()
    client.force_login(other)
    assert client.post(submit, FORM).status_code == 404
    assert nothing_rated(rater) and nothing_rated(other)


def test_the_rater_sees_their_item_and_the_page_knows_them(client, own_item):
    rater, (page, chart) = own_item
    response = client.get(page)
    assert response.status_code == 200
    assert response.wsgi_request.user.pk == rater.pk and response.wsgi_request.user.is_authenticated
    assert client.get(chart).status_code == 200


@pytest.mark.parametrize("change", ["password", "deactivated"])
def test_a_session_every_request_would_sign_out_is_signed_out_before_the_item_is_read(client, own_item, change):
    rater, urls = own_item
    if change == "password":
        rater.set_password("changed elsewhere, by the user or an admin")  # the session's hash no longer matches
    else:
        rater.is_active = False
    rater.save()
    for url in urls:
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
        assert not response.wsgi_request.user.is_authenticated
    if change == "password":
        assert SESSION_KEY not in client.session  # Django's get_user flushed it, as on any page


def test_a_user_who_lost_the_clinician_role_is_refused_their_own_item(client, own_item):
    rater, urls = own_item
    rater.groups.clear()  # still enrolled, the assignment still theirs
    for url in urls:
        assert client.get(url).status_code == 403


def test_the_roles_read_with_the_assignment_are_every_role_the_user_holds(client, own_item):
    rater, (page, _) = own_item
    rater.groups.add(Group.objects.get_or_create(name=Role.RESEARCHER)[0])
    response = client.get(page)
    assert response.status_code == 200
    assert user_roles(response.wsgi_request.user) == {Role.CLINICIAN, Role.RESEARCHER}


def test_an_anonymous_visitor_goes_to_the_login_page(client, own_item):
    _, urls = own_item
    client.logout()
    for url in urls:
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_only_a_user_not_read_yet_is_read_ahead_and_the_read_ahead_user_serves_one_read(rf, own_item, client):
    """A request whose user something else set (a test's RequestFactory, another authentication middleware) or
    already read is left as it is; the user handed to get_user stands in for one read of it, not for later ones."""
    from django.contrib.auth.middleware import AuthenticationMiddleware

    from healthagent.roles import _READ_AHEAD, unread_session_user_pk, user_with_roles

    rater, _ = own_item
    request = rf.get("/")
    request.session = client.session
    request.user = rater
    assert unread_session_user_pk(request) is None
    AuthenticationMiddleware(lambda request: None).process_request(request)
    assert unread_session_user_pk(request) == rater.pk
    assert request.user.is_authenticated  # read now
    assert unread_session_user_pk(request) is None

    stand_in = type(rater).objects.get(pk=rater.pk)
    stand_in.first_name = "not from the database"
    token = _READ_AHEAD.set([stand_in])
    try:
        assert user_with_roles(rater.pk) is stand_in
        assert user_with_roles(rater.pk).first_name != "not from the database"
    finally:
        _READ_AHEAD.reset(token)


def test_a_turn_read_ahead_is_submitted_only_for_its_own_item_and_rater(grounded_study):
    """rating_submit_turn(read=...) refuses a read of another assignment or rater."""
    from django.db import transaction

    from evaluation.access import access_turn
    from evaluation.services import NotInQueue, rating_submit_turn

    first, second = grounded_study.clinicians.order_by("pk")[:2]
    mine, theirs = (assignment_next(study=grounded_study, rater=rater) for rater in (first, second))
    scores = {"relevance": 4, "context": 3, "safety": 5}
    with transaction.atomic():
        read = access_turn(assignment_id=mine.pk, rater=first)
        for assignment_id, rater in ((theirs.pk, first), (mine.pk, second)):
            with pytest.raises(NotInQueue), transaction.atomic():
                rating_submit_turn(assignment_id=assignment_id, rater=rater, scores=scores, read=read)
    assert nothing_rated(first) and nothing_rated(second)


def test_the_rated_items_requests_read_the_session_with_their_rows_not_on_their_own(client, own_submit, monkeypatch):
    """The page, the chart and the submit read the session's row in their own statement (the database keeps it): the
    session store never reads it itself (from Redis, or the database), and each request is the rater's."""
    from importlib import import_module

    from django.conf import settings

    store = import_module(settings.SESSION_ENGINE).SessionStore
    if not issubclass(store, import_module("django.contrib.sessions.backends.db").SessionStore):
        pytest.skip("the session is not kept in the database")  # not a profile of this project's
    rater, submit = own_submit
    loads = []
    original = store.load
    monkeypatch.setattr(store, "load", lambda self: loads.append(self.session_key) or original(self))
    page = submit.removesuffix("submit/")
    for response in (client.get(page), client.get(reverse("evaluation:assignment_chart", args=[page.split("/")[3]]))):
        assert response.status_code == 200 and response.wsgi_request.user.pk == rater.pk
    response = client.post(submit, FORM)
    assert response.status_code == 200 and response.wsgi_request.user.pk == rater.pk  # the next item's page
    assert Rating.objects.filter(assignment__rater=rater).count() == 1
    assert loads == []


@pytest.mark.parametrize("case", ["expired", "tampered", "another user's"])
def test_a_session_read_with_the_item_that_does_not_name_its_rater_decides_nothing(rf, client, own_item, case):
    """A session row that has expired, whose signature does not hold or that names someone else: the read ahead gives
    nothing and leaves the session unread, for the usual path to decide (which signs out or refuses, as it always
    did: the tests above)."""
    from datetime import timedelta

    from django.contrib.auth.middleware import AuthenticationMiddleware
    from django.contrib.sessions.backends.db import SessionStore
    from django.contrib.sessions.models import Session
    from django.utils import timezone

    from evaluation.access import access_assignment_as_session_user

    rater, (page, _) = own_item
    assignment_id = int(page.split("/")[3])
    if case == "another user's":
        client.force_login(type(rater).objects.exclude(pk=rater.pk).filter(is_active=True).first())
    key = client.session.session_key
    if case == "expired":
        Session.objects.filter(pk=key).update(expire_date=timezone.now() - timedelta(seconds=1))
    elif case == "tampered":
        Session.objects.filter(pk=key).update(session_data="e30:1tampered:signature")

    def request(key):
        made = rf.get(page)
        made.session = SessionStore(session_key=key)
        AuthenticationMiddleware(lambda request: None).process_request(made)
        return made

    refused = request(key)
    assert access_assignment_as_session_user(refused, assignment_id=assignment_id) is None
    assert not hasattr(refused.session, "_session_cache") and "_cached_user" not in refused.__dict__

    client.force_login(rater)  # the rater's own, valid session: read with the item
    accepted = request(client.session.session_key)
    assert access_assignment_as_session_user(accepted, assignment_id=assignment_id).pk == assignment_id
    assert accepted.user.pk == rater.pk and accepted.session.get(SESSION_KEY) == str(rater.pk)


@pytest.mark.parametrize("request_kind", ["page", "submit"])
def test_the_rated_items_requests_renew_an_idle_session_they_read_with_their_rows(client, own_submit, request_kind):
    """The idle renewal (healthagent.middleware.SessionIdleMiddleware) runs after the view, on the session the view
    read with its rows: an active clinician's session is still renewed by the rating page and its submit."""
    from healthagent.middleware import SessionIdleMiddleware

    rater, submit = own_submit
    session = client.session
    session[SessionIdleMiddleware.RENEWED_AT] = 1.0  # renewed long ago
    session.save()
    if request_kind == "page":
        response = client.get(submit.removesuffix("submit/"))
        assert response.status_code == 200
    else:
        response = client.post(submit, FORM)
        assert response.status_code == 200 and Rating.objects.filter(assignment__rater=rater).exists()
    assert response.cookies["sessionid"].value == session.session_key  # sent again, with its new expiry
    assert client.session[SessionIdleMiddleware.RENEWED_AT] > 1.0  # and saved


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_a_submit_locks_another_raters_item_only_for_a_live_session_and_never_without_one(grounded_study):
    """The submit's read (by the session) locks the assignment it reads before the session is known to name its
    rater: never for a request without a live session (no row to read), briefly for a signed-in one (refused after)."""
    import psycopg
    from django.contrib.auth.middleware import AuthenticationMiddleware
    from django.contrib.sessions.backends.db import SessionStore
    from django.db import connection, transaction
    from django.test import RequestFactory

    from evaluation.access import access_turn_as_session_user

    if connection.vendor != "postgresql":
        from tests.conftest import service_missing

        service_missing("row locks are PostgreSQL's here (set DATABASE_URL)")
    owner, other = grounded_study.clinicians.order_by("pk")[:2]
    theirs = assignment_next(study=grounded_study, rater=owner)
    live = SessionStore()
    live[SESSION_KEY], live["_auth_user_backend"] = str(other.pk), "django.contrib.auth.backends.ModelBackend"
    live["_auth_user_hash"] = other.get_session_auth_hash()
    live.create()
    settings = connection.settings_dict
    second = psycopg.connect(
        host=settings["HOST"],
        port=settings["PORT"],
        user=settings["USER"],
        password=settings["PASSWORD"] or None,
        dbname=settings["NAME"],
        autocommit=True,
    )

    def locked() -> bool:
        try:
            second.execute("SELECT 1 FROM evaluation_assignment WHERE id = %s FOR UPDATE NOWAIT", [theirs.pk])
        except psycopg.errors.LockNotAvailable:
            return True
        return False

    try:
        for key, expected in (("no-such-session-key", False), (live.session_key, True)):
            request = RequestFactory().post("/")
            request.session = SessionStore(session_key=key)
            AuthenticationMiddleware(lambda request: None).process_request(request)
            with transaction.atomic():
                assert access_turn_as_session_user(request, assignment_id=theirs.pk) is None  # not theirs to rate
                assert locked() is expected
            assert not locked()  # the transaction's end releases it
    finally:
        second.close()
