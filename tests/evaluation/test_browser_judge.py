"""Issue 22's judge on the dashboard in Chromium: after a judge_study job graded a study over real HTTP (an
OpenAI-compatible server started by the test) and two clinicians rated part of it, the researcher reads the judge's
agreement beside the clinicians' own (the ceiling) and the prediction-powered estimates beside the clinician-only
and judge-only ones."""

import json

import numpy as np
import pytest

from evaluation.assignment import freeze_answers
from evaluation.models import Assignment, JudgeRun, Rubric
from evaluation.services import StudySpec, rating_submit, study_create, study_set_status
from healthagent.models import AgentVariant
from healthagent.roles import Role
from modeling.jobs import job_queue
from modeling.tasks import run_job
from tests.factories import DEFAULT_PASSWORD, UserFactory, ensure_reference_data, synthetic_cohort
from tests.healthagent.agent.test_backends import FakeChatServer
from tests.test_browser_login import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ITEMS, RATED = 34, 24


@pytest.fixture
def judged_study():
    from healthagent.agent.generate import cohort_generate

    ensure_reference_data()
    cohort = synthetic_cohort("Judged", participants=ITEMS, days=1, seed=8, history_days=30)
    grounded = AgentVariant.objects.get(name="grounded agent")
    cohort_generate(cohort=cohort, variants=[grounded])
    clinicians = [UserFactory(role=Role.CLINICIAN) for _ in range(2)]
    study = study_create(
        spec=StudySpec(
            name="Judged study",
            mode="absolute",
            rubric=Rubric.objects.get(name__endswith="(1-5)"),
            cohort=cohort,
            variants=[grounded],
            raters_per_item=2,
            clinicians=clinicians,
        ),
        user=UserFactory(role=Role.RESEARCHER),
    )
    study = study_set_status(study=study, status="open")
    # Ratings and the judge's run before the browser starts (its event loop shares this thread).
    rng = np.random.default_rng(0)
    truth = {item.pk: int(rng.integers(2, 6)) for item in study.items.all()}
    for item in study.items.order_by("position")[:RATED]:  # both clinicians rate the first 24, near their truth
        for clinician in clinicians:
            freeze_answers(item)
            assignment = Assignment.objects.create(study=study, item=item, rater=clinician)
            score = int(np.clip(truth[assignment.item_id] + rng.integers(-1, 2), 1, 5))
            rating_submit(
                assignment_id=assignment.pk,
                rater=clinician,
                scores={"relevance": score, "context": score, "safety": 5},
            )
    server = FakeChatServer()
    try:
        # The judge's reply for each item, in the order it grades them (by position): the truth plus one.
        for item in study.items.order_by("position"):
            grade = min(truth[item.pk] + 1, 5)
            server.script.append(("ok", json.dumps({"scores": {"relevance": grade, "context": grade, "safety": 5}})))
        job = job_queue(
            kind_name="judge_study",
            config={
                "study": study.pk,
                "backend": "openai_http",
                "base_url": server.url,
                "model": "hospital-judge",
                "max_new_tokens": 200,
                "timeout_s": 10,
            },
        )
        run_job.apply(kwargs={"job_id": job.pk}).get()
    finally:
        server.close()
    assert JudgeRun.objects.get().graded == ITEMS

    return study


def test_the_researcher_reads_the_judge_beside_the_clinicians_and_the_powered_estimates(
    judged_study, page, live_server
):
    study = judged_study
    log_in(page, study.created_by.username, DEFAULT_PASSWORD)
    page.goto(f"/evaluation/studies/{study.pk}/dashboard/")
    report = page.locator("[data-judge-report]")
    assert "hospital-judge" in report.inner_text() and f"{ITEMS} items graded" in report.inner_text()
    relevance = page.locator("[data-judge-agreement='relevance']").inner_text()
    kappa_judge, kappa_ceiling = (float(value) for value in relevance.split("\t")[1].split(" · "))
    assert -1 <= kappa_judge <= 1 and -1 <= kappa_ceiling <= 1  # both measured, side by side
    estimates = page.locator("[data-ppi='grounded agent/relevance']").inner_text()
    cells = estimates.split("\t")
    assert all("(" in cell for cell in cells[2:5]), cells  # clinicians only, judge only, prediction-powered: numbers
    assert cells[5].startswith(f"{RATED} ·")  # rated items, then the effective n
