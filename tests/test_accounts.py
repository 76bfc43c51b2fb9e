from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from healthagent.roles import Role, user_roles


@pytest.mark.django_db
def test_create_user_command_gives_exactly_one_role(monkeypatch):
    monkeypatch.setenv("NEW_PASSWORD", "correct-horse-battery-staple")
    call_command("create_user", "dr_lee", "--role", "clinician", "--password-env", "NEW_PASSWORD")
    user = User.objects.get(username="dr_lee")
    assert user_roles(user) == {Role.CLINICIAN}
    assert user.check_password("correct-horse-battery-staple")
    assert not user.is_staff


@pytest.mark.django_db
def test_admin_role_can_use_the_django_admin(monkeypatch):
    monkeypatch.setenv("NEW_PASSWORD", "correct-horse-battery-staple")
    call_command("create_user", "ops", "--role", "admin", "--password-env", "NEW_PASSWORD")
    user = User.objects.get(username="ops")
    assert user.is_staff and user.has_perm("auth.change_user")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("password", "message"),
    [("short", "too short"), ("password123", "too common")],
)
def test_create_user_rejects_weak_passwords_and_writes_nothing(monkeypatch, password, message):
    monkeypatch.setenv("NEW_PASSWORD", password)
    with pytest.raises(CommandError, match=message):
        call_command("create_user", "dr_weak", "--role", "researcher", "--password-env", "NEW_PASSWORD")
    assert not User.objects.filter(username="dr_weak").exists()


@pytest.mark.django_db
def test_create_user_refuses_a_duplicate(monkeypatch, clinician):
    monkeypatch.setenv("NEW_PASSWORD", "correct-horse-battery-staple")
    with pytest.raises(CommandError, match="already exists"):
        call_command("create_user", clinician.username, "--role", "admin", "--password-env", "NEW_PASSWORD")
    clinician.refresh_from_db()
    assert user_roles(clinician) == {Role.CLINICIAN}


@pytest.mark.django_db
def test_demo_setup_is_idempotent_and_prints_the_accounts(capsys):
    call_command("demo_setup")
    call_command("demo_setup")
    printed = capsys.readouterr().out
    for username in ("clinician", "clinician2", "adjudicator", "researcher", "admin"):
        assert User.objects.filter(username=username).count() == 1
        assert f"{username} / {username}-demo" in printed
    from evaluation.models import Study
    from healthagent.models import Cohort
    from modeling.models import Job

    assert (
        Job.objects.filter(kind="generate_recommendations").count() == 3
    )  # one per language-model variant and the grounded answers again, not repeated
    assert Job.objects.filter(kind="lsm_pretrain").count() == 1
    # the fresh pre-training predicts nothing: the committed model's predictions stay on the participant pages
    assert Job.objects.get(kind="lsm_pretrain").config.get("predict_cohort") is None
    assert Job.objects.get(kind="lsm_predict").config["cohort"] == Cohort.objects.get(name="Demo cohort").pk
    # The two rating studies, and one that walks a clinician through consent, training, qualification and gold items.
    assert Study.objects.filter(status="open").count() == 3
    assert Study.objects.filter(status="open", show_captions=True).count() == 2
    onboarding = Study.objects.get(name="Demo: onboarding, training and qualification")
    assert onboarding.consent_text and onboarding.background_fields
    kinds = sorted(onboarding.items.exclude(kind="results").values_list("kind", flat=True))
    rated = Study.objects.get(name="Demo: rate the agent's answers")
    assert rated.protocol.locked_at is not None and rated.protocol.power["curve"]  # pre-registered before it opened
    # One safety incident waits in the adjudicator's triage queue, opened by the second rater's severe harm rating.
    from evaluation.models import Incident

    incident = Incident.objects.get()
    assert incident.study == rated and incident.decision == "" and incident.reasons == ["severe", "unsafe"]
    assert incident.opened_by.evidence and list(rated.adjudicators.values_list("username", flat=True)) == [
        "adjudicator"
    ]
    assert rated.rubric.dimensions.filter(scale="harm").exists()
    assert all(item.criteria.count() == 4 for item in rated.items.all())  # HealthBench-style criteria (issue 22)
    assert Job.objects.get(kind="judge_study").config["study"] == rated.pk  # queued once, however often run
    assert kinds == ["gold", "gold", "qualification", "qualification", "qualification", "training", "training"]
    Study.objects.filter(mode="pairwise").update(show_captions=False)  # a researcher turns the captions off
    call_command("demo_setup")
    assert Study.objects.filter(show_captions=True).count() == 1  # a third run leaves that choice alone
    assert Job.objects.filter(kind="sensorlm_train").count() == 1
    assert Job.objects.get(kind="sensorlm_train").config["index_cohort"] == Cohort.objects.get(name="Demo cohort").pk


@pytest.mark.django_db
def test_the_demo_models_copy_follows_the_committed_files_and_keeps_what_the_site_wrote_beside_them(settings, tmp_path):
    from healthagent.management.commands.demo_setup import DEMO_WEIGHTS_DIR, demo_checkpoints_register
    from modeling.models import Checkpoint

    settings.VAR_DIR = tmp_path
    first = demo_checkpoints_register()
    copy = Path(first["twin"].path)
    committed = (DEMO_WEIGHTS_DIR / "twin" / "config.json").read_bytes()
    assert (copy / "config.json").read_bytes() == committed
    (copy / "config.json").write_text('{"stale": "a copy made before the twin was recalibrated"}')
    (copy / "day_index.npz").write_bytes(b"the site's own")
    again = demo_checkpoints_register()
    assert (copy / "config.json").read_bytes() == committed  # replaced by what the repository holds now
    assert (copy / "day_index.npz").read_bytes() == b"the site's own"  # what the site wrote stays
    assert not list(copy.glob(".*.partial"))
    assert again["twin"].pk == first["twin"].pk and Checkpoint.objects.filter(family="twin").count() == 1
