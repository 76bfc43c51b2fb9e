"""The demo starts with its trained models ready: the committed weights are registered and used at once."""

import pytest
from django.core.management import call_command

from healthagent.management.commands import demo_setup
from modeling.models import Checkpoint, Job

pytestmark = pytest.mark.django_db


@pytest.fixture
def small_demo(settings, tmp_path, monkeypatch):
    settings.VAR_DIR = tmp_path / "var"
    monkeypatch.setitem(demo_setup.DEMO_COHORT, "participants", 5)  # the smallest cohort k = 5 keeps whole


def test_the_committed_models_are_registered_once_and_what_the_pages_need_comes_first(small_demo):
    from healthagent.models import Cohort
    from modeling.find_days import days_matching
    from modeling.selectors import twin_checkpoint_latest

    call_command("demo_setup")
    call_command("demo_setup")  # idempotent: nothing registered or queued twice
    committed = {checkpoint.family: checkpoint for checkpoint in Checkpoint.objects.filter(job=None)}
    assert sorted(committed) == ["lsm", "sensorlm", "twin"] and Checkpoint.objects.count() == 3
    for checkpoint in committed.values():
        assert checkpoint.size == "tiny" and checkpoint.metrics["parameters"] > 0
        assert {"config.json", "model.safetensors"} <= {
            path.name for path in (demo_setup.Path(checkpoint.path)).iterdir()
        }

    # Find days works before any training job has run: the committed sensor-language model indexed the cohort.
    cohort = Cohort.objects.get(name="Demo cohort")
    results = days_matching(query="a long run in the morning", limit=3)
    assert len(results) == 3 and {result["participant_id"] for result in results} <= set(
        cohort.participants.values_list("pk", flat=True)
    )
    assert twin_checkpoint_latest() == committed["twin"]  # the twin page simulates with it

    # The cheap follow-ups of the committed models are queued once and first on the CPU queue, before the fresh trainings.
    cpu_jobs = list(Job.objects.filter(queue="cpu").order_by("pk").values_list("kind", flat=True))
    assert cpu_jobs == [
        "lsm_predict",
        "simulate",
        "generate_recommendations",
        "lsm_pretrain",
        "sensorlm_train",
    ]  # no fresh twin: the committed one is the model the results tables measured
    assert Job.objects.get(kind="lsm_predict").config["checkpoint"] == committed["lsm"].pk
    simulation = Job.objects.get(kind="simulate").config
    assert (
        simulation["checkpoint"] == committed["twin"].pk
        and simulation["cohort"] == cohort.pk
        and len(simulation["interventions"]) == 5
    )

    # The language-model answers are written for the participants the demo studies show, not the whole cohort.
    from evaluation.models import StudyItem

    shown = set(
        StudyItem.objects.filter(study__name__in=demo_setup.DEMO_STUDY_NAMES).values_list("participant_id", flat=True)
    )
    generation = Job.objects.filter(kind="generate_recommendations").exclude(queue="cpu")
    assert generation.count() == 2 and all(set(job.config["participants"]) == shown for job in generation)
    grounded_again = Job.objects.get(
        kind="generate_recommendations", queue="cpu"
    )  # after the estimates and simulations
    assert grounded_again.config["regenerate"] is True and not grounded_again.config["participants"]  # the whole cohort


def test_the_committed_models_load():
    from modeling.ml.lsm.pretrain import load_pretrained
    from modeling.ml.sensorlm.model import load_sensorlm
    from modeling.ml.twin.training import load_twin

    load_pretrained(demo_setup.DEMO_WEIGHTS_DIR / "lsm")
    load_sensorlm(demo_setup.DEMO_WEIGHTS_DIR / "sensorlm", "cpu")
    load_twin(demo_setup.DEMO_WEIGHTS_DIR / "twin")
