"""The clinician's pages through the test client: blinding, ownership, the form round trip."""

import gzip
import json
import re

import pytest
from django.urls import reverse

from evaluation.assignment import assignment_next
from evaluation.models import Assignment, Rating
from healthagent.models import AgentVariant
from tests.factories import submit_led_to

pytestmark = pytest.mark.django_db


@pytest.fixture
def clinician_in_study(client, grounded_study):
    clinician = grounded_study.clinicians.order_by("pk").first()
    client.force_login(clinician)
    return clinician


def test_the_queue_shows_the_study_and_its_progress(client, clinician_in_study, grounded_study):
    page = client.get(reverse("evaluation:queue")).content.decode()
    assert grounded_study.name in page and "0 of 2 done" in page and "Rate next item" in page


def test_the_rating_page_is_blind(client, clinician_in_study, grounded_study):
    response = client.get(reverse("evaluation:study_next", args=[grounded_study.pk]), follow=True)
    page = response.content.decode()
    assert response.status_code == 200 and "Relevance" in page and "Context awareness" in page and "Safety" in page
    assignment = assignment_next(study=grounded_study, rater=clinician_in_study)
    for hidden in [
        *AgentVariant.objects.values_list("name", flat=True),
        assignment.item.participant.pseudonym,
        "grounded",
        "transformers",
    ]:
        assert hidden.lower() not in page.lower(), hidden
    assert assignment.item.answer_a.split(".")[0][3:30] in page  # the answer itself is there


def per_render_out(page: bytes) -> bytes:
    """A page without what each rendering mints afresh: the chart's sealed link and the masked CSRF token."""
    page = re.sub(rb"\?link=[A-Za-z0-9_-]+", b"?link=", page)
    return re.sub(rb'(csrfmiddlewaretoken" value=|"X-CSRFToken": )"[A-Za-z0-9]+"', rb"\1", page)


def test_submitting_the_form_saves_and_moves_on(client, clinician_in_study, grounded_study):
    assignment = assignment_next(study=grounded_study, rater=clinician_in_study)
    url = reverse("evaluation:assignment_submit", args=[assignment.pk])
    form = {
        "score-relevance": "4",
        "score-context": "3",
        "score-safety": "5",
        "comment": "Fine",
        "time_spent_s": "31.5",
    }
    response = client.post(url, form)
    following = Assignment.objects.get(rater=clinician_in_study, state="in_progress")
    assert following != assignment  # straight to the next item's page, handed out by the submit
    # The answer is the next item's page itself, named by its Content-Location (no redirect, no second request).
    assert response.status_code == 200 and response["Content-Location"] == reverse(
        "evaluation:assignment", args=[following.pk]
    )
    assert f'data-item-url="{response["Content-Location"]}"' in response.content.decode()  # rating.js's address
    # The page a GET of that address shows, but for what every rendering mints afresh (the chart's sealed link, the
    # masked CSRF token).
    assert per_render_out(response.content) == per_render_out(client.get(response["Content-Location"]).content)
    rating = Rating.objects.get(assignment=assignment)
    assert rating.scores == {"relevance": 4, "context": 3, "safety": 5}
    again = client.post(url, form)  # a double click, or a reload that posts again
    assert Rating.objects.get(assignment=assignment).revision == 1
    assert submit_led_to(again) == submit_led_to(response)  # the same next item, not a second one
    assert Assignment.objects.filter(rater=clinician_in_study).count() == 2
    for _ in range(grounded_study.items.count()):
        location = submit_led_to(client.post(reverse("evaluation:assignment_submit", args=[following.pk]), form))
        if location == reverse("evaluation:study_next", args=[grounded_study.pk]):
            break  # the queue is done: study_next says so
        following = Assignment.objects.get(rater=clinician_in_study, state="in_progress")
    assert not Assignment.objects.filter(rater=clinician_in_study, state="in_progress").exists()
    assert location == reverse("evaluation:study_next", args=[grounded_study.pk])


def test_an_incomplete_form_says_what_is_missing_and_loses_nothing(client, clinician_in_study, grounded_study):
    assignment = assignment_next(study=grounded_study, rater=clinician_in_study)
    response = client.post(
        reverse("evaluation:assignment_submit", args=[assignment.pk]),
        {"score-relevance": "4", "comment": "typed just before Enter"},
        follow=True,
    )
    page = response.content.decode()
    assert "Not saved: give a score for Context awareness." in page
    assert not Rating.objects.exists()
    # What was entered comes back on the page (kept as the draft), even if the autosave had not run yet.
    assert "typed just before Enter" in page
    assert re.findall(r'<input type="radio" name="(score-\w+)" value="(\w+)" data-key="\w+"\s*checked>', page) == [
        ("score-relevance", "4")
    ]


def test_drafts_autosave(client, clinician_in_study, grounded_study):
    assignment = assignment_next(study=grounded_study, rater=clinician_in_study)
    url = reverse("evaluation:assignment_draft", args=[assignment.pk])
    response = client.post(
        url, json.dumps({"scores": {"relevance": "2"}, "comment": "half way"}), content_type="application/json"
    )
    assert response.json() == {"saved": True}
    page = client.get(reverse("evaluation:assignment", args=[assignment.pk])).content.decode()
    assert "half way" in page
    checked = re.findall(r'<input type="radio" name="(score-\w+)" value="(\w+)" data-key="\w+"\s*checked>', page)
    assert checked == [("score-relevance", "2")]


def test_a_clinician_cannot_open_another_clinicians_item(client, grounded_study):
    first, second = list(grounded_study.clinicians.order_by("pk"))[:2]
    assignment = assignment_next(study=grounded_study, rater=first)
    client.force_login(second)
    for name in ("evaluation:assignment", "evaluation:assignment_minutes"):
        assert client.get(reverse(name, args=[assignment.pk]) + "?start=0&end=100").status_code == 404
    assert (
        client.post(reverse("evaluation:assignment_submit", args=[assignment.pk]), {"score-relevance": "1"}).status_code
        == 404
    )
    assert not Rating.objects.exists()


def test_the_chart_has_its_own_url_which_the_browser_may_cache(client, clinician_in_study, grounded_study):
    assignment = assignment_next(study=grounded_study, rater=clinician_in_study)
    page = client.get(reverse("evaluation:assignment", args=[assignment.pk])).content.decode()
    chart_url = reverse("evaluation:assignment_chart", args=[assignment.pk])
    # The page carries no chart data, only the chart's address (with its link: tests/evaluation/test_chart_links.py).
    assert f'data-minute-figure-url="{chart_url}?link=' in page and '"layout"' not in page
    chart = client.get(chart_url)
    figure = json.loads(chart.content)
    assert chart["Content-Type"] == "application/json" and len(figure["data"]) == 8
    assert (
        figure["layout"]["meta"]["end_minute"] - figure["layout"]["meta"]["start_minute"]
        == min(grounded_study.window_days, assignment.item.participant.minute_days) * 1440
    )
    assert "no-store" in chart["Cache-Control"]  # participant data stays out of the browser's disk cache
    assert assignment.item.participant.pseudonym not in chart["ETag"] + chart.content.decode()
    unchanged = client.get(chart_url, HTTP_IF_NONE_MATCH=chart["ETag"])
    assert unchanged.status_code == 304 and not unchanged.content
    # A browser taking gzip gets the same figure in a fraction of the bytes, under its own ETag.
    compressed = client.get(chart_url, HTTP_ACCEPT_ENCODING="gzip, deflate, br")
    assert (
        compressed["Content-Encoding"] == "gzip"
        and "Accept-Encoding" in compressed["Vary"]
        and "Accept-Encoding" in chart["Vary"]
    )
    body = compressed.content  # the figure's file as it is
    assert gzip.decompress(body) == chart.content and len(body) < len(chart.content) / 3
    assert compressed["Content-Disposition"] == 'inline; filename="chart.json"'  # not the file's telling name
    assert compressed["ETag"] != chart["ETag"]
    assert client.get(chart_url, HTTP_ACCEPT_ENCODING="gzip", HTTP_IF_NONE_MATCH=compressed["ETag"]).status_code == 304


def test_a_clinician_gets_no_chart_of_a_participant_outside_their_items(client, grounded_study):
    first, second = list(grounded_study.clinicians.order_by("pk"))[:2]
    assignment = assignment_next(study=grounded_study, rater=first)
    client.force_login(second)
    assert client.get(reverse("evaluation:assignment_chart", args=[assignment.pk])).status_code == 404


def test_a_clinician_not_enrolled_sees_nothing_of_the_study(client, grounded_study, clinician):
    client.force_login(clinician)
    assert grounded_study.name not in client.get(reverse("evaluation:queue")).content.decode()
    assert client.get(reverse("evaluation:study_next", args=[grounded_study.pk])).status_code == 404


def test_researchers_create_and_open_a_study_in_the_site(client, researcher, tiny_cohort, grounded_study):
    client.force_login(researcher)
    clinicians = list(grounded_study.clinicians.values_list("pk", flat=True))
    form = {
        "name": "Pairwise pilot",
        "mode": "pairwise",
        "rubric": grounded_study.rubric_id,
        "cohort": tiny_cohort.pk,
        "variants": list(
            AgentVariant.objects.filter(name__in=["grounded agent", "LLM only"]).values_list("pk", flat=True)
        ),
        "raters_per_item": 2,
        "clinicians": clinicians,
        "window_days": 7,
        "seed": 1,
        "instructions": "Compare.",
    }
    response = client.post(reverse("evaluation:study_new"), form)
    assert response.status_code == 302
    detail = client.get(response["Location"]).content.decode()
    assert "Pairwise pilot" in detail and "0 of 6" in detail and "Open the study" in detail
    study_id = int(response["Location"].rstrip("/").split("/")[-1])
    client.post(reverse("evaluation:study_status", args=[study_id]), {"status": "open"})
    assert "Close the study" in client.get(response["Location"]).content.decode()
    bad = client.post(reverse("evaluation:study_new"), {**form, "name": "Bad", "variants": form["variants"][:1]})
    assert "a pairwise study compares exactly two variants" in bad.content.decode()


def test_a_saved_rating_whose_next_page_fails_is_answered_with_a_redirect_to_it(
    client, clinician_in_study, grounded_study, monkeypatch, caplog
):
    """The rating is committed before the next item's page is made: if making it fails, the submit still says the
    rating was saved (a redirect to that page, whose own request says what went wrong), never a server error."""
    from evaluation import views

    assignment = assignment_next(study=grounded_study, rater=clinician_in_study)

    def broken(*args, **kwargs):
        raise RuntimeError("the participant's record could not be read")

    monkeypatch.setattr(views, "item_page_context", broken)
    response = client.post(
        reverse("evaluation:assignment_submit", args=[assignment.pk]),
        {"score-relevance": "4", "score-context": "3", "score-safety": "5"},
    )
    following = Assignment.objects.get(rater=clinician_in_study, state="in_progress")
    assert response.status_code == 302 and response["Location"] == reverse("evaluation:assignment", args=[following.pk])
    assert Rating.objects.get(assignment=assignment).scores == {"relevance": 4, "context": 3, "safety": 5}
    assert "could not answer the submit" in caplog.text


def test_rating_an_item_makes_a_bounded_number_of_queries(
    client, clinician_in_study, grounded_study, django_assert_max_num_queries
):
    """item page -> chart -> submit, the path every rated item takes (issue 27's bounds); the submit answers with
    the next item's page (the page's own request only for a clinician's first item). Every request reads its session from Redis (healthagent/sessions.py; from the database in the
    embedded profile: one query more) and the user with their roles in one query (roles.user_with_roles); a
    transaction's begin and end count as two."""
    from django.conf import settings
    from django.db import connection

    session = 1 if settings.SESSION_ENGINE == "django.contrib.sessions.backends.db" else 0
    # Every turn a main item: a gold turn is a seeded draw on the rater's id (5 % by default), which the database's
    # id sequences make differ from run to run, and takes the locked path (its lock, the open assignment, the count).
    type(grounded_study).objects.filter(pk=grounded_study.pk).update(gold_rate=0.0)
    grounded_study.refresh_from_db()
    client.get(reverse("evaluation:queue"))  # where a clinician comes from
    # The queue's first request: + the study, no open assignment, the standing and the study's item kinds (the
    # onboarding gate), the candidates, whether it is a gold or repeat turn; the item locked, its places, its answers
    # frozen (read, written), the assignment made
    with django_assert_max_num_queries(14 + session):
        location = client.get(reverse("evaluation:study_next", args=[grounded_study.pk]))["Location"]
    # The item page's session, then the assignment with its study, rubric, item and participant, the rater's progress
    # and the user with their roles and unread count (one statement, evaluation.access.access_assignment_as_session_user:
    # no query of its own for the user); the item's criteria (issue 22); the participant's record beside the answer, the first
    # time this web process shows that participant's window: one query each for its measurements, daily summaries and
    # events; the rubric's dimensions, the first time this web process shows that version of the rubric.
    with django_assert_max_num_queries(6 + session):
        assert client.get(location).status_code == 200
    # The chart: the same statement without the progress; the participant's events, the first time its figure's file
    # is built (a study's opening builds them all: evaluation.chart_jobs), read from the file after.
    with django_assert_max_num_queries(2 + session):
        assert client.get(location + "chart.json").status_code == 200
    # + in the transaction: the assignment locked (which is the access check), with the rater's standing, what the
    # next hand-out needs and the user with their roles (evaluation.access.access_turn_as_session_user: no query of
    # its own for the user); the rating, its revision and the assignment done (one statement on PostgreSQL,
    # evaluation.writes; the ORM's three elsewhere). Then the next item: the candidates; in a transaction the item
    # locked, its places, its answers frozen (read, written), the assignment. Then its page, the submit's answer: the
    # assignment read with its progress (the page's statement without the session's and the user's part, read
    # already); the participant's record, the first time this process shows that window (three, as above).
    writes = 1 if connection.vendor == "postgresql" else 3
    with django_assert_max_num_queries(3 + writes + 8 + 1 + 3 + session) as captured:  # PostgreSQL and Redis: 16
        response = client.post(
            location + "submit/", {"score-relevance": "4", "score-context": "3", "score-safety": "5"}
        )
    assert response.status_code == 200 and response["Content-Location"] != location
    assert response["Content-Location"].startswith("/evaluation/items/")
    # Each part within its own bound: the rating and the hand-out up to the new assignment's insert, then the page.
    sent = [query["sql"] for query in captured.captured_queries]
    made = max(n for n, sql in enumerate(sent) if sql.startswith('INSERT INTO "evaluation_assignment"'))
    page = [sql for sql in sent[made + 1 :] if not sql.startswith(("SAVEPOINT", "RELEASE SAVEPOINT"))]
    assert made + 1 <= 3 + writes + 8 + session and len(page) <= 1 + 3, sent


def test_the_clinician_is_told_when_items_wait_for_the_agent(client, clinician_in_study, grounded_study, tiny_cohort):
    from healthagent.models import Recommendation
    from modeling.jobs import job_queue

    Recommendation.objects.filter(participant__in=[item.participant for item in grounded_study.items.all()]).update(
        status="failed"
    )
    url = reverse("evaluation:study_next", args=[grounded_study.pk])
    assert (
        "still writing" not in client.get(url).content.decode()
    )  # failed, and no job is on its way: nothing to wait for
    job_queue(
        kind_name="generate_recommendations",
        config={"cohort": tiny_cohort.pk, "variants": [grounded_study.items.first().variant_a_id]},
    )
    assert "still writing the answers of 3 items" in client.get(url).content.decode()


def test_day_captions_show_on_the_rating_page_only_when_the_study_asks(client, clinician_in_study, grounded_study):
    url = reverse("evaluation:study_next", args=[grounded_study.pk])
    assert "The days in words" not in client.get(url, follow=True).content.decode()
    grounded_study.show_captions = True
    grounded_study.save(update_fields=["show_captions"])
    page = client.get(url, follow=True).content.decode()
    assignment = assignment_next(study=grounded_study, rater=clinician_in_study)
    captions = re.findall(r"<strong>Day (\d+)\.</strong> ([^<]+)</li>", page)
    assert [int(day) for day, _ in captions] == list(range(1, assignment.item.participant.minute_days + 1))
    assert all("Slept" in text or "No night sleep" in text for _, text in captions)  # the semantic level leads
    assert "Heart rate" in page and " mean " not in " ".join(
        text for _, text in captions
    )  # structural yes, statistical no
    assert assignment.item.participant.pseudonym not in page
