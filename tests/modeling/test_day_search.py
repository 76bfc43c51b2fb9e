"""The sensorlm_train job (training, evaluation tables, a cohort's day index) and the search over that index."""

import numpy as np
import pytest

from modeling.day_search import DaySearchError, day_search_checkpoint, days_matching
from modeling.jobs import job_queue
from modeling.models import Checkpoint
from modeling.tasks import run_job

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def var_dir(settings, tmp_path):
    settings.VAR_DIR = tmp_path / "var"


def test_search_says_what_to_do_before_any_cohort_is_indexed():
    Checkpoint.objects.create(family="sensorlm", size="tiny", path="/nowhere")  # a model without an index does not count
    assert day_search_checkpoint() is None
    with pytest.raises(DaySearchError, match="queues"):
        days_matching(query="a morning run")


@pytest.mark.slow
def test_the_training_job_evaluates_indexes_a_cohort_and_its_days_can_be_searched(tiny_cohort, client, admin_user):
    from django.urls import reverse

    config = {"size": "tiny", "loss": "siglip", "caption_levels": ["semantic", "structural"], "participants": 20, "days": 2, "steps": 4,
              "batch_size": 8, "learning_rate": 0.002, "evaluate": True, "evaluation_participants": 16, "index_cohort": tiny_cohort.pk,
              "seed": 0}
    job = job_queue(kind_name="sensorlm_train", config=config)
    assert job.queue == "cpu"
    assert run_job.apply(kwargs={"job_id": job.pk}).get() == "succeeded"
    job.refresh_from_db()
    checkpoint = Checkpoint.objects.get(job=job)
    assert checkpoint.family == "sensorlm" and day_search_checkpoint() == checkpoint
    assert [table["title"] for table in job.result["tables"]] == ["Zero-shot activity recognition", "Binary groupings (AUROC)",
                                                                  "Retrieval among the test days", "Captioning"]
    client.force_login(admin_user)
    assert "Zero-shot activity recognition" in client.get(reverse("modeling:job_detail", kwargs={"job_id": job.pk})).content.decode()
    worn_days = sum(participant.minute_days for participant in tiny_cohort.participants.all())
    assert 0 < job.result["indexed_days"] <= worn_days
    results = days_matching(query="fragmented sleep and a morning run", limit=4)
    assert len(results) == 4
    assert {result["participant_id"] for result in results} <= set(tiny_cohort.participants.values_list("pk", flat=True))
    assert all(result["caption"] and 0 <= result["day_index"] < 2 for result in results)
    scores = [result["score"] for result in results]
    assert scores == sorted(scores, reverse=True) and np.isfinite(scores).all()


def test_admins_queue_the_training_from_its_form(client, admin_user, tiny_cohort):
    from django.urls import reverse

    client.force_login(admin_user)
    page = client.get(reverse("modeling:job_new", kwargs={"kind": "sensorlm_train"})).content.decode()
    assert "Caption levels" in page and "Index cohort" in page and tiny_cohort.name in page
