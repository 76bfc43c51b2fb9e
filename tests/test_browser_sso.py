"""Single sign-on against a real OpenID Connect provider (django-oidc-provider, served by gunicorn in a second
process on loopback), in Chromium: a clinician and a researcher signed in with their roles, a person without a mapped
role refused, logout; and, without the browser, the role mapping and the password switch."""

import io
import os
import subprocess
import sys
import time

import httpx
import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.core.management import call_command
from django.urls import reverse

from healthagent.models import AuditEntry, SingleSignOnIdentity
from healthagent.roles import Role, user_is_adjudicator, user_roles
from healthagent.sso import HospitalOIDCBackend, adjudicator_from_claims, role_map, roles_from_claims
from tests.conftest import free_port
from tests.factories import DEFAULT_PASSWORD, UserFactory
from tests.idp.people import CLIENT_ID, CLIENT_SECRET, PASSWORD

ROLES = "clinician=clinicians|doctors,researcher=research"


@pytest.fixture
def identity_provider(live_server, tmp_path, settings):
    """The provider up on a free port, the site configured for it from its discovery document."""
    port = free_port()
    site_url = f"http://localhost:{port}"
    env = {
        **os.environ,
        "IDP_SITE_URL": site_url,
        "IDP_DATABASE": str(tmp_path / "idp.sqlite3"),
        "DJANGO_SETTINGS_MODULE": "tests.idp.settings",
        "PYTHONPATH": str(django_settings.BASE_DIR),
    }
    env.pop("DATABASE_URL", None)
    subprocess.run(
        [sys.executable, "-m", "tests.idp.setup", f"{live_server.url}/sso/callback/"], env=env, check=True, timeout=120
    )
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            "1",
            "-t",
            "60",
            "tests.idp.wsgi:application",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    issuer = f"http://127.0.0.1:{port}/openid"
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(f"{issuer}/.well-known/openid-configuration", timeout=2).raise_for_status()
            break
        except httpx.HTTPError:
            assert time.monotonic() < deadline and server.poll() is None, "the identity provider did not start"
            time.sleep(0.2)
    printed = io.StringIO()
    call_command("oidc_discover", issuer, stdout=printed)  # what an operator would paste into the environment
    for line in printed.getvalue().splitlines():
        name, _, value = line.partition("=")
        setattr(settings, name, value.replace("127.0.0.1", "localhost"))  # the browser and the site: one host name
    settings.OIDC_RP_CLIENT_ID, settings.OIDC_RP_CLIENT_SECRET = CLIENT_ID, CLIENT_SECRET
    settings.OIDC_RP_SCOPES, settings.OIDC_ROLE_CLAIM, settings.OIDC_ROLES = (
        "openid email profile groups",
        "groups",
        ROLES,
    )
    settings.OIDC_PROVIDER_NAME = "Hospital SSO"
    settings.OIDC_ADJUDICATORS = "safety-board"
    settings.AUTHENTICATION_BACKENDS = ["healthagent.sso.HospitalOIDCBackend", *django_settings.PASSWORD_BACKENDS]
    yield site_url
    server.terminate()
    server.wait(timeout=30)


def sign_in_at_the_hospital(page, username):
    page.goto("/login/")
    page.get_by_role("link", name="Sign in with Hospital SSO").click()
    if page.get_by_label("Hospital user name").count():  # the provider's own session may already be there
        page.get_by_label("Hospital user name").fill(username)
        page.get_by_label("Hospital password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in at the hospital").click()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)  # the live server reads what the test writes
def test_people_sign_in_through_the_provider_with_their_mapped_role_and_log_out(identity_provider, page, live_server):
    assert identity_provider.startswith("http://localhost:")
    sign_in_at_the_hospital(page, "dr.sso")
    page.wait_for_url(f"{live_server.url}/evaluation/queue/")
    clinician = User.objects.get(sso_identity__subject__isnull=False, email="dr.sso@hospital.test")
    assert user_roles(clinician) == {Role.CLINICIAN} and not clinician.has_usable_password()
    assert (
        clinician.username == "dr.sso"
        and AuditEntry.objects.filter(action="user.created", object_id=str(clinician.pk)).exists()
    )
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(f"{live_server.url}/login/")
    assert page.get_by_role("link", name="Sign in with Hospital SSO").is_visible()
    sign_in_at_the_hospital(page, "dr.sso")  # again: the same account, not a second one
    page.wait_for_url(f"{live_server.url}/evaluation/queue/")
    assert User.objects.filter(email="dr.sso@hospital.test").count() == 1
    page.get_by_role("button", name="Log out").click()
    page.context.clear_cookies()  # a different person at the same browser

    sign_in_at_the_hospital(page, "prof.sso")
    page.wait_for_url(f"{live_server.url}/evaluation/studies/")
    assert user_roles(User.objects.get(username="prof.sso")) == {Role.RESEARCHER}
    page.get_by_role("button", name="Log out").click()
    page.context.clear_cookies()

    sign_in_at_the_hospital(page, "dr.board")  # on the hospital's safety board: a clinician with the flag
    page.wait_for_url(f"{live_server.url}/evaluation/queue/")
    board = User.objects.get(username="dr.board")
    assert user_roles(board) == {Role.CLINICIAN} and user_is_adjudicator(board) and not user_is_adjudicator(clinician)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_person_without_a_mapped_role_is_refused_and_no_account_is_made(identity_provider, page, live_server):
    sign_in_at_the_hospital(page, "visitor.sso")
    page.wait_for_url(f"{live_server.url}/login/")
    assert "holds none of the roles this site gives" in page.get_by_role("status").inner_text()
    assert not User.objects.filter(email="visitor.sso@hospital.test").exists()
    page.goto("/evaluation/queue/")
    page.wait_for_url(f"{live_server.url}/login/?next=/evaluation/queue/")


def test_the_role_map_gives_only_what_is_configured(settings):
    settings.OIDC_ROLE_CLAIM, settings.OIDC_ROLES = "roles", ROLES
    assert role_map(ROLES) == {Role.CLINICIAN: {"clinicians", "doctors"}, Role.RESEARCHER: {"research"}}
    assert roles_from_claims({"roles": ["doctors", "admin", "superuser"]}) == {Role.CLINICIAN}  # "admin" is not mapped
    assert roles_from_claims({"roles": "research clinicians"}) == {Role.CLINICIAN, Role.RESEARCHER}
    assert roles_from_claims({"groups": ["research"]}) == set()  # another claim than the configured one
    with pytest.raises(ValueError, match="'superuser', not one of"):
        role_map("superuser=it")


@pytest.mark.django_db
def test_roles_follow_the_claim_and_an_email_never_takes_over_a_local_account(settings, rf):
    settings.OIDC_ROLE_CLAIM, settings.OIDC_ROLES = "groups", ROLES + ",admin=it-admins"
    settings.OIDC_OP_TOKEN_ENDPOINT = settings.OIDC_OP_USER_ENDPOINT = "https://idp.test/x"
    settings.OIDC_OP_JWKS_ENDPOINT = "https://idp.test/jwks"
    local_admin = UserFactory(role=Role.ADMIN, email="boss@hospital.test")
    backend = HospitalOIDCBackend()
    claims = {
        "sub": "abc-1",
        "email": "boss@hospital.test",
        "groups": ["clinicians"],
        "preferred_username": local_admin.username,
    }
    assert not backend.filter_users_by_claims(claims).exists()  # same email, different person: not matched
    made = backend.create_user(claims)
    assert made != local_admin and made.username == f"{local_admin.username}-2"
    assert user_roles(made) == {Role.CLINICIAN} and SingleSignOnIdentity.objects.get(user=made).subject == "abc-1"
    assert list(backend.filter_users_by_claims(claims)) == [made]
    backend.update_user(made, {**claims, "groups": ["research", "it-admins"]})
    assert user_roles(made) == {Role.RESEARCHER, Role.ADMIN}
    assert AuditEntry.objects.filter(action="user.roles_changed", object_id=str(made.pk)).exists()
    backend.request = rf.get("/")
    from django.contrib.messages import get_messages
    from django.contrib.messages.storage.cookie import CookieStorage

    backend.request._messages = CookieStorage(backend.request)
    assert backend.verify_claims({**claims, "groups": ["visitors"]}) is False
    assert "holds none of the roles" in str(next(iter(get_messages(backend.request))))


@pytest.mark.django_db
def test_password_login_can_be_switched_off(client, settings):
    user = UserFactory(role=Role.CLINICIAN)
    settings.PASSWORD_LOGIN, settings.OIDC_RP_CLIENT_ID = False, "evaluation-site"
    page = client.get(reverse("login")).content.decode()
    assert 'type="password"' not in page and "Sign in with" in page
    refused = client.post(reverse("login"), {"username": user.username, "password": DEFAULT_PASSWORD}, follow=True)
    assert "Passwords are switched off here" in refused.content.decode() and "_auth_user_id" not in client.session
    settings.OIDC_RP_CLIENT_ID = ""
    assert client.get(reverse("oidc_authentication_init")).status_code == 404  # not configured: not there


@pytest.mark.django_db
def test_a_deactivated_person_s_single_sign_on_session_ends_at_their_next_request(client, settings):
    settings.AUTHENTICATION_BACKENDS = ["healthagent.sso.HospitalOIDCBackend"]
    person = UserFactory(role=Role.CLINICIAN)
    client.force_login(person, backend="healthagent.sso.HospitalOIDCBackend")
    assert client.get(reverse("evaluation:queue")).status_code == 200
    person.is_active = False  # an admin switches the account off: as the password backend does, the session ends
    person.save(update_fields=["is_active"])
    response = client.get(reverse("evaluation:queue"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


@pytest.mark.django_db
def test_the_adjudicator_flag_follows_the_claim_and_only_flagged_clinicians_adjudicate(settings, grounded_study):
    from evaluation.errors import EvaluationError
    from evaluation.triage import adjudicator_choices, study_adjudicators_set

    settings.OIDC_ROLE_CLAIM, settings.OIDC_ROLES, settings.OIDC_ADJUDICATORS = "groups", ROLES, "safety-board|m-and-m"
    settings.OIDC_RP_CLIENT_ID = "evaluation-site"
    settings.OIDC_OP_TOKEN_ENDPOINT = settings.OIDC_OP_USER_ENDPOINT = "https://idp.test/x"
    settings.OIDC_OP_JWKS_ENDPOINT = "https://idp.test/jwks"
    assert adjudicator_from_claims({"groups": "doctors m-and-m"}) and not adjudicator_from_claims({"groups": ["x"]})
    backend = HospitalOIDCBackend()
    claims = {"sub": "board-1", "email": "b@hospital.test", "groups": ["doctors", "safety-board"]}
    board = backend.create_user(claims)
    plain = backend.create_user({"sub": "plain-1", "email": "p@hospital.test", "groups": ["doctors"]})
    researcher = backend.create_user({"sub": "r-1", "email": "r@hospital.test", "groups": ["research", "safety-board"]})
    assert user_is_adjudicator(board) and not user_is_adjudicator(plain)
    assert not user_is_adjudicator(researcher)  # the flag is for clinicians

    admin = UserFactory(role=Role.ADMIN)
    assert list(adjudicator_choices(grounded_study)) == [board]
    with pytest.raises(EvaluationError, match="is not a safety adjudicator at"):
        study_adjudicators_set(study=grounded_study, users=[plain], by=admin)
    study_adjudicators_set(study=grounded_study, users=[board], by=admin)
    assert list(grounded_study.adjudicators.all()) == [board]

    from evaluation.triage import is_adjudicator, triage_queue

    assert is_adjudicator(user=board, study=grounded_study)
    backend.update_user(board, {**claims, "groups": ["doctors"]})  # taken off the board at the hospital
    assert not user_is_adjudicator(board)
    assert not is_adjudicator(user=board, study=grounded_study) and triage_queue(user=board) == ([], [])
    assert AuditEntry.objects.filter(action="user.roles_changed", object_id=str(board.pk)).count() == 2
    settings.OIDC_RP_CLIENT_ID = ""  # no single sign-on: any clinician who does not rate the study may adjudicate
    assert plain in adjudicator_choices(grounded_study)


def test_a_broken_single_sign_on_configuration_fails_the_system_check(settings):
    from healthagent.sso import sso_settings_check

    settings.OIDC_RP_CLIENT_ID, settings.OIDC_ROLES = "", ""
    assert sso_settings_check(None) == []  # off: nothing to check
    settings.OIDC_ROLES = "superuser=it"
    assert [problem.id for problem in sso_settings_check(None)] == ["healthagent.E101"]
    settings.OIDC_RP_CLIENT_ID, settings.OIDC_ROLES, settings.OIDC_OP_JWKS_ENDPOINT = "site", "", ""
    assert {problem.id for problem in sso_settings_check(None)} == {"healthagent.E102", "healthagent.E103"}
