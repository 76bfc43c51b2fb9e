"""The clinician's write endpoints under hostile input (Hypothesis, issue 23): the draft autosave and the rating
submit. Whatever a client sends (JSON of any shape, NaN and infinities, NUL characters, nesting thousands deep,
over-long text, numbers that are not numbers), the answer is a refusal that says what is wrong or a save, never a
server error; a refused draft leaves the stored one as it was, and nothing stored holds what a database or a
dashboard cannot keep. On PostgreSQL, which refuses NUL characters and non-finite JSON numbers."""

import json
import math
from urllib.parse import urlencode

import pytest
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evaluation.assignment import assignment_next
from evaluation.models import HARM_QUESTIONS, Assignment, Rating

pytestmark = pytest.mark.django_db

EXAMPLES = settings(
    max_examples=120,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
HOSTILE_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["\x00", "a\x00b", "=1+1", "nan", "NaN", "inf", "-inf", "1e999", "-1e309", "9" * 400, ""]),
    st.integers(5_001, 30_000).map(lambda n: "x" * n),  # longer than any field keeps
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20) | st.just("\x00"),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=25,
)
DEEP = st.integers(17, 200_000).map(lambda depth: "[" * depth + "]" * depth)


@pytest.fixture
def own_assignment(client, grounded_study) -> Assignment:
    clinician = grounded_study.clinicians.order_by("pk").first()
    client.force_login(clinician)
    return assignment_next(study=grounded_study, rater=clinician)


def assert_storable(value) -> None:
    """What was stored is JSON PostgreSQL keeps and a dashboard can add up: no NUL, only finite numbers."""
    text = json.dumps(value, allow_nan=False)
    assert "\\u0000" not in text


@EXAMPLES
@given(
    body=st.one_of(
        JSON_VALUES.map(json.dumps),  # json.dumps writes NaN and Infinity, which json.loads reads back
        st.binary(max_size=200),
        DEEP,
        st.dictionaries(st.sampled_from(["scores", "comment", "evidence"]), HOSTILE_TEXT).map(json.dumps),
    )
)
def test_the_draft_endpoint_saves_a_draft_or_says_why_not(client, own_assignment, body):
    url = reverse("evaluation:assignment_draft", args=[own_assignment.pk])
    before = Assignment.objects.get(pk=own_assignment.pk).draft
    response = client.post(url, body, content_type="application/json")
    assert response.status_code in (200, 400), response.content[:200]
    stored = Assignment.objects.get(pk=own_assignment.pk).draft
    if response.status_code == 400:
        assert response.json()["error"].startswith("the draft is not valid")
        assert stored == before
    else:
        assert response.json() == {"saved": True} and isinstance(stored, dict)
        assert_storable(stored)


FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "score-relevance": HOSTILE_TEXT | st.sampled_from(["1", "3", "5"]),
        "score-context": HOSTILE_TEXT | st.sampled_from(["1", "3", "5"]),
        "score-safety": HOSTILE_TEXT | st.sampled_from(["1", "3", "5"]),
        "score-unknown": HOSTILE_TEXT,
        "comment": HOSTILE_TEXT,
        "unsafe": st.sampled_from(["on", "off", "\x00"]),
        "unsafe_reason": HOSTILE_TEXT,
        **{f"harm_{key}": HOSTILE_TEXT | st.sampled_from(["none", "low"]) for key in HARM_QUESTIONS},
        "evidence": HOSTILE_TEXT | JSON_VALUES.map(json.dumps) | DEEP,
        "time_spent_s": HOSTILE_TEXT | st.sampled_from(["12.5", "nan", "inf", "-inf", "1e999"]),
        "preference": HOSTILE_TEXT,
        "criterion-1": HOSTILE_TEXT,
    },
)


@EXAMPLES
@given(fields=FIELDS, as_browser=st.booleans())
def test_the_rating_submit_saves_or_says_why_never_a_server_error(client, own_assignment, fields, as_browser):
    url = reverse("evaluation:assignment_submit", args=[own_assignment.pk])
    revisions = Rating.objects.filter(assignment=own_assignment).values_list("revision", flat=True).first()
    if as_browser:  # a form as a browser posts it (url-encoded); else multipart, as a script might
        response = client.post(url, urlencode(fields), content_type="application/x-www-form-urlencoded")
    else:
        response = client.post(url, fields)
    # 200: saved, answered with the next item's page (named by its Content-Location, not this item's); 302: refused
    # with a message on the page it redirects to (or saved, the queue's page next); 400: a field holds a NUL character,
    # or the body is over the upload limit.
    assert response.status_code in (200, 302, 400), response.content[:200]
    if response.status_code == 200:
        assert response["Content-Location"].startswith("/evaluation/items/")
        assert response["Content-Location"] != reverse("evaluation:assignment", args=[own_assignment.pk])
    rating = Rating.objects.filter(assignment=own_assignment).first()
    assert rating is not None or response.status_code != 200  # the next item's page only after a saved rating
    if response.status_code == 400:
        # A NUL character, or a body over the upload limit (a deep evidence list url-encoded: "[" is sent as "%5B").
        assert b"NUL character" in response.content or b"larger than the limit" in response.content
        assert (rating and rating.revision) == revisions  # nothing new was saved
    if rating is not None:
        assert_storable([rating.scores, rating.harm, rating.evidence, rating.comment, rating.unsafe_reason])
        assert len(rating.comment) <= 5000 and len(rating.unsafe_reason) <= 500
    assignment = Assignment.objects.get(pk=own_assignment.pk)
    assert math.isfinite(assignment.time_spent_s)
    assert_storable(assignment.draft)
