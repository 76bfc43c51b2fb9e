"""Invitations in bulk: the list checked row by row (a bad one invites nobody), emails through a real SMTP server
by a real worker, the one-time link followed in Chromium, expiry and single use."""

import email
import re
import time
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from healthagent.invitations import InvitationError, invitation_accept, invitation_rows_parse, invitations_send
from healthagent.models import AuditEntry, Invitation
from healthagent.roles import Role, user_roles
from tests.factories import DEFAULT_PASSWORD, UserFactory
from tests.test_browser_login import log_in

STRONG = "a-long-Passphrase-7"


def no_study(key: str) -> int:
    raise InvitationError(f"no open study {key!r} that you may enrol people in")


def parse(text: str, *, by=None, role="clinician", study="", resolve=no_study):
    return invitation_rows_parse(
        text=text,
        default_role=role,
        default_study=study,
        invited_by=by or UserFactory(role=Role.RESEARCHER),
        resolve_study=resolve,
    )


def wait_for(condition, seconds=20.0):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.mark.django_db
def test_a_list_is_read_with_or_without_a_header_and_every_bad_row_is_named():
    rows = parse("Ann@Hospital.test\nbob@hospital.test,clinician,Dr Bob\n")
    assert [(row.email, row.role, row.display_name) for row in rows] == [
        ("ann@hospital.test", "clinician", ""),
        ("bob@hospital.test", "clinician", "Dr Bob"),
    ]
    rows = parse("email,display_name,study\ncid@hospital.test,Dr Cid,Pilot\n", resolve=lambda key: 42)
    assert rows[0].study_id == 42 and rows[0].display_name == "Dr Cid"
    with pytest.raises(InvitationError) as refused:
        parse(
            "ok@hospital.test\nnot-an-address\nok@hospital.test\nx@hospital.test,nurse\ny@hospital.test,admin\n"
            "z@hospital.test,clinician,,Missing study"
        )
    message = str(refused.value)
    for expected in (
        "row 2: not-an-address is not an email address",
        "row 3: ok@hospital.test is on the list twice",
        "row 4: 'nurse' is not a role",
        "row 5: only admins may invite a admin",
        "row 6: no open study 'Missing study'",
    ):
        assert expected in message
    assert "row 1" not in message
    with pytest.raises(InvitationError, match="unknown columns: phone"):
        parse("email,phone\na@hospital.test,123\n")
    with pytest.raises(InvitationError, match="only clinicians are enrolled"):
        parse("a@hospital.test,researcher,,7", by=UserFactory(role=Role.ADMIN), resolve=lambda key: 7)
    with pytest.raises(InvitationError, match="the list is empty"):
        parse("\n \n")


@pytest.mark.django_db
def test_the_page_invites_nobody_from_a_bad_file_and_names_the_row(client, grounded_study, mailoutbox):
    client.force_login(grounded_study.created_by)
    from django.core.files.uploadedfile import SimpleUploadedFile

    bad = SimpleUploadedFile("people.csv", b"email,role\nann@hospital.test,clinician\nbob@,clinician\n")
    response = client.post(reverse("evaluation:invitations"), {"file": bad, "role": "clinician", "study": ""})
    assert response.status_code == 400 and "row 3: bob@ is not an email address" in response.content.decode()
    assert not Invitation.objects.exists() and mailoutbox == []
    binary = SimpleUploadedFile("people.csv", "email\nzoë@hospital.test\n".encode("utf-16"))
    response = client.post(reverse("evaluation:invitations"), {"file": binary, "role": "clinician"})
    assert "not UTF-8 text" in response.content.decode() and not Invitation.objects.exists()

    good = SimpleUploadedFile("people.csv", f"email,study\nann@hospital.test,{grounded_study.name}\n".encode())
    response = client.post(reverse("evaluation:invitations"), {"file": good, "role": "clinician"})
    assert response.status_code == 302
    invitation = Invitation.objects.get()
    assert (invitation.email, invitation.role, invitation.study_id) == (
        "ann@hospital.test",
        "clinician",
        grounded_study.pk,
    )
    assert AuditEntry.objects.filter(action="invitations.sent").exists()
    page = client.get(reverse("evaluation:invitations")).content.decode()
    assert "ann@hospital.test" in page and "waiting, until" in page


@pytest.fixture
def links(monkeypatch):
    """The links the invitation emails would carry (the email itself is tested over SMTP below)."""
    import healthagent.invitations

    sent = []
    monkeypatch.setattr(healthagent.invitations, "_email", lambda *, invitation, link: sent.append(link))
    return sent


def token_of(link: str) -> str:
    return link.rstrip("/").rsplit("/", 1)[1]


@pytest.mark.django_db
def test_a_link_works_once_until_it_expires(links, django_capture_on_commit_callbacks):
    owner = UserFactory(role=Role.RESEARCHER)
    with django_capture_on_commit_callbacks(execute=True):
        invitations_send(
            rows=parse("ann@hospital.test\nbob@hospital.test", by=owner), invited_by=owner, base_url="https://e.test/"
        )
    assert [link.rsplit("/", 2)[0] for link in links] == ["https://e.test/invitations"] * 2
    ann, bob = (token_of(link) for link in links)
    assert not Invitation.objects.filter(token_hash__in=[ann, bob]).exists()  # only hashes are stored
    with pytest.raises(InvitationError, match="not valid"):
        invitation_accept(token="x" * 43, username="bob", password=STRONG)
    with pytest.raises(InvitationError, match="too short"):
        invitation_accept(token=bob, username="bob", password="123")
    assert not Invitation.objects.get(email="bob@hospital.test").accepted_at  # a refused attempt leaves the link
    user, said = invitation_accept(token=bob, username="bob", password=STRONG)
    assert user_roles(user) == {Role.CLINICIAN} and user.email == "bob@hospital.test" and said == []
    with pytest.raises(InvitationError, match="used already"):
        invitation_accept(token=bob, username="bob2", password=STRONG)
    Invitation.objects.filter(email="ann@hospital.test").update(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(InvitationError, match="expired"):
        invitation_accept(token=ann, username="ann", password=STRONG)


@pytest.mark.django_db
def test_the_link_page_refuses_a_spent_link_with_410_and_asks_a_signed_in_visitor_to_sign_out(
    client, links, django_capture_on_commit_callbacks
):
    owner = UserFactory(role=Role.ADMIN)
    with django_capture_on_commit_callbacks(execute=True):
        invitations_send(rows=parse("new.admin@hospital.test,admin", by=owner), invited_by=owner, base_url="http://x/")
    url = reverse("invitation_accept", args=[token_of(links[0])])
    client.force_login(owner)
    assert "sign out first" in client.get(url).content.decode()
    client.logout()
    page = client.get(url)
    assert page.status_code == 200 and 'value="new.admin"' in page.content.decode()
    made = client.post(url, {"username": "new.admin", "password": STRONG, "password_again": STRONG})
    assert made.status_code == 302
    assert user_roles(Invitation.objects.get().user) == {Role.ADMIN}
    client.logout()
    assert client.get(url).status_code == 410
    assert client.get(reverse("invitation_accept", args=["nothing"])).status_code == 410


@pytest.mark.django_db
def test_with_passwords_switched_off_a_link_makes_no_password_account(
    client, settings, links, django_capture_on_commit_callbacks
):
    owner = UserFactory(role=Role.RESEARCHER)
    with django_capture_on_commit_callbacks(execute=True):
        invitations_send(rows=parse("x@hospital.test", by=owner), invited_by=owner, base_url="http://x/")
    settings.PASSWORD_LOGIN = False
    url = reverse("invitation_accept", args=[token_of(links[0])])
    page = client.post(url, {"username": "x", "password": STRONG, "password_again": STRONG})
    assert page.status_code == 410 and "passwords are switched off" in page.content.decode().lower()
    assert not Invitation.objects.get().accepted_at


@pytest.mark.browser
@pytest.mark.services
@pytest.mark.django_db(transaction=True)  # the worker and the live server have their own connections
def test_a_clinician_follows_the_emailed_link_in_the_browser_and_lands_enrolled(
    grounded_study, settings, smtp_server, worker, page, live_server
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", smtp_server.port
    settings.SITE_URL = live_server.url
    owner = grounded_study.created_by
    log_in(page, owner.username, DEFAULT_PASSWORD)
    page.wait_for_url(f"{live_server.url}/evaluation/studies/")
    page.goto("/evaluation/invitations/")
    page.get_by_label("People").fill("dr.new@hospital.test,clinician,Dr New")
    page.get_by_label("Enrol in (where a line names none)").select_option(label=grounded_study.name)
    page.get_by_role("button", name="Send the invitations").click()
    page.get_by_text("1 invitation sent.").wait_for()
    page.get_by_role("button", name="Log out").click()

    wait_for(lambda: len(smtp_server.envelopes) == 1)  # sent by the worker of the "quick" queue, over SMTP
    envelope = smtp_server.envelopes[0]
    assert envelope.rcpt_tos == ["dr.new@hospital.test"]
    body = email.message_from_bytes(envelope.content).get_payload(decode=True).decode()
    link = re.search(r"https?://\S+/invitations/\S+/", body).group(0)

    page.goto(link)
    assert page.get_by_role("textbox", name="User name").input_value() == "dr.new"
    page.get_by_label("Password", exact=True).fill(STRONG)
    page.get_by_label("The password again").fill(STRONG + "x")
    page.get_by_role("button", name="Make my account").click()
    page.get_by_text("The two passwords differ.").wait_for()
    assert page.get_by_role("textbox", name="User name").input_value() == "dr.new"  # nothing typed is lost
    page.get_by_label("Password", exact=True).fill(STRONG)
    page.get_by_label("The password again").fill(STRONG)
    page.get_by_role("button", name="Make my account").click()
    page.wait_for_url(f"{live_server.url}/evaluation/queue/")
    page.get_by_text(f"You are enrolled in the study {grounded_study.name}.").wait_for()
    assert page.get_by_text(grounded_study.name).first.is_visible()

    from django.contrib.auth.models import User

    user = User.objects.get(username="dr.new")
    assert user.first_name == "Dr New" and grounded_study.clinicians.filter(pk=user.pk).exists()
    page.get_by_role("button", name="Log out").click()
    page.goto(link)  # the second time, the link is spent
    assert "used already" in page.get_by_role("alert").inner_text()
