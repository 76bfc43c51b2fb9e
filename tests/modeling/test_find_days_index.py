"""The sensorlm_train job (training, evaluation tables, a cohort's day index) and the search over that index."""

import os

import numpy as np
import pytest

from modeling.find_days import FindDaysError, day_index_build, days_matching, find_days_indexes
from modeling.jobs import job_queue
from modeling.ml.sensorlm.find_days import DayIndex, load_index, save_index
from modeling.models import Checkpoint
from modeling.tasks import run_job
from tests.factories import committed_sensorlm_checkpoint_create, sensorlm_checkpoint_create

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def var_dir(settings, tmp_path):
    settings.VAR_DIR = tmp_path / "var"


def test_search_says_what_to_do_before_any_cohort_is_indexed():
    Checkpoint.objects.create(
        family="sensorlm", size="tiny", path="/nowhere"
    )  # a model without an index does not count
    assert find_days_indexes() == {}
    with pytest.raises(FindDaysError, match="queues"):
        days_matching(query="a morning run")


@pytest.mark.slow
def test_the_training_job_evaluates_indexes_a_cohort_and_its_days_can_be_searched(tiny_cohort, client, admin_user):
    from django.urls import reverse

    config = {
        "size": "tiny",
        "loss": "siglip",
        "caption_levels": ["semantic", "structural"],
        "participants": 20,
        "days": 2,
        "steps": 4,
        "batch_size": 8,
        "learning_rate": 0.002,
        "evaluate": True,
        "evaluation_participants": 16,
        "index_cohort": tiny_cohort.pk,
        "seed": 0,
    }
    job = job_queue(kind_name="sensorlm_train", config=config)
    assert job.queue == "cpu"
    assert run_job.apply(kwargs={"job_id": job.pk}).get() == "succeeded"
    job.refresh_from_db()
    checkpoint = Checkpoint.objects.get(job=job)
    assert checkpoint.family == "sensorlm" and find_days_indexes()[str(tiny_cohort.pk)][0] == checkpoint
    assert [table["title"] for table in job.result["tables"]] == [
        "Zero-shot activity recognition",
        "Binary groupings (AUROC)",
        "Retrieval among the test days",
        "Find days",
        "Find days without an event log",
        "Find days without an event log, the tagging head's activities stated",  # training fits the tagger
        "Captioning",
    ]
    client.force_login(admin_user)
    assert (
        "Zero-shot activity recognition"
        in client.get(reverse("modeling:job_detail", kwargs={"job_id": job.pk})).content.decode()
    )
    worn_days = sum(participant.minute_days for participant in tiny_cohort.participants.all())
    assert 0 < job.result["indexed_days"] <= worn_days
    results = days_matching(query="fragmented sleep and a morning run", limit=4)
    assert len(results) == 4
    assert {result["participant_id"] for result in results} <= set(
        tiny_cohort.participants.values_list("pk", flat=True)
    )
    assert all(result["caption"] and 0 <= result["day_index"] < 2 for result in results)
    scores = [result["score"] for result in results]
    assert scores == sorted(scores, reverse=True) and np.isfinite(scores).all()


def test_an_index_job_indexes_a_cohort_without_an_event_log_with_a_trained_model(
    tiny_cohort, tmp_path, client, admin_user
):
    """A cohort imported without an event log, indexed by the committed model (no training): its days are searched,
    each with the activities the model's tagger reads from the wearable data where it reads any."""

    from django.urls import reverse

    from healthagent.models import Event

    checkpoint = committed_sensorlm_checkpoint_create(tmp_path / "sensorlm")
    Event.objects.filter(participant__cohort=tiny_cohort).delete()
    client.force_login(admin_user)
    page = client.get(reverse("modeling:job_new", kwargs={"kind": "sensorlm_index"})).content.decode()
    assert tiny_cohort.name in page and str(tmp_path / "sensorlm") in page  # the model, named by its files
    job = job_queue(kind_name="sensorlm_index", config={"checkpoint": checkpoint.pk, "cohort": tiny_cohort.pk})
    assert job.queue == "cpu"  # a tiny model
    assert run_job.apply(kwargs={"job_id": job.pk}).get() == "succeeded"
    job.refresh_from_db()
    worn_days = sum(participant.minute_days for participant in tiny_cohort.participants.all())
    assert job.result["indexed_days"] == worn_days and 0 < job.result["read_by_model"] <= worn_days
    checkpoint.refresh_from_db()
    assert find_days_indexes()[str(tiny_cohort.pk)][0] == checkpoint
    results = days_matching(query="a walk", limit=worn_days)
    assert sum(result["read_by_model"] for result in results) == job.result["read_by_model"]


def test_while_a_cohort_is_indexed_the_search_says_so(tiny_cohort):
    from modeling.models import Job

    # even when an earlier index's model is gone from disk: the job on its way is the news
    Checkpoint.objects.create(family="sensorlm", size="tiny", path="/nowhere", metrics={"day_indexes": {"1": {}}})
    job = Job.objects.create(kind="sensorlm_index", config={}, state=Job.State.QUEUED)
    with pytest.raises(FindDaysError, match=f"being indexed \\(job #{job.pk}, queued, 0%\\)"):
        days_matching(query="a morning run")


def test_a_cohort_indexed_again_by_an_older_model_is_searched_with_that_index(tiny_cohort, tmp_path):
    older = sensorlm_checkpoint_create(tmp_path / "older")
    newer = sensorlm_checkpoint_create(tmp_path / "newer", seed=1)
    day_index_build(checkpoint=newer, cohort=tiny_cohort)
    assert find_days_indexes()[str(tiny_cohort.pk)][0] == newer
    day_index_build(checkpoint=older, cohort=tiny_cohort)  # an admin chose the older model on purpose
    assert find_days_indexes()[str(tiny_cohort.pk)][0] == older


def test_the_index_form_names_each_model_and_refuses_one_whose_files_are_gone(tiny_cohort, tmp_path):
    from modeling.kinds.sensorlm import SensorLMIndexForm

    kept = sensorlm_checkpoint_create(tmp_path / "kept")
    gone = Checkpoint.objects.create(family="sensorlm", size="tiny", path=str(tmp_path / "gone"))
    form = SensorLMIndexForm()
    labels = [label for _, label in form.fields["checkpoint"].choices]
    assert any(str(tmp_path / "kept") in label for label in labels)
    assert SensorLMIndexForm({"checkpoint": kept.pk, "cohort": tiny_cohort.pk}).is_valid()
    refused = SensorLMIndexForm({"checkpoint": gone.pk, "cohort": tiny_cohort.pk})
    assert not refused.is_valid() and "no longer on disk" in str(refused.errors["checkpoint"])


def test_admins_queue_the_training_from_its_form(client, admin_user, tiny_cohort):
    from django.urls import reverse

    client.force_login(admin_user)
    page = client.get(reverse("modeling:job_new", kwargs={"kind": "sensorlm_train"})).content.decode()
    assert "Caption levels" in page and "Index cohort" in page and tiny_cohort.name in page


def test_each_cohort_is_searched_with_the_newest_model_that_indexed_it(tiny_cohort, tmp_path):
    older = sensorlm_checkpoint_create(tmp_path / "older")
    day_index_build(checkpoint=older, cohort=tiny_cohort)
    newer = sensorlm_checkpoint_create(tmp_path / "newer", seed=1)
    other_index = tmp_path / "newer" / "days-cohort-999.npz"  # another cohort's one day (participant 999999)
    own = load_index(tmp_path / "older" / f"days-cohort-{tiny_cohort.pk}.npz")
    save_index(DayIndex(own.embeddings[:1], np.array([999999]), np.array([0]), np.array(["Slept 7 h."])), other_index)
    newer.metrics = {"day_indexes": {"999": {"path": str(other_index), "days": 1}}}  # another cohort only
    newer.save(update_fields=["metrics"])
    assert {cohort: checkpoint for cohort, (checkpoint, _) in find_days_indexes().items()} == {
        str(tiny_cohort.pk): older,
        "999": newer,
    }
    searched = {result["participant_id"] for result in days_matching(query="a morning walk", limit=50)}
    assert searched == {999999, *tiny_cohort.participants.values_list("pk", flat=True)}


def test_a_model_saved_again_at_the_same_path_is_reloaded(tiny_cohort, tmp_path):
    checkpoint = sensorlm_checkpoint_create(tmp_path / "sensorlm")
    day_index_build(checkpoint=checkpoint, cohort=tiny_cohort)
    before = [result["score"] for result in days_matching(query="a morning walk", limit=3)]
    sensorlm_checkpoint_create(tmp_path / "sensorlm", seed=7).delete()  # other weights, same directory
    weights = tmp_path / "sensorlm" / "model.safetensors"
    os.utime(weights, (weights.stat().st_atime, weights.stat().st_mtime + 10))
    after = [result["score"] for result in days_matching(query="a morning walk", limit=3)]
    assert before != after


def test_a_missing_model_directory_is_a_sentence_not_a_crash(tiny_cohort, tmp_path):
    checkpoint = sensorlm_checkpoint_create(tmp_path / "sensorlm")
    day_index_build(checkpoint=checkpoint, cohort=tiny_cohort)
    (tmp_path / "sensorlm" / "model.safetensors").unlink()
    with pytest.raises(FindDaysError, match="missing"):
        days_matching(query="a long hike")
