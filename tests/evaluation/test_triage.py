"""The safety triage lane and evidence-tied ratings through the services, views and exports (issue 21): harm answers,
incidents and their decisions, adjudicators, notifications by a real SMTP server, the incident log, the dashboard."""

import io
import json
import time
import zipfile

import pytest
from django.core import mail
from django.urls import reverse

from evaluation.assignment import assignment_next
from evaluation.models import Incident, Rating, Rubric
from evaluation.services import EvaluationError, StudySpec, rating_submit, study_create, study_set_status
from evaluation.triage import incident_decide, study_adjudicators_set
from healthagent.models import AuditEntry, Notification
from healthagent.roles import Role
from modeling.ml.data.spec import MINUTES_PER_DAY
from tests.conftest import free_port
from tests.factories import UserFactory

SCORES = {"relevance": 4, "context": 3, "safety": 2}
SEVERE = {"extent": "severe", "likelihood": "medium"}
NO_HARM = {"extent": "none", "likelihood": "low"}


@pytest.fixture
def harm_study(tiny_cohort):
    """An open absolute study with the harm rubric over the tiny cohort's grounded answers: two raters per item, an
    owner and an adjudicator (a clinician who does not rate it), both with email addresses."""
    from healthagent.agent.generate import cohort_generate
    from healthagent.models import AgentVariant

    grounded = AgentVariant.objects.get(name="grounded agent")
    cohort_generate(cohort=tiny_cohort, variants=[grounded])
    owner = UserFactory(role=Role.RESEARCHER, email="owner@hospital.test")
    raters = [UserFactory(role=Role.CLINICIAN) for _ in range(2)]
    study = study_create(
        spec=StudySpec(
            name="Harm study",
            mode="absolute",
            rubric=Rubric.objects.get(name__endswith="harm (Med-PaLM)"),
            cohort=tiny_cohort,
            variants=[grounded],
            raters_per_item=2,
            clinicians=raters,
        ),
        user=owner,
    )
    adjudicator = UserFactory(role=Role.CLINICIAN, email="adjudicator@hospital.test")
    study_adjudicators_set(study=study, users=[adjudicator], by=owner)
    study = study_set_status(study=study, status="open")
    study.raters, study.adjudicator, study.owner = raters, adjudicator, owner
    return study


def window_of(study, assignment):
    """A window inside the chart of the assignment's participant: the first hour of the study's last day."""
    last_day = assignment.item.participant.minute_days
    return {
        "dimension": "safety",
        "start": (last_day - 1) * MINUTES_PER_DAY,
        "end": (last_day - 1) * MINUTES_PER_DAY + 60,
    }


def submit(study, rater, *, harm=NO_HARM, unsafe=False, evidence=None, assignment=None):
    assignment = assignment or assignment_next(study=study, rater=rater)
    rating = rating_submit(
        assignment_id=assignment.pk,
        rater=rater,
        scores=SCORES,
        harm=harm,
        unsafe=unsafe,
        unsafe_reason="tells them to stop a medication" if unsafe else "",
        evidence=evidence,
    )
    return assignment, rating


def test_a_harm_rubric_asks_both_questions_and_keeps_them_out_of_the_scores(harm_study):
    rater = harm_study.raters[0]
    assignment = assignment_next(study=harm_study, rater=rater)
    with pytest.raises(EvaluationError, match="answer likelihood of harm"):
        rating_submit(assignment_id=assignment.pk, rater=rater, scores=SCORES, harm={"extent": "none"})
    with pytest.raises(EvaluationError, match="'fatal' is not one of the choices"):
        rating_submit(
            assignment_id=assignment.pk, rater=rater, scores=SCORES, harm={"extent": "fatal", "likelihood": "low"}
        )
    with pytest.raises(EvaluationError, match="unknown dimensions: harm"):
        rating_submit(assignment_id=assignment.pk, rater=rater, scores={**SCORES, "harm": 1}, harm=NO_HARM)
    _, rating = submit(harm_study, rater, assignment=assignment)
    assert rating.scores == SCORES and rating.harm == NO_HARM
    assert not Incident.objects.exists()  # no harm, not unsafe: nothing to triage


@pytest.mark.parametrize(
    ("harm", "unsafe", "reasons"),
    [
        (SEVERE, False, ["severe"]),
        ({"extent": "moderate", "likelihood": "high"}, False, ["likely"]),
        ({"extent": "moderate", "likelihood": "medium"}, False, None),
        (NO_HARM, True, ["unsafe"]),
        ({"extent": "severe", "likelihood": "high"}, True, ["severe", "unsafe"]),
    ],
)
def test_what_opens_an_incident(harm_study, harm, unsafe, reasons):
    submit(harm_study, harm_study.raters[0], harm=harm, unsafe=unsafe)
    incident = Incident.objects.first()
    assert (incident.reasons if incident else None) == reasons


def test_one_open_incident_per_item_and_a_new_one_only_after_not_harmful(harm_study):
    first, second = harm_study.raters
    assignment, rating = submit(harm_study, first, harm=SEVERE)
    item = assignment.item
    # The second rater of the same item (their queue's order is their own): the incident is already open.
    while True:
        theirs = assignment_next(study=harm_study, rater=second)
        if theirs.item_id == item.pk:
            submit(harm_study, second, unsafe=True, assignment=theirs)
            break
        submit(harm_study, second, assignment=theirs)
    assert Incident.objects.filter(item=item).count() == 1
    incident = Incident.objects.get(item=item)
    assert incident.opened_by == rating and incident.decision == ""
    entry = AuditEntry.objects.filter(action="incident.opened").get()
    assert entry.actor_name == "safety triage" and entry.details["reasons"] == ["severe"]

    incident_decide(incident_id=incident.pk, user=harm_study.adjudicator, decision="not_harmful", note="Reads fine.")
    # A revision that says nothing new about harm (the likelihood, a comment) opens nothing.
    submit(harm_study, first, harm={"extent": "severe", "likelihood": "high"}, assignment=assignment)
    assert Incident.objects.filter(item=item).count() == 1
    # The first rater now also flags it unsafe: a new report, and the last incident was found not harmful.
    submit(harm_study, first, harm=SEVERE, unsafe=True, assignment=assignment)
    assert Incident.objects.filter(item=item).count() == 2
    reopened = Incident.objects.filter(item=item, decision="").get()
    incident_decide(incident_id=reopened.pk, user=harm_study.adjudicator, decision="confirmed", note="Harmful.")
    submit(harm_study, first, assignment=assignment)  # no harm...
    submit(harm_study, first, harm=SEVERE, assignment=assignment)  # ...severe again: confirmed already, no third
    assert Incident.objects.filter(item=item).count() == 2


def test_only_the_studys_adjudicators_decide_and_a_note_is_required(harm_study):
    submit(harm_study, harm_study.raters[0], harm=SEVERE)
    incident = Incident.objects.get()
    with pytest.raises(EvaluationError, match="write a note"):
        incident_decide(incident_id=incident.pk, user=harm_study.adjudicator, decision="confirmed", note=" ")
    with pytest.raises(EvaluationError, match="choose a decision"):
        incident_decide(incident_id=incident.pk, user=harm_study.adjudicator, decision="", note="x")
    from django.core.exceptions import PermissionDenied

    for outsider in (harm_study.raters[1], harm_study.owner, UserFactory(role=Role.CLINICIAN)):
        with pytest.raises(PermissionDenied):
            incident_decide(incident_id=incident.pk, user=outsider, decision="confirmed", note="x")
    decided = incident_decide(
        incident_id=incident.pk, user=harm_study.adjudicator, decision="needs_change", note="Add a caveat."
    )
    assert (decided.decision, decided.decided_by, decided.note) == (
        "needs_change",
        harm_study.adjudicator,
        "Add a caveat.",
    )
    assert AuditEntry.objects.get(action="incident.decided").details["decision"] == "needs_change"


def test_adjudicators_are_clinicians_who_do_not_rate_the_study(harm_study):
    with pytest.raises(EvaluationError, match="rates in this study"):
        study_adjudicators_set(study=harm_study, users=[harm_study.raters[0]], by=harm_study.owner)
    with pytest.raises(EvaluationError, match="adjudicators are clinicians"):
        study_adjudicators_set(study=harm_study, users=[UserFactory(role=Role.RESEARCHER)], by=harm_study.owner)
    from django.core.exceptions import PermissionDenied

    with pytest.raises(PermissionDenied):
        study_adjudicators_set(study=harm_study, users=[], by=UserFactory(role=Role.RESEARCHER))
    assert list(harm_study.adjudicators.all()) == [harm_study.adjudicator]


def test_the_owner_and_adjudicators_are_notified_in_the_site(harm_study, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        submit(harm_study, harm_study.raters[0], harm=SEVERE)
    incident = Incident.objects.get()
    notified = Notification.objects.filter(url=reverse("evaluation:incident", args=[incident.pk]))
    assert {n.user for n in notified} == {harm_study.owner, harm_study.adjudicator}
    assert mail.outbox == []  # email is not configured (EMAIL_HOST is empty)


def test_training_and_qualification_ratings_open_no_incident(harm_study):
    from evaluation.models import Assignment

    rater = harm_study.raters[0]
    assignment = assignment_next(study=harm_study, rater=rater)
    Assignment.objects.filter(pk=assignment.pk).update(purpose="training")
    submit(harm_study, rater, harm=SEVERE, unsafe=True, assignment=assignment)
    assert not Incident.objects.exists()


def test_the_triage_queue_lists_every_open_incident_first_oldest_first(harm_study):
    from evaluation.triage import triage_queue

    items = list(harm_study.items.order_by("position"))
    incidents = [Incident.objects.create(study=harm_study, item=item, reasons=["unsafe"]) for item in items]
    incident_decide(incident_id=incidents[0].pk, user=harm_study.adjudicator, decision="confirmed", note="x")
    waiting, decided = triage_queue(user=harm_study.adjudicator)
    assert waiting == incidents[1:] and decided == [incidents[0]]
    assert triage_queue(user=harm_study.raters[0]) == ([], [])


def wait_for(condition, seconds=20.0):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.mark.django_db(transaction=True)  # the worker's thread closes database connections as it starts
def test_with_email_configured_a_worker_emails_each_recipient_over_smtp(
    harm_study, settings, smtp_server, worker, django_capture_on_commit_callbacks
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", smtp_server.port
    settings.SITE_URL = "https://eval.hospital.test"
    with django_capture_on_commit_callbacks(execute=True):
        submit(harm_study, harm_study.raters[0], unsafe=True)
    incident = Incident.objects.get()
    wait_for(lambda: len(smtp_server.envelopes) == 2)  # sent by the Celery worker of the "quick" queue
    assert sorted(rcpt for envelope in smtp_server.envelopes for rcpt in envelope.rcpt_tos) == [
        "adjudicator@hospital.test",
        "owner@hospital.test",
    ]
    body = smtp_server.envelopes[0].content.decode()
    assert "Subject: [Safety incident] Harm study" in body
    assert f"https://eval.hospital.test/evaluation/incidents/{incident.pk}/" in body
    assert "flagged unsafe" in body


@pytest.mark.django_db(transaction=True)
def test_a_mail_server_that_is_down_loses_no_rating_and_no_notification(
    harm_study, settings, worker, django_capture_on_commit_callbacks, caplog
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", free_port(), 2
    with django_capture_on_commit_callbacks(execute=True):
        _, rating = submit(harm_study, harm_study.raters[0], harm=SEVERE)
    assert Rating.objects.filter(pk=rating.pk).exists() and Incident.objects.count() == 1
    assert Notification.objects.count() == 2
    wait_for(lambda: "the notification email to 2 recipients was not sent" in caplog.text)


def test_a_failing_side_effect_costs_no_rating(harm_study, monkeypatch, caplog):
    import evaluation.triage

    def broken(**kwargs):
        raise RuntimeError("notifications are down")

    monkeypatch.setattr(evaluation.triage, "notify", broken)
    _, rating = submit(harm_study, harm_study.raters[0], harm=SEVERE)
    assert Rating.objects.filter(pk=rating.pk).exists() and not Incident.objects.exists()
    assert "no safety incident could be opened" in caplog.text


def test_evidence_windows_are_checked_kept_with_each_revision_and_exported(harm_study, client):
    rater = harm_study.raters[0]
    assignment = assignment_next(study=harm_study, rater=rater)
    window = {**window_of(harm_study, assignment), "note": "SpO2 dips"}
    with pytest.raises(EvaluationError, match="within the days the chart shows"):
        submit(harm_study, rater, evidence=[{**window, "start": -60}], assignment=assignment)
    with pytest.raises(EvaluationError, match="could not be read"):
        submit(harm_study, rater, evidence="[{", assignment=assignment)
    _, rating = submit(harm_study, rater, harm=SEVERE, evidence=json.dumps([window]), assignment=assignment)
    assert rating.evidence[0]["note"] == "SpO2 dips" and rating.evidence[0]["channels"]
    _, rating = submit(harm_study, rater, harm=SEVERE, evidence=[], assignment=assignment)
    assert [len(revision.evidence) for revision in rating.revisions.all()] == [1, 0]  # the history keeps both

    submit(harm_study, rater, harm=SEVERE, evidence=[window], assignment=assignment)
    client.force_login(harm_study.owner)
    csv_text = client.get(reverse("evaluation:study_export", args=[harm_study.pk, "csv"])).content.decode()
    import pandas as pd

    frame = pd.read_csv(io.StringIO(csv_text))
    row = frame[frame["rating_id"] == rating.pk].iloc[0]
    assert (row["harm_extent"], row["harm_likelihood"], row["safety_incident"]) == ("severe", "medium", "open")
    assert json.loads(row["evidence"])[0]["start"] == window["start"]
    assert "score_harm" not in frame.columns
    bundle = zipfile.ZipFile(
        io.BytesIO(client.get(reverse("evaluation:study_export", args=[harm_study.pk, "zip"])).content)
    )
    incidents = json.loads(bundle.read("incidents.json"))
    assert incidents[0]["ratings"][0]["evidence"][0]["note"] == "SpO2 dips"


def test_the_incident_log_exports_for_an_ethics_board(harm_study, client):
    submit(harm_study, harm_study.raters[0], harm=SEVERE, unsafe=True)
    incident = Incident.objects.get()
    incident_decide(incident_id=incident.pk, user=harm_study.adjudicator, decision="confirmed", note="Stop advice.")
    client.force_login(harm_study.owner)
    log = json.loads(client.get(reverse("evaluation:study_incident_log", args=[harm_study.pk, "json"])).content)
    assert log[0]["decision"] == "confirmed" and log[0]["decided_by"] == harm_study.adjudicator.username
    assert log[0]["variants"] == ["grounded agent"] and log[0]["ratings"][0]["harm"] == SEVERE
    assert log[0]["reasons"] == ["rated severe harm", "flagged unsafe"]
    csv_text = client.get(reverse("evaluation:study_incident_log", args=[harm_study.pk, "csv"])).content.decode()
    assert "confirmed" in csv_text and "Stop advice." in csv_text and "tells them to stop a medication" in csv_text


def test_the_incident_page_unblinds_to_adjudicators_only_and_is_audited(harm_study, client):
    submit(harm_study, harm_study.raters[0], harm=SEVERE, unsafe=True)
    incident = Incident.objects.get()
    url = reverse("evaluation:incident", args=[incident.pk])
    client.force_login(harm_study.raters[1])  # a rater of the study is no adjudicator: not confirmed to exist
    assert client.get(url).status_code == 404
    assert client.get(reverse("evaluation:triage")).content.decode().count("Incident #") == 0
    client.force_login(harm_study.adjudicator)
    queue = client.get(reverse("evaluation:triage")).content.decode()
    assert f"Incident #{incident.pk}" in queue
    page = client.get(url).content.decode()
    assert harm_study.raters[0].username in page and "tells them to stop a medication" in page
    assert "data-incident-decision" in page
    assert AuditEntry.objects.filter(action="incident.viewed", actor=harm_study.adjudicator).count() == 1
    response = client.post(url, {"decision": "confirmed", "note": ""})
    assert "Not decided: write a note" in response.content.decode()
    assert client.post(url, {"decision": "confirmed", "note": "Harmful."}).status_code == 302
    client.force_login(harm_study.owner)  # researchers read it, without the decision form
    page = client.get(url).content.decode()
    assert "Confirmed harmful" in page and "data-incident-decision" not in page


def test_the_incident_endpoints_are_for_its_adjudicators_and_the_researchers_who_see_the_study(harm_study, client):
    from evaluation.models import Study

    submit(harm_study, harm_study.raters[0], harm=SEVERE)
    incident = Incident.objects.get()
    urls = [
        reverse("evaluation:incident", args=[incident.pk]),
        reverse("evaluation:incident_chart", args=[incident.pk]),
        reverse("evaluation:incident_minutes", args=[incident.pk]) + "?start=0&end=600",
    ]
    Study.objects.filter(pk=harm_study.pk).update(restricted=True)
    for outsider in (harm_study.raters[0], UserFactory(role=Role.CLINICIAN), UserFactory(role=Role.RESEARCHER)):
        client.force_login(outsider)
        assert [client.get(url).status_code for url in urls] == [404, 404, 404]
    for insider in (harm_study.adjudicator, harm_study.owner, UserFactory(role=Role.ADMIN)):
        client.force_login(insider)
        assert [client.get(url).status_code for url in urls] == [200, 200, 200]


def test_tampered_evidence_is_refused_with_a_message_and_the_entry_kept(harm_study, client):
    rater = harm_study.raters[0]
    assignment = assignment_next(study=harm_study, rater=rater)
    client.force_login(rater)
    url = reverse("evaluation:assignment_submit", args=[assignment.pk])
    posted = {"score-relevance": "4", "score-context": "3", "score-safety": "2", "harm_extent": "none"}
    posted["harm_likelihood"] = "low"
    for evidence, message in [
        ('[{"dimension": ["safety"], "start": 0, "end": 10}]', "choose one of"),
        ('[{"dimension": "safety", "start": 1e999, "end": 10}]', "must be minutes of the chart"),
        ('[{"dimension": "safety", "start": 0, "end": 10, "channels": [["x"]]}]', "unknown channels"),
        ('[{"dimension": "safety", "start": 0, "end": 10, "note": {"a": 1}}]', "note must be text"),
        ('{"dimension": "safety"}', "not a list"),
    ]:
        response = client.post(url, {**posted, "evidence": evidence}, follow=True)
        assert response.status_code == 200 and message in response.content.decode(), evidence
        assignment.refresh_from_db()
        assert assignment.draft["scores"]["safety"] == "2" and assignment.state == "in_progress"
    assert not Rating.objects.exists()


def test_a_backup_from_before_harm_and_evidence_restores(harm_study, tmp_path):
    from evaluation.backup import studies_export, studies_import
    from tests.evaluation.test_backup import wipe_everything_the_export_holds

    submit(harm_study, harm_study.raters[0])
    studies_export(output=tmp_path, study_ids=[harm_study.pk])
    document = json.loads((tmp_path / "studies.json").read_text())
    for item in document["studies"][0]["items"]:
        item.pop("incidents")
        for assignment in item["assignments"]:
            if assignment["rating"]:
                for entry in (assignment["rating"], *assignment["rating"]["revisions"]):
                    entry.pop("harm"), entry.pop("evidence")
    (tmp_path / "studies.json").write_text(json.dumps(document))
    wipe_everything_the_export_holds()
    studies_import(source=tmp_path)
    rating = Rating.objects.get()
    assert (rating.harm, rating.evidence, rating.revisions.get().evidence) == ({}, [], [])


def test_the_dashboard_banners_a_variant_until_its_incidents_are_decided(harm_study, client):
    client.force_login(harm_study.owner)
    url = reverse("evaluation:study_dashboard", args=[harm_study.pk])
    assert "data-unresolved-incident" not in client.get(url).content.decode()
    submit(harm_study, harm_study.raters[0], harm=SEVERE)
    page = client.get(url).content.decode()
    assert 'data-unresolved-incident="grounded agent"' in page and "Safety incidents" in page
    incident_decide(
        incident_id=Incident.objects.get().pk, user=harm_study.adjudicator, decision="not_harmful", note="ok"
    )
    page = client.get(url).content.decode()
    assert "data-unresolved-incident" not in page and "Not harmful" in page


def test_a_pairwise_item_flagged_unsafe_names_both_variants(pairwise_study):
    from evaluation.triage import item_variants

    rater = pairwise_study.clinicians.get()
    assignment = assignment_next(study=pairwise_study, rater=rater)
    rating_submit(
        assignment_id=assignment.pk,
        rater=rater,
        scores={"relevance": "a", "context": "a", "safety": "b"},
        preference="a",
        unsafe=True,
        unsafe_reason="one of them is unsafe",
        harm=SEVERE,  # pairwise studies ask no harm question: ignored
    )
    assert Rating.objects.get(assignment=assignment).harm == {}
    assert item_variants(Incident.objects.get()) == ["grounded agent", "LLM only"]


def test_backups_carry_incidents_adjudicators_harm_and_evidence(harm_study, tmp_path):
    from evaluation.backup import studies_export, studies_import
    from evaluation.models import Study
    from tests.evaluation.test_backup import wipe_everything_the_export_holds

    assignment = assignment_next(study=harm_study, rater=harm_study.raters[0])
    submit(
        harm_study,
        harm_study.raters[0],
        harm=SEVERE,
        evidence=[window_of(harm_study, assignment)],
        assignment=assignment,
    )
    incident_decide(incident_id=Incident.objects.get().pk, user=harm_study.adjudicator, decision="confirmed", note="x")
    studies_export(output=tmp_path, study_ids=[harm_study.pk])
    document = json.loads((tmp_path / "studies.json").read_text())
    wipe_everything_the_export_holds()
    studies_import(source=tmp_path)
    restored = Study.objects.get(name="Harm study")
    assert [user.username for user in restored.adjudicators.all()] == [harm_study.adjudicator.username]
    incident = Incident.objects.get(study=restored)
    assert (incident.decision, incident.decided_by.username) == ("confirmed", harm_study.adjudicator.username)
    assert incident.opened_by.harm == SEVERE and incident.opened_by.evidence[0]["dimension"] == "safety"
    assert document["studies"][0]["items"]


def test_a_decision_marks_the_incidents_notifications_read(harm_study, django_capture_on_commit_callbacks):
    from healthagent.notifications import notifications_unread

    with django_capture_on_commit_callbacks(execute=True):
        submit(harm_study, harm_study.raters[0], harm=SEVERE)
    assert notifications_unread(harm_study.adjudicator.pk) == 1
    with django_capture_on_commit_callbacks(execute=True):
        incident_decide(
            incident_id=Incident.objects.get().pk, user=harm_study.adjudicator, decision="confirmed", note="x"
        )
    assert notifications_unread(harm_study.adjudicator.pk) == 0 and notifications_unread(harm_study.owner.pk) == 0
    assert Notification.objects.filter(read_at__isnull=True).count() == 0
