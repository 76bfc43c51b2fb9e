"""The audit log: every administrative action leaves one entry (who, what, when, which object,
details) written in the action's own transaction, and no entry can be changed or deleted."""

from unittest import mock

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.urls import reverse

from evaluation.models import Study
from healthagent.models import AuditEntry, AuditLogError
from healthagent.roles import Role
from modeling.models import Job
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

Action = AuditEntry.Action
DEMO_TRAINING = {
    "task": "hypertension",
    "participants": 20,
    "days": 1,
    "steps": 2,
    "checkpoint_every": 1,
    "learning_rate": 0.003,
    "step_delay_s": 0,
    "seed": 0,
}


def only_entry(action):
    entries = list(AuditEntry.objects.filter(action=action))
    assert len(entries) == 1, entries
    return entries[0]


def test_jobs_queued_cancelled_and_retried_in_the_site_are_audited(client, admin_user):
    client.force_login(admin_user)
    response = client.post(reverse("modeling:job_new", args=["demo_training"]), DEMO_TRAINING)
    job = Job.objects.get()
    assert response.status_code == 302
    queued = only_entry(Action.JOB_QUEUED)
    assert (queued.actor, queued.actor_name, queued.object_type, queued.object_id) == (
        admin_user,
        admin_user.username,
        "modeling.job",
        str(job.pk),
    )
    assert queued.details["kind"] == "demo_training" and queued.details["config"]["steps"] == 2

    client.post(reverse("modeling:job_cancel", args=[job.pk]))
    assert only_entry(Action.JOB_CANCELLED).details == {"state": "cancelled"}
    client.post(reverse("modeling:job_retry", args=[job.pk]))
    retried = only_entry(Action.JOB_RETRIED)
    assert retried.details["retry_of"] == job.pk and retried.object_id == str(Job.objects.latest("pk").pk)


def test_a_refused_action_leaves_no_entry(client, admin_user):
    client.force_login(admin_user)
    client.post(reverse("modeling:job_new", args=["demo_training"]), {**DEMO_TRAINING, "steps": 0})
    job = Job.objects.create(kind="demo_training", config={}, state=Job.State.SUCCEEDED)
    client.post(reverse("modeling:job_cancel", args=[job.pk]))  # a finished job cannot be cancelled
    assert not AuditEntry.objects.exists()


def test_studies_created_opened_and_closed_are_audited(client, researcher, tiny_cohort):
    from healthagent.models import AgentVariant

    clinician = UserFactory(role=Role.CLINICIAN)
    client.force_login(researcher)
    form = {
        "name": "Audited",
        "mode": "absolute",
        "rubric": Study._meta.get_field("rubric").related_model.objects.first().pk,
        "cohort": tiny_cohort.pk,
        "variants": [AgentVariant.objects.get(name="grounded agent").pk],
        "raters_per_item": 1,
        "clinicians": [clinician.pk],
        "window_days": 7,
        "seed": 0,
    }
    assert client.post(reverse("evaluation:study_new"), form).status_code == 302
    study = Study.objects.get(name="Audited")
    for status in ("open", "closed"):  # closing asks first: the confirmation page posts "confirmed"
        client.post(reverse("evaluation:study_status", args=[study.pk]), {"status": status, "confirmed": "yes"})
    created, opened, closed = (
        only_entry(action) for action in (Action.STUDY_CREATED, Action.STUDY_OPENED, Action.STUDY_CLOSED)
    )
    assert {created.actor, opened.actor, closed.actor} == {researcher}
    assert created.details["clinicians"] == [clinician.username] and created.details["items"] == 3
    assert opened.created_at <= closed.created_at and closed.object_repr == "Audited"


def test_the_entry_is_written_in_the_action_s_transaction(
    grounded_study, admin_user, django_capture_on_commit_callbacks
):
    """If the entry cannot be written, the action does not happen either (and the other way round)."""
    from evaluation.services import study_set_status
    from modeling.jobs import job_queue

    with (
        mock.patch.object(AuditEntry.objects, "create", side_effect=RuntimeError("audit store down")),
        pytest.raises(RuntimeError),
    ):
        study_set_status(study=grounded_study, status="closed", user=admin_user)
    assert Study.objects.get(pk=grounded_study.pk).status == Study.Status.OPEN

    jobs_before = Job.objects.count()
    with (
        mock.patch("modeling.jobs._send") as send,
        mock.patch.object(AuditEntry.objects, "create", side_effect=RuntimeError("audit store down")),
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError, match="audit store down"),
    ):
        job_queue(kind_name="demo_training", config=DEMO_TRAINING, user=admin_user)
    assert Job.objects.count() == jobs_before and not send.called and callbacks == []

    with (
        mock.patch("modeling.jobs._send"),
        mock.patch("modeling.models.Job.objects.create", side_effect=RuntimeError("db down")),
        pytest.raises(RuntimeError),
    ):
        job_queue(kind_name="demo_training", config=DEMO_TRAINING, user=admin_user)
    assert not AuditEntry.objects.filter(action__startswith="job.").exists()


def test_create_user_and_cohort_imports_from_the_command_line_are_audited(monkeypatch):
    monkeypatch.setenv("NEW_PASSWORD", "correct-horse-battery-staple")
    call_command("create_user", "dr_audit", "--role", "researcher", "--password-env", "NEW_PASSWORD")
    created = only_entry(Action.USER_CREATED)
    assert (created.actor, created.actor_name, created.object_repr, created.details) == (
        None,
        "create_user command",
        "dr_audit",
        {"roles": ["researcher"]},
    )

    from tests.factories import ensure_reference_data

    ensure_reference_data()
    call_command(
        "import_cohort",
        "synthetic",
        "--name",
        "Audited cohort",
        "--participants",
        "2",
        "--days",
        "1",
        "--history-days",
        "10",
        "--k",
        "1",
        "--allow-k-below-minimum",
    )
    imported = only_entry(Action.COHORT_IMPORTED)
    assert (
        imported.actor_name == "import_cohort command"
        and imported.details["imported"] == 2
        and imported.object_repr == "Audited cohort"
    )


@pytest.mark.django_db(transaction=True)  # outside a test transaction: each admin view must open its own
def test_users_added_and_roles_changed_in_the_django_admin_are_audited(client):
    # A superuser: a flushed database's admin group has no model permissions (they come from a data migration).
    admin_user = UserFactory(role=Role.ADMIN, is_superuser=True)
    client.force_login(admin_user)
    response = client.post(
        reverse("admin:auth_user_add"),
        {
            "username": "dr_new",
            "password1": "correct-horse-battery-staple",
            "password2": "correct-horse-battery-staple",
            "usable_password": "true",
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    new_user = User.objects.get(username="dr_new")
    assert only_entry(Action.USER_CREATED).actor == admin_user

    researcher_group = Group.objects.get_or_create(name=Role.RESEARCHER)[0]
    form = {
        "username": "dr_new",
        "first_name": "",
        "last_name": "",
        "email": "",
        "is_active": "on",
        "groups": [researcher_group.pk],
        "last_login_0": "",
        "last_login_1": "",
        "date_joined_0": "2026-01-01",
        "date_joined_1": "10:00:00",
    }
    response = client.post(reverse("admin:auth_user_change", args=[new_user.pk]), form)
    assert response.status_code == 302, response.content.decode()[:3000]
    changed = only_entry(Action.USER_ROLES_CHANGED)
    assert (
        changed.actor == admin_user
        and changed.details["roles"] == ["researcher"]
        and "Groups" in changed.details["changed_fields"]
    )


@pytest.mark.django_db(transaction=True)  # outside a test transaction: the admin view must open its own
def test_passwords_changed_in_the_django_admin_are_audited(client):
    admin_user = UserFactory(role=Role.ADMIN, is_superuser=True)
    clinician = UserFactory(role=Role.CLINICIAN)
    client.force_login(admin_user)
    response = client.post(
        reverse("admin:auth_user_password_change", args=[clinician.pk]),
        {
            "password1": "another-correct-horse-battery",
            "password2": "another-correct-horse-battery",
            "usable_password": "true",
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    clinician.refresh_from_db()
    assert clinician.check_password("another-correct-horse-battery")
    changed = only_entry(Action.USER_CHANGED)
    assert (changed.actor, changed.object_id) == (admin_user, str(clinician.pk))


@pytest.mark.django_db(transaction=True)  # outside a test transaction: the admin action must open its own
def test_users_deleted_in_bulk_in_the_django_admin_are_audited(client):
    # A superuser: a flushed database's admin group has no model permissions (they come from a data migration).
    admin_user = UserFactory(role=Role.ADMIN, is_superuser=True)
    doomed = UserFactory(role=Role.CLINICIAN)
    client.force_login(admin_user)
    response = client.post(
        reverse("admin:auth_user_changelist"),
        {"action": "delete_selected", "_selected_action": [doomed.pk], "post": "yes"},
    )
    assert response.status_code == 302
    assert not User.objects.filter(pk=doomed.pk).exists()
    deleted = only_entry(Action.USER_DELETED)
    assert (deleted.actor, deleted.object_repr, deleted.object_id) == (admin_user, doomed.username, str(doomed.pk))


def test_entries_cannot_be_changed_or_deleted(client, admin_user, grounded_study):
    entry = AuditEntry.objects.filter(action=Action.STUDY_OPENED).get()
    entry.actor_name = "someone else"
    with pytest.raises(AuditLogError):
        entry.save()
    with pytest.raises(AuditLogError):
        entry.delete()
    with pytest.raises(AuditLogError):
        AuditEntry.objects.update(actor_name="someone else")
    with pytest.raises(AuditLogError):
        AuditEntry.objects.all().delete()
    client.force_login(admin_user)
    assert client.get(reverse("admin:healthagent_auditentry_changelist")).status_code == 200
    for url in (
        reverse("admin:healthagent_auditentry_add"),
        reverse("admin:healthagent_auditentry_delete", args=[entry.pk]),
    ):
        assert client.get(url).status_code == 403, url
    assert (
        client.post(reverse("admin:healthagent_auditentry_change", args=[entry.pk]), {"actor_name": "x"}).status_code
        == 403
    )
    assert AuditEntry.objects.get(pk=entry.pk).actor_name != "someone else"


def test_admins_read_the_log_in_the_site(client, admin_user, grounded_study):
    client.force_login(admin_user)
    page = client.get(reverse("audit_log")).content.decode()
    assert reverse("audit_log") in page  # the navigation links to it
    assert "Study opened" in page and "Study created" in page and grounded_study.name in page
    filtered = client.get(reverse("audit_log"), {"action": "study.opened"}).content.decode()
    assert "Study opened" in filtered and "<td>Study created</td>" not in filtered


def test_an_audited_admin_must_name_its_own_actions():
    from django.contrib import admin as django_admin

    from healthagent.admin import AuditedAdminMixin

    with pytest.raises(TypeError, match="audit_actions"):
        type("UnnamedAdmin", (AuditedAdminMixin, django_admin.ModelAdmin), {})
