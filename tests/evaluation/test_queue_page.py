"""The clinician's start page through the test client: the action only when there is something to rate, one
wording for it, and the clinician's own ratings from the start, each saying what it was."""

import re

import pytest
from django.urls import reverse

from evaluation.assignment import assignment_next
from evaluation.services import rating_submit
from healthagent.models import AgentVariant, Recommendation

pytestmark = pytest.mark.django_db

ACTION = "Rate next item"


def queue_page(client, clinician) -> str:
    client.force_login(clinician)
    return client.get(reverse("evaluation:queue")).content.decode()


def rate(study, clinician, scores=(4, 3, 5)):
    assignment = assignment_next(study=study, rater=clinician)
    rating_submit(
        assignment_id=assignment.pk,
        rater=clinician,
        scores=dict(zip(("relevance", "context", "safety"), scores, strict=True)),
    )
    return assignment


def test_one_wording_for_the_action_whether_starting_or_continuing(client, grounded_study):
    clinician = grounded_study.clinicians.order_by("pk").first()
    assert ACTION in queue_page(client, clinician)
    rate(grounded_study, clinician)
    assert ACTION in queue_page(client, clinician)
    assignment_next(study=grounded_study, rater=clinician)  # an item left half-rated
    page = queue_page(client, clinician)
    assert ACTION in page and not re.search(r">\s*(Start|Continue|Next item)\s*<", page)


def test_no_action_when_every_remaining_item_has_its_raters(client, grounded_study):
    first, second, third = grounded_study.clinicians.order_by("pk")
    for clinician in (second, third):  # k = 2: these two take every place of the three items
        for _ in range(grounded_study.items.count()):
            rate(grounded_study, clinician)
    page = queue_page(client, first)
    assert ACTION not in page and "Start" not in page
    assert "Nothing more for you to rate in this study right now." in page


def test_no_action_while_every_remaining_item_waits_for_answers(client, grounded_study, tiny_cohort):
    from modeling.jobs import job_queue

    Recommendation.objects.filter(participant__in=[item.participant for item in grounded_study.items.all()]).update(
        status="failed"
    )
    # A generation job on its way: the answers may still come.
    job_queue(
        kind_name="generate_recommendations",
        config={"cohort": tiny_cohort.pk, "variants": [grounded_study.items.first().variant_a_id]},
    )
    page = queue_page(client, grounded_study.clinicians.order_by("pk").first())
    assert ACTION not in page and "the agent is still writing the answers of 3 items" in page


def test_your_ratings_are_on_the_start_page_from_the_start_and_say_what_each_was(client, grounded_study):
    clinician = grounded_study.clinicians.order_by("pk").first()
    page = queue_page(client, clinician)
    assert "Your ratings" in page and "You have not rated anything yet" in page
    assignment = rate(grounded_study, clinician, scores=(4, 3, 5))
    page = queue_page(client, clinician)
    row = re.search(r"<tr>\s*<td>Pilot study</td>.*?</tr>", page, re.S).group(0)
    # Numbered in the order the clinician was given items (an item's position would give a hidden repeat away).
    assert f'href="{reverse("evaluation:assignment", args=[assignment.pk])}">Item 1</a>' in row
    assert "Relevance: 4" in row and "Context awareness: 3" in row and "Safety: 5" in row
    assert re.search(r"[A-Z][a-z]{2} \d{1,2}, \d\d:\d\d", row)  # when
    for hidden in [*AgentVariant.objects.values_list("name", flat=True), assignment.item.participant.pseudonym]:
        assert hidden.lower() not in page.lower(), hidden


def test_a_pairwise_rating_is_listed_in_the_sides_the_clinician_saw(client, pairwise_study):
    clinician = pairwise_study.clinicians.get()
    assignment = assignment_next(study=pairwise_study, rater=clinician)
    assignment.swapped = True  # the item's answer B was on the left, as "Answer A"
    assignment.save(update_fields=["swapped"])
    rating = rating_submit(
        assignment_id=assignment.pk,
        rater=clinician,
        scores={"relevance": "a", "context": "b", "safety": "tie"},
        preference="a",
    )
    assert rating.preference == "b"  # stored in the item's terms
    page = queue_page(client, clinician)
    assert "Relevance: A better · Context awareness: B better · Safety: tie · Overall: A better" in page


def test_the_start_page_reads_a_few_queries_per_study_whatever_its_size(client, django_assert_max_num_queries):
    from tests.evaluation.test_assignment import build_study

    clinician = None
    for items in (3, 12, 30):
        study = build_study(items=items, raters=1, k=1)
        clinician = clinician or study.clinicians.get()
        study.clinicians.set([clinician])
        for _ in range(2):
            rate(study, clinician)
    client.force_login(clinician)
    # The session, user and role, the studies, the ratings list (with its rubrics and their dimensions), then per
    # study its progress and whether an item is free, and the raters' standings and item kinds of all studies at once
    # (two queries, issue 20): never a query per item or per rating.
    # + the incidents waiting for an adjudicator, and the unread notifications (cached after this first page)
    with django_assert_max_num_queries(7 + 2 + 2 * 3 + 2):
        page = client.get(reverse("evaluation:queue")).content.decode()
    assert page.count(ACTION) == 3 and page.count("Item ") == 6
