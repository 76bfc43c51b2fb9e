"""Every named URL × every role, with the status each must get. A URL without a row fails."""

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from tests.factories import UserFactory

ROLES = ("anonymous", "clinician", "researcher", "admin")
LOGIN = "login"  # a redirect to the login page
REDIRECT = 302
FORBIDDEN = 403


def row(anonymous, clinician, researcher, admin, *, method="get", kwargs=None, query=""):
    """``kwargs`` is a dict, or a function of the objects fixture (for URLs that name an object)."""
    return {
        "expected": dict(zip(ROLES, (anonymous, clinician, researcher, admin), strict=True)),
        "method": method,
        "kwargs": kwargs or {},
        "query": query,
    }


def first_participant(objects, user):
    return objects["cohort"].participants.order_by("pk").first().pk


def a_job():
    from modeling.models import Job

    return Job.objects.create(kind="demo_training", config={}, state="failed", error="for the matrix")


def a_simulation_job(user=None):
    """A simulation queued by ``user`` (a researcher sees only their own)."""
    from modeling.models import Job

    return Job.objects.create(kind="simulate", config={}, state="queued", queued_by=user)


def enrolled_study(objects, user):
    if user is not None and user.groups.filter(name="clinician").exists():
        objects["study"].clinicians.add(user)
    return objects["study"].pk


def owned_study(objects, user):
    """The study, owned by this user when they are a researcher (only its owner or an admin may change it)."""
    from evaluation.models import Study

    if user is not None and user.groups.filter(name="researcher").exists():
        Study.objects.filter(pk=objects["study"].pk).update(created_by=user)
    return objects["study"].pk


def own_assignment(objects, user):
    """An assignment of this user when they are a clinician enrolled in the study, else someone else's."""
    from evaluation.assignment import assignment_next

    study = objects["study"]
    rater = user if user is not None and user.groups.filter(name="clinician").exists() else study.clinicians.first()
    study.clinicians.add(rater)
    return assignment_next(study=study, rater=rater).pk


def an_incident(objects, user):
    """A safety incident of the study; a clinician is made its adjudicator (others adjudicate nothing)."""
    from evaluation.models import Incident

    study = objects["study"]
    if user is not None and user.groups.filter(name="clinician").exists():
        study.adjudicators.add(user)
    incident = Incident.objects.create(study=study, item=study.items.first(), reasons=["unsafe"])
    return {"incident_id": incident.pk}


def own_upload(objects, user):
    """An upload of this user (someone else's for a clinician, who is refused by role first)."""
    from healthagent.cohort.uploads import upload_create

    owner = user if user is not None and not user.groups.filter(name="clinician").exists() else UserFactory()
    return {"upload_id": str(upload_create(owner=owner, size_bytes=10, suffix=".csv").pk)}


def own_import_job(objects, user):
    from modeling.models import Job

    job = Job.objects.create(kind="cohort_import", config={}, state="queued", queued_by=user)
    return {"job_id": job.pk}


def own_webhook(objects, user):
    """A webhook endpoint of this user (a clinician gets someone else's: refused by role before it is looked up)."""
    from healthagent.webhooks import webhook_endpoint_create

    owner = user if user is not None and not user.groups.filter(name="clinician").exists() else None
    owner = owner or UserFactory(role="researcher")
    from django.test import override_settings

    with override_settings(WEBHOOK_ALLOWED_HOSTS=["hooks.hospital.test"]):
        endpoint = webhook_endpoint_create(
            owner=owner, url="https://hooks.hospital.test/", study_id=objects["study"].pk
        )
    return {"endpoint_id": endpoint.pk}


def own_webhook_delivery(objects, user):
    from healthagent.models import WebhookEndpoint
    from healthagent.webhooks import webhook_send_test

    endpoint_id = own_webhook(objects, user)["endpoint_id"]
    return {"delivery_id": webhook_send_test(endpoint=WebhookEndpoint.objects.get(pk=endpoint_id)).pk}


MATRIX = {
    "home": row(LOGIN, REDIRECT, REDIRECT, REDIRECT),
    "login": row(200, REDIRECT, REDIRECT, REDIRECT),
    "logout": row(REDIRECT, REDIRECT, REDIRECT, REDIRECT, method="post"),
    "health": row(200, 200, 200, 200),
    "system_status": row(LOGIN, FORBIDDEN, FORBIDDEN, 200),
    "audit_log": row(LOGIN, FORBIDDEN, FORBIDDEN, 200),
    "account": row(LOGIN, 200, 200, 200),
    "account_token_create": row(LOGIN, FORBIDDEN, 200, 200, method="post"),
    "account_token_revoke": row(
        LOGIN, FORBIDDEN, REDIRECT, REDIRECT, method="post", kwargs={"token_key": "not-a-token"}
    ),
    "evaluation:queue": row(LOGIN, 200, FORBIDDEN, FORBIDDEN),
    "evaluation:study_list": row(LOGIN, FORBIDDEN, 200, 200),
    "modeling:job_list": row(LOGIN, FORBIDDEN, FORBIDDEN, 200),
    "cohort:cohort_list": row(LOGIN, FORBIDDEN, 200, 200),
    "cohort:cohort_detail": row(
        LOGIN, FORBIDDEN, 200, 200, kwargs=lambda objects, user: {"cohort_id": objects["cohort"].pk}
    ),
    "cohort:participant_detail": row(
        LOGIN, FORBIDDEN, 200, 200, kwargs=lambda objects, user: {"participant_id": first_participant(objects, user)}
    ),
    "cohort:find_days": row(LOGIN, FORBIDDEN, 200, 200, query="?q=a+morning+run"),  # no index yet: the page says so
    "cohort:participant_minutes": row(
        LOGIN,
        FORBIDDEN,
        200,
        200,
        kwargs=lambda objects, user: {"participant_id": first_participant(objects, user)},
        query="?start=0&end=600",
    ),
    "evaluation:study_next": row(
        LOGIN, REDIRECT, FORBIDDEN, FORBIDDEN, kwargs=lambda objects, user: {"study_id": enrolled_study(objects, user)}
    ),
    "evaluation:assignment": row(
        LOGIN, 200, FORBIDDEN, FORBIDDEN, kwargs=lambda objects, user: {"assignment_id": own_assignment(objects, user)}
    ),
    "evaluation:assignment_chart": row(
        LOGIN, 200, FORBIDDEN, FORBIDDEN, kwargs=lambda objects, user: {"assignment_id": own_assignment(objects, user)}
    ),
    "evaluation:assignment_minutes": row(
        LOGIN,
        200,
        FORBIDDEN,
        FORBIDDEN,
        query="?start=0&end=600",
        kwargs=lambda objects, user: {"assignment_id": own_assignment(objects, user)},
    ),
    "evaluation:assignment_draft": row(
        LOGIN,
        400,
        FORBIDDEN,
        FORBIDDEN,
        method="post",  # allowed; an empty draft is refused
        kwargs=lambda objects, user: {"assignment_id": own_assignment(objects, user)},
    ),
    "evaluation:assignment_submit": row(
        LOGIN,
        REDIRECT,
        FORBIDDEN,
        FORBIDDEN,
        method="post",
        kwargs=lambda objects, user: {"assignment_id": own_assignment(objects, user)},
    ),
    "evaluation:assignment_skip": row(
        LOGIN,
        REDIRECT,
        FORBIDDEN,
        FORBIDDEN,
        method="post",
        kwargs=lambda objects, user: {"assignment_id": own_assignment(objects, user)},
    ),
    "evaluation:study_new": row(LOGIN, FORBIDDEN, 200, 200),
    "evaluation:study_detail": row(
        LOGIN, FORBIDDEN, 200, 200, kwargs=lambda objects, user: {"study_id": objects["study"].pk}
    ),
    "evaluation:study_status": row(
        LOGIN,
        FORBIDDEN,
        REDIRECT,
        REDIRECT,
        method="post",
        kwargs=lambda objects, user: {"study_id": owned_study(objects, user)},
    ),
    "evaluation:study_item_drop": row(
        LOGIN,
        FORBIDDEN,
        REDIRECT,
        REDIRECT,
        method="post",  # allowed; a missing note is refused
        kwargs=lambda objects, user: {
            "study_id": owned_study(objects, user),
            "item_id": objects["study"].items.first().pk,
        },
    ),
    "evaluation:study_item_regenerate": row(
        LOGIN,
        FORBIDDEN,
        REDIRECT,
        REDIRECT,
        method="post",  # allowed; an answered item is refused
        kwargs=lambda objects, user: {
            "study_id": owned_study(objects, user),
            "item_id": objects["study"].items.first().pk,
        },
    ),
    "evaluation:study_dashboard": row(
        LOGIN, FORBIDDEN, 200, 200, kwargs=lambda objects, user: {"study_id": objects["study"].pk}
    ),
    "evaluation:study_export": row(
        LOGIN, FORBIDDEN, 200, 200, kwargs=lambda objects, user: {"study_id": objects["study"].pk, "fmt": "csv"}
    ),
    "evaluation:data_dictionary": row(LOGIN, FORBIDDEN, 200, 200),
    "evaluation:webhooks": row(LOGIN, FORBIDDEN, 200, 200),
    "cohort:uploads_create": row(LOGIN, FORBIDDEN, 400, 400, method="post"),  # allowed; an empty body is refused
    "cohort:upload_detail": row(LOGIN, FORBIDDEN, 200, 200, kwargs=own_upload),
    "modeling:cohort_import": row(LOGIN, FORBIDDEN, 200, 200),
    "modeling:cohort_import_status": row(LOGIN, FORBIDDEN, 200, 200, kwargs=own_import_job),
    "evaluation:invitations": row(LOGIN, FORBIDDEN, 200, 200),
    # The link's page is public (its token is the key); an unknown token is refused alike for everyone.
    "invitation_accept": row(410, 410, 410, 410, kwargs={"token": "not-a-token"}),
    # Single sign-on is not configured in this matrix: not there for anyone (tests/test_browser_sso.py tests it on).
    "oidc_authentication_init": row(404, 404, 404, 404),
    "oidc_authentication_callback": row(404, 404, 404, 404),
    "evaluation:webhook_test": row(LOGIN, FORBIDDEN, REDIRECT, REDIRECT, method="post", kwargs=own_webhook),
    "evaluation:webhook_delete": row(LOGIN, FORBIDDEN, REDIRECT, REDIRECT, method="post", kwargs=own_webhook),
    "evaluation:webhook_delivery_retry": row(
        LOGIN, FORBIDDEN, REDIRECT, REDIRECT, method="post", kwargs=own_webhook_delivery
    ),
    "evaluation:study_protocol": row(
        LOGIN, FORBIDDEN, 200, 200, kwargs=lambda objects, user: {"study_id": objects["study"].pk}
    ),
    "evaluation:study_protocol_manifest": row(
        LOGIN,
        FORBIDDEN,
        404,
        404,
        kwargs=lambda objects, user: {"study_id": objects["study"].pk},  # none locked yet
    ),
    "evaluation:onboarding": row(
        LOGIN, 200, FORBIDDEN, FORBIDDEN, kwargs=lambda objects, user: {"study_id": enrolled_study(objects, user)}
    ),
    "evaluation:training_feedback": row(
        LOGIN,
        404,  # their own item, but not a training item: no feedback to show
        FORBIDDEN,
        FORBIDDEN,
        kwargs=lambda objects, user: {"assignment_id": own_assignment(objects, user)},
    ),
    "evaluation:study_item_reference": row(
        LOGIN,
        FORBIDDEN,
        200,
        200,
        kwargs=lambda objects, user: {"study_id": objects["study"].pk, "item_id": objects["study"].items.first().pk},
    ),
    "evaluation:study_rater_reinstate": row(
        LOGIN,
        FORBIDDEN,
        REDIRECT,
        REDIRECT,
        method="post",  # allowed; a rater who is not paused is refused with a message
        kwargs=lambda objects, user: {
            "study_id": owned_study(objects, user),
            "user_id": objects["study"].clinicians.first().pk,
        },
    ),
    "notifications": row(LOGIN, 200, 200, 200),
    "evaluation:study_criteria_import": row(
        LOGIN, FORBIDDEN, 200, 200, kwargs=lambda objects, user: {"study_id": objects["study"].pk}
    ),
    "evaluation:study_item_criterion_add": row(
        LOGIN,
        FORBIDDEN,
        REDIRECT,
        REDIRECT,
        method="post",  # allowed; the open study's criteria are refused with a message
        kwargs=lambda objects, user: {
            "study_id": owned_study(objects, user),
            "item_id": objects["study"].items.first().pk,
        },
    ),
    "evaluation:study_item_criterion_delete": row(
        LOGIN,
        FORBIDDEN,
        REDIRECT,
        REDIRECT,
        method="post",
        kwargs=lambda objects, user: {
            "study_id": owned_study(objects, user),
            "item_id": objects["study"].items.first().pk,
            "criterion_id": 1,
        },
    ),
    "evaluation:triage": row(LOGIN, 200, FORBIDDEN, FORBIDDEN),
    "evaluation:incident": row(LOGIN, 200, 200, 200, kwargs=an_incident),
    "evaluation:incident_chart": row(LOGIN, 200, 200, 200, kwargs=an_incident),
    "evaluation:incident_minutes": row(LOGIN, 200, 200, 200, kwargs=an_incident, query="?start=0&end=600"),
    "evaluation:study_adjudicators": row(
        LOGIN,
        FORBIDDEN,
        REDIRECT,
        REDIRECT,
        method="post",  # allowed; naming none is allowed too
        kwargs=lambda objects, user: {"study_id": owned_study(objects, user)},
    ),
    "evaluation:study_incident_log": row(
        LOGIN, FORBIDDEN, 200, 200, kwargs=lambda objects, user: {"study_id": objects["study"].pk, "fmt": "csv"}
    ),
    "modeling:job_new": row(LOGIN, FORBIDDEN, FORBIDDEN, 200, kwargs={"kind": "demo_training"}),
    "modeling:job_detail": row(LOGIN, FORBIDDEN, FORBIDDEN, 200, kwargs=lambda objects, user: {"job_id": a_job().pk}),
    "modeling:job_status": row(LOGIN, FORBIDDEN, FORBIDDEN, 200, kwargs=lambda objects, user: {"job_id": a_job().pk}),
    "modeling:job_cancel": row(
        LOGIN, FORBIDDEN, FORBIDDEN, REDIRECT, method="post", kwargs=lambda objects, user: {"job_id": a_job().pk}
    ),
    "modeling:job_retry": row(
        LOGIN, FORBIDDEN, FORBIDDEN, REDIRECT, method="post", kwargs=lambda objects, user: {"job_id": a_job().pk}
    ),
    "modeling:checkpoint_list": row(LOGIN, FORBIDDEN, FORBIDDEN, 200),
    "modeling:twin": row(LOGIN, FORBIDDEN, 200, 200),
    "modeling:twin_simulate": row(
        LOGIN, FORBIDDEN, REDIRECT, REDIRECT, method="post"
    ),  # allowed; an empty request is refused with a message
    "modeling:twin_status": row(
        LOGIN, FORBIDDEN, 200, 200, kwargs=lambda objects, user: {"job_id": a_simulation_job(user).pk}
    ),
    "api:studies": row(401, FORBIDDEN, 200, 200),
    "api:schema": row(200, 200, 200, 200),
    "api:items": row(401, FORBIDDEN, 200, 200, kwargs=lambda objects, user: {"study_id": objects["study"].pk}),
    "api:ratings": row(401, FORBIDDEN, 200, 200, kwargs=lambda objects, user: {"study_id": objects["study"].pk}),
    "api:skips": row(401, FORBIDDEN, 200, 200, kwargs=lambda objects, user: {"study_id": objects["study"].pk}),
    "api:reference": row(200, 200, 200, 200),
    "api:study_statistics": row(
        401, FORBIDDEN, 200, 200, kwargs=lambda objects, user: {"study_id": objects["study"].pk}
    ),
    # Writes need a token with the write scope: a signed-in session reads only (tests/evaluation/test_api_writes.py).
    "api:study_status": row(
        401,
        FORBIDDEN,
        FORBIDDEN,
        FORBIDDEN,
        method="post",
        kwargs=lambda objects, user: {"study_id": objects["study"].pk},
    ),
    "api:study_clinicians": row(
        401,
        FORBIDDEN,
        FORBIDDEN,
        FORBIDDEN,
        method="post",
        kwargs=lambda objects, user: {"study_id": objects["study"].pk},
    ),
    "api:jobs": row(401, FORBIDDEN, FORBIDDEN, FORBIDDEN, method="post"),
    "api:item_reference": row(
        401,
        FORBIDDEN,
        FORBIDDEN,
        FORBIDDEN,
        method="post",
        kwargs=lambda objects, user: {"study_id": objects["study"].pk, "item_id": objects["study"].items.first().pk},
    ),
    "api:criteria": row(401, FORBIDDEN, 200, 200, kwargs=lambda objects, user: {"study_id": objects["study"].pk}),
    "api:job": row(401, FORBIDDEN, 404, 200, kwargs=lambda objects, user: {"job_id": a_job().pk}),
}

# The Django admin is the admin role's alone: everyone else is sent to its login page.
DJANGO_ADMIN_URLS = (
    "admin:index",
    "admin:auth_user_changelist",
    "admin:auth_group_changelist",
    "admin:auth_user_add",
    "admin:healthagent_cohort_changelist",
    "admin:evaluation_rubric_changelist",
    "admin:evaluation_rubric_add",
    "admin:modeling_job_changelist",
)


def named_urls(patterns=None, namespace=""):
    for pattern in patterns if patterns is not None else get_resolver().url_patterns:
        if isinstance(pattern, URLResolver):
            inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
            yield from named_urls(pattern.url_patterns, inner)
        elif isinstance(pattern, URLPattern) and pattern.name:
            yield f"{namespace}{pattern.name}"


def test_every_named_url_has_a_row():
    site_urls = {name for name in named_urls() if not name.startswith("admin:")}
    assert site_urls - set(MATRIX) == set(), "add a row to MATRIX for each new URL"
    assert set(MATRIX) - site_urls == set(), "MATRIX names a URL that no longer exists"


def make_user(client, role):
    if role == "anonymous":
        return None
    user = UserFactory(role=role)
    client.force_login(user)
    return user


def request_as(client, role, url, method):
    make_user(client, role)
    return getattr(client, method)(url)


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("url_name", sorted(MATRIX))
def test_authorization_matrix(client, url_name, role, grounded_study):
    spec = MATRIX[url_name]
    user = make_user(client, role)
    objects = {"cohort": grounded_study.items.first().participant.cohort, "study": grounded_study}
    kwargs = spec["kwargs"](objects, user) if callable(spec["kwargs"]) else spec["kwargs"]
    url = reverse(url_name, kwargs=kwargs) + spec["query"]
    response = getattr(client, spec["method"])(url)
    expected = spec["expected"][role]
    if expected == LOGIN:
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login")), response["Location"]
    else:
        assert response.status_code == expected, f"{role} on {url}: {response.status_code}"


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("url_name", DJANGO_ADMIN_URLS)
def test_django_admin_is_for_admins_only(client, url_name, role):
    response = request_as(client, role, reverse(url_name), "get")
    if role == "admin":
        assert response.status_code == 200
    else:
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))


@pytest.mark.django_db
def test_home_sends_each_role_to_its_page(client):
    for role, page in (
        ("clinician", "evaluation:queue"),
        ("researcher", "evaluation:study_list"),
        ("admin", "modeling:job_list"),
    ):
        client.force_login(UserFactory(role=role))
        assert client.get(reverse("home"))["Location"] == reverse(page)


@pytest.mark.django_db
def test_user_without_a_role_is_told_so(client):
    client.force_login(UserFactory(role=None))
    response = client.get(reverse("home"))
    assert response.status_code == 403
    assert b"no role yet" in response.content


@pytest.mark.django_db
def test_navigation_shows_only_what_the_role_may_open(client):
    client.force_login(UserFactory(role="clinician"))
    page = client.get(reverse("evaluation:queue")).content.decode()
    assert reverse("evaluation:queue") in page
    for hidden in ("evaluation:study_list", "modeling:job_list", "system_status", "admin:index"):
        assert reverse(hidden) not in page
