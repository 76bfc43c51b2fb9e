"""In Chromium: every page works under the Content Security Policy (no violation, plotly charts
drawn), and text planted in comments, answers, imported metadata and study names never runs,
with the policy and without it (so escaping and the sanitizer hold on their own)."""

import pytest
from django.urls import reverse

from tests.factories import DEFAULT_PASSWORD, UserFactory
from tests.test_browser_login import log_in
from tests.xss_payloads import plant_payloads

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Recorded before any page script runs (init scripts are not subject to the page's policy).
RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", function (event) {
  window.__violations.push(event.violatedDirective + " " + event.blockedURI + " " + (event.sourceFile || "") + ":" + event.lineNumber);
});
"""


def watched(page):
    """Record CSP violations, console errors and dialogs of every page this tab opens."""
    page.add_init_script(RECORD_VIOLATIONS)
    problems = {"console": [], "dialogs": []}
    page.on("console", lambda message: problems["console"].append(message.text) if message.type == "error" else None)
    page.on("dialog", lambda dialog: (problems["dialogs"].append(dialog.message), dialog.dismiss()))
    return problems


def visit(page, url, *, chart: bool = False) -> list[str]:
    response = page.goto(url)
    assert response.status < 400, (url, response.status)
    if chart:
        page.wait_for_selector(".js-plotly-plot .main-svg", timeout=20_000)
    page.wait_for_load_state("networkidle")
    return page.evaluate("window.__violations")


def log_in_as(page, live_server, user):
    page.context.clear_cookies()
    log_in(page, user.username, DEFAULT_PASSWORD)
    page.wait_for_url(lambda url: "/login/" not in url)


def test_every_page_runs_under_the_content_security_policy(grounded_study, page, live_server):
    from modeling.models import Job

    problems = watched(page)
    response = page.goto("/login/")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-eval" not in policy and "frame-ancestors 'none'" in policy

    clinician = grounded_study.clinicians.order_by("pk").first()
    log_in_as(page, live_server, clinician)
    assert visit(page, reverse("evaluation:queue")) == []
    page.goto(reverse("evaluation:study_next", args=[grounded_study.pk]))
    page.wait_for_selector("[data-rating-form][data-ready='true']")  # rating.js ran
    assert visit(page, page.url, chart=True) == []

    log_in_as(page, live_server, UserFactory(role="researcher"))
    participant = grounded_study.items.first().participant
    for url, chart in (
        (reverse("evaluation:study_list"), False),
        (reverse("evaluation:study_detail", args=[grounded_study.pk]), False),
        (reverse("evaluation:study_new"), False),
        (reverse("evaluation:study_dashboard", args=[grounded_study.pk]), False),
        (reverse("cohort:cohort_list"), False),
        (reverse("cohort:cohort_detail", args=[participant.cohort_id]), False),  # with its anonymity report
        (reverse("cohort:participant_detail", args=[participant.pk]), True),
        (reverse("account"), False),  # API tokens
    ):
        assert visit(page, url, chart=chart) == [], url

    log_in_as(page, live_server, UserFactory(role="admin"))
    job = Job.objects.create(
        kind="demo_training", config={}, state="succeeded", curve=[{"step": 1, "loss": 1.0}, {"step": 2, "loss": 0.5}]
    )
    for url, chart in (
        (reverse("modeling:job_list"), False),
        (reverse("modeling:job_detail", args=[job.pk]), True),
        (reverse("modeling:job_new", args=["demo_training"]), False),
        (reverse("system_status"), False),
        (reverse("audit_log"), False),
        (reverse("admin:index"), False),
    ):
        assert visit(page, url, chart=chart) == [], url
    assert [text for text in problems["console"] if "Content Security Policy" in text] == []
    assert problems["dialogs"] == []


@pytest.fixture
def planted(grounded_study):
    """Planted before the browser starts: rating_submit's on-commit event cannot run inside Playwright's loop."""
    return plant_payloads(grounded_study)


@pytest.mark.parametrize("policy", ["with the policy", "without the policy"])
def test_planted_payloads_never_run(grounded_study, planted, settings, page, live_server, policy):
    if policy == "without the policy":
        settings.CONTENT_SECURITY_POLICY = None
    pages = planted
    problems = watched(page)
    assert ("content-security-policy" in page.goto("/login/").headers) is (policy == "with the policy")
    clinician = grounded_study.clinicians.order_by("pk").first()
    for role, urls in pages.items():
        log_in_as(page, live_server, clinician if role == "clinician" else UserFactory(role=role))
        for url in urls:
            page.goto(url)
            page.wait_for_load_state("networkidle")
            if page.locator("[data-chart]").count():
                page.wait_for_selector(
                    ".js-plotly-plot .main-svg", timeout=20_000
                )  # chart labels carry planted text too
            assert page.evaluate("window.__xss") is None, (policy, url)
            assert page.evaluate("window.__violations") == [], (policy, url)  # nothing planted even tried to run
    assert problems["dialogs"] == []
