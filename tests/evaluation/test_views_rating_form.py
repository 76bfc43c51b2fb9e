"""The rating form's limits through the test client: what the page promises is what the server takes."""

import pytest
from django.urls import reverse

from evaluation.assignment import assignment_next
from evaluation.models import Rating
from tests.factories import submit_led_to

pytestmark = pytest.mark.django_db

SCORES = {"score-relevance": "4", "score-context": "3", "score-safety": "5"}


@pytest.fixture
def assignment(client, grounded_study):
    clinician = grounded_study.clinicians.order_by("pk").first()
    client.force_login(clinician)
    return assignment_next(study=grounded_study, rater=clinician)


def test_a_comment_at_the_pages_limit_with_line_breaks_is_accepted(client, assignment):
    # The page counts a line break as one character (maxlength), the browser posts it as CRLF.
    comment = "\r\n".join(["x" * 499] * 10) + "x"  # 5,000 characters as typed (9 line breaks), 5,009 as posted
    response = client.post(
        reverse("evaluation:assignment_submit", args=[assignment.pk]), {**SCORES, "comment": comment}
    )
    assert submit_led_to(response) != reverse(
        "evaluation:assignment", args=[assignment.pk]
    )  # saved: on to the next item, not back to this one's form
    assert Rating.objects.get(assignment=assignment).comment == comment.replace("\r\n", "\n")


def test_a_refused_submit_too_big_for_a_draft_says_so(client, assignment):
    response = client.post(
        reverse("evaluation:assignment_submit", args=[assignment.pk]), {**SCORES, "comment": "x" * 25_000}, follow=True
    )
    page = response.content.decode()
    assert "Not saved: the comment is longer than 5,000 characters." in page
    assert "could not be kept as a draft" in page
    assert not Rating.objects.exists()
