"""The researcher's dashboard, exports and API on studies with real ratings."""

import io
import json
import re

import numpy as np
import pandas as pd
import pytest
from django.urls import reverse
from knox.models import AuthToken

from evaluation.assignment import assignment_next
from evaluation.dashboard import study_dashboard
from evaluation.exports import DATA_DICTIONARY
from evaluation.services import rating_submit
from tests.evaluation.test_assignment import build_study

pytestmark = pytest.mark.django_db


def rate_one(assignment, rater, rng, *, unsafe: bool):
    if assignment.study.mode == "pairwise":
        # The rater prefers the item's variant A 70 % of the time, whichever side it is shown on
        # (choices are in the sides as shown; rating_submit unswaps them).
        shown_a, shown_b = ("b", "a") if assignment.swapped else ("a", "b")
        choice = shown_a if rng.random() < 0.7 else shown_b
        rating_submit(
            assignment_id=assignment.pk,
            rater=rater,
            scores={"relevance": choice, "context": choice, "safety": "tie"},
            preference=choice,
            time_spent_s=20,
        )
        return
    quality = 4 if assignment.item.variant_a.name == "grounded agent" else 2
    scores = {
        dimension: int(np.clip(round(quality + rng.normal(0, 0.6)), 1, 5))
        for dimension in ("relevance", "context", "safety")
    }
    rating_submit(
        assignment_id=assignment.pk,
        rater=rater,
        scores=scores,
        unsafe=unsafe,
        unsafe_reason="Suggests stopping a medication." if unsafe else "",
        time_spent_s=float(rng.integers(15, 90)),
    )


def rate_everything(study, *, seed=0, unsafe_every=0):
    """The clinicians take turns until the study has nothing left; scores depend on the variant plus noise."""
    rng = np.random.default_rng(seed)
    count = 0
    active = list(study.clinicians.order_by("pk"))
    while active:
        rater = active.pop(0)
        assignment = assignment_next(study=study, rater=rater)
        if assignment is None:
            continue
        active.append(rater)
        count += 1
        rate_one(assignment, rater, rng, unsafe=bool(unsafe_every) and count % unsafe_every == 0)


def test_an_empty_study_says_not_enough_ratings_yet(client, researcher):
    study = build_study(items=4, raters=2, k=2)
    client.force_login(researcher)
    page = client.get(reverse("evaluation:study_dashboard", args=[study.pk])).content.decode()
    assert "Not enough ratings yet" in page and "nan" not in page.lower()


def test_a_tiny_study_shows_no_nan(client, researcher):
    study = build_study(items=2, raters=2, k=1)
    rate_everything(study)
    client.force_login(researcher)
    page = client.get(reverse("evaluation:study_dashboard", args=[study.pk])).content.decode()
    assert "not enough ratings yet" in page and "nan" not in page.lower().replace("variant", "")


def test_the_dashboard_separates_the_variants_and_measures_agreement(client, researcher):
    study = build_study(items=30, raters=4, k=2)
    for item in study.items.all()[:15]:  # half the participants are rated for the other variant
        item.variant_a = item.variant_b or type(item.variant_a).objects.get(name="LLM only")
        item.save()
    rate_everything(study, unsafe_every=7)
    dashboard = study_dashboard(study)
    means = {(row["variant"], row["dimension"]): row for row in dashboard["means"]}
    assert means[("grounded agent", "relevance")]["mean"] > means[("LLM only", "relevance")]["ci_high"]
    agreement = {row["dimension"]: row for row in dashboard["agreement"]}
    assert agreement["safety"]["alpha"]["enough"] and agreement["safety"]["alpha"]["alpha"] > 0.5
    assert agreement["safety"]["icc"]["n_items"] == 30
    assert len(dashboard["unsafe"]) == 60 // 7 and dashboard["unsafe"][0]["unsafe_reason"].startswith("Suggests")
    assert {row["rater"] for row in dashboard["raters"]} == set(study.clinicians.values_list("username", flat=True))
    client.force_login(researcher)
    page = client.get(reverse("evaluation:study_dashboard", args=[study.pk])).content.decode()
    for caption in ("bootstrap confidence intervals", "Krippendorff", "Benjamini", "mean absolute difference"):
        assert caption in page


def test_pairwise_dashboard(client, researcher):
    study = build_study(items=30, raters=2, k=1, mode="pairwise")
    rate_everything(study, seed=4)
    dashboard = study_dashboard(study)
    overall = next(row for row in dashboard["pairwise"] if row["dimension"] == "overall")
    assert overall["n_judgements"] == 30 and overall["a_wins"] > overall["b_wins"]
    assert {s["variant"] for s in overall["strengths"]} == {"grounded agent", "LLM only"}


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_exports_round_trip(client, researcher, fmt):
    study = build_study(items=6, raters=2, k=2)
    rate_everything(study, unsafe_every=4)
    client.force_login(researcher)
    response = client.get(reverse("evaluation:study_export", args=[study.pk, fmt]))
    assert response.status_code == 200
    assert re.search(rf'filename="study-{study.pk}-ratings-\d{{8}}T\d{{6}}Z\.{fmt}"', response["Content-Disposition"])
    content = response.content
    frame = {
        "csv": lambda: pd.read_csv(io.BytesIO(content)),
        "jsonl": lambda: pd.read_json(io.BytesIO(content), lines=True),
        "parquet": lambda: pd.read_parquet(io.BytesIO(content)),
    }[fmt]()
    assert len(frame) == 12
    from evaluation.models import Rating

    for row in frame.itertuples():
        rating = Rating.objects.get(pk=row.rating_id)
        assert (row.score_relevance, row.score_context, row.score_safety) == tuple(
            rating.scores[k] for k in ("relevance", "context", "safety")
        )
        assert bool(row.unsafe) == rating.unsafe and row.rater == rating.assignment.rater.username
        assert row.variant_a == rating.assignment.item.variant_a.name  # revealed to researchers
        assert (
            row.state == "rated" and row.revision == rating.revision and pd.Timestamp(row.rated_at) == rating.created_at
        )
    documented = {column if not column.startswith("score_") else "score_<dimension>" for column in frame.columns}
    assert documented <= set(DATA_DICTIONARY) | {"participant", "time_spent_s"}


def test_the_api_lists_with_pages_and_tokens(client):
    from tests.factories import UserFactory

    study = build_study(items=5, raters=2, k=2)
    rate_everything(study)
    researcher = UserFactory(role="researcher")
    _, secret = AuthToken.objects.create(user=researcher)
    headers = {"HTTP_AUTHORIZATION": f"Token {secret}"}
    page = client.get(reverse("api:ratings", args=[study.pk]) + "?page_size=4", **headers).json()
    assert page["count"] == 10 and len(page["results"]) == 4 and page["next"]
    assert set(page["results"][0]) >= {"item", "rater", "scores", "unsafe", "revision"}
    for query in ("?page=", "?page= ", "?page_size=0"):  # an empty page is no page, not the first (schemathesis)
        answer = client.get(reverse("api:ratings", args=[study.pk]) + query, **headers)
        assert answer.status_code == 400 and answer.json().keys() & {"page", "page_size"}
    assert client.get(reverse("api:studies"), **headers).json()["results"][0]["name"] == study.name
    _, clinician_secret = AuthToken.objects.create(user=study.clinicians.first())
    assert client.get(reverse("api:studies"), HTTP_AUTHORIZATION=f"Token {clinician_secret}").status_code == 403
    assert client.get(reverse("api:studies"), HTTP_AUTHORIZATION="Token nonsense").status_code == 401


def test_skip_reasons_and_revisions_reach_exports_the_api_and_the_dashboard(client, researcher):
    from evaluation.services import assignment_skip

    study = build_study(items=3, raters=2, k=1)
    first, second = study.clinicians.order_by("pk")
    assignment = assignment_next(study=study, rater=first)
    for relevance in (2, 4):  # one revision
        rating_submit(
            assignment_id=assignment.pk, rater=first, scores={"relevance": relevance, "context": 3, "safety": 3}
        )
    skipped = assignment_next(study=study, rater=second)
    assignment_skip(assignment_id=skipped.pk, rater=second, reason="The chart is empty for the last days")
    client.force_login(researcher)

    frame = pd.read_csv(io.BytesIO(client.get(reverse("evaluation:study_export", args=[study.pk, "csv"])).content))
    assert (
        list(frame["state"]) == ["rated", "skipped"]
        and frame.loc[0, "revision"] == 2
        and frame.loc[0, "score_relevance"] == 4
    )
    assert (
        frame.loc[1, "skip_reason"] == "The chart is empty for the last days"
        and frame.loc[1, "rater"] == second.username
    )
    skipped.refresh_from_db()
    assert frame.loc[1, "skipped_at"] == skipped.completed_at.isoformat()
    assert set(frame.columns) - {"score_relevance", "score_context", "score_safety"} <= set(DATA_DICTIONARY)

    skips = client.get(reverse("api:skips", args=[study.pk])).json()["results"]
    assert [(row["item"], row["rater"], row["skip_reason"]) for row in skips] == [
        (skipped.item_id, second.username, "The chart is empty for the last days")
    ]
    page = client.get(reverse("evaluation:study_dashboard", args=[study.pk])).content.decode()
    assert "Skipped items" in page and "The chart is empty for the last days" in page


def test_the_pairwise_dashboard_names_the_variants_it_compares(client, researcher):
    study = build_study(items=4, raters=2, k=1, mode="pairwise")
    rate_everything(study, seed=1)
    client.force_login(researcher)
    page = client.get(reverse("evaluation:study_dashboard", args=[study.pk])).content.decode()
    assert "grounded agent wins / ties / LLM only wins" in page and "first variant" not in page
    assert "grounded agent or LLM only" in page


def test_a_checklist_dimension_reads_as_share_of_yes(client, researcher):
    from evaluation.models import Dimension, Rubric

    study = build_study(items=6, raters=2, k=1)
    checklist = Rubric.objects.create(name="Checklist")
    Dimension.objects.create(
        rubric=checklist,
        key="cites",
        label="Cites the data",
        question="Does it cite?",
        scale="binary",
        scale_min=0,
        scale_max=1,
    )
    study.rubric = checklist
    study.save(update_fields=["rubric"])
    active = list(study.clinicians.order_by("pk"))
    answers = iter([1, 1, 0, 1, 1, 1])
    while active:
        rater = active.pop(0)
        if (assignment := assignment_next(study=study, rater=rater)) is not None:
            rating_submit(assignment_id=assignment.pk, rater=rater, scores={"cites": next(answers)})
            active.append(rater)
    client.force_login(researcher)
    page = client.get(reverse("evaluation:study_dashboard", args=[study.pk])).content.decode()
    assert "83 % yes" in page


def test_the_data_dictionary_is_served(client, researcher):
    client.force_login(researcher)
    assert "score_<dimension>" in json.loads(client.get(reverse("evaluation:data_dictionary")).content)["columns"]
