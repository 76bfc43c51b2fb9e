import importlib

import factory
from django.apps import apps
from django.contrib.auth.models import User

from healthagent.roles import user_assign_role

DEFAULT_PASSWORD = "a-long-test-password"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.PostGenerationMethodCall("set_password", DEFAULT_PASSWORD)

    @factory.post_generation
    def role(user, create, role, **kwargs):
        user.save()
        if role is not None:
            user_assign_role(user=user, role=role)


def ensure_reference_data():
    """The rows data migrations create (agent variants, rubrics), which a transactional test's flush removes."""
    for module, function in (
        ("healthagent.migrations.0004_default_variants", "create_default_variants"),
        ("evaluation.migrations.0002_default_rubrics", "create_rubrics"),
        ("evaluation.migrations.0010_harm_rubric", "create_harm_rubric"),
    ):
        getattr(importlib.import_module(module), function)(apps, None)


def sensorlm_checkpoint_create(path, *, seed: int = 0):
    """An untrained tiny SensorLM saved at ``path`` and its Checkpoint row (pages that search days do not
    depend on the model's quality). Saving again at the same path with another seed gives other weights."""
    import torch

    from modeling.ml.data.cohort import make_cohort
    from modeling.ml.sensorlm.captions import caption_days
    from modeling.ml.sensorlm.model import SensorLMConfig, SensorLMModel, save_sensorlm
    from modeling.ml.sensorlm.tokenizer import train_tokenizer
    from modeling.models import Checkpoint

    minutes = [make_cohort(participants=4, days=2, seed=1).participant(index).minutes for index in range(4)]
    tokenizer = train_tokenizer(
        [caption for record in minutes for caption in caption_days(record.values, record.mask, record.events)]
    )
    torch.manual_seed(seed)
    model = SensorLMModel(SensorLMConfig.named("tiny", vocabulary_size=tokenizer.get_vocab_size(), max_text_tokens=64))
    save_sensorlm(model, tokenizer, {"mean": [0.0] * 27, "std": [50.0] * 27}, path)
    return Checkpoint.objects.create(family="sensorlm", size="tiny", path=str(path))


def committed_sensorlm_checkpoint_create(path):
    """The committed sensor-language model (its activity tagger too) copied to ``path`` and its Checkpoint row: for
    tests of what the real model reads. A copy of the link targets, since a day index is written beside the model."""
    import shutil
    from pathlib import Path

    from modeling.models import Checkpoint

    shutil.copytree(Path(__file__).resolve().parents[1] / "modeling" / "demo_weights" / "sensorlm", path)
    return Checkpoint.objects.create(family="sensorlm", size="tiny", path=str(path))


def synthetic_cohort(name: str, *, participants: int, days: int, seed: int, history_days: int):
    """Import ``participants`` simulated people as the cohort ``name``. Tests' cohorts are smaller than the
    anonymity minimum (k = 5), so they import at k = 1 with the audited override."""
    from healthagent.cohort.importers.synthetic import synthetic_participants
    from healthagent.cohort.importing import cohort_import

    raw, report = synthetic_participants(participants=participants, days=days, seed=seed, history_days=history_days)
    return cohort_import(
        name=name, source="synthetic", participants=raw, source_report=report, k=1, allow_k_below_minimum=True
    ).cohort


def submit_led_to(response) -> str:
    """The address a rating's submit led to: the next item's page it answered with (its ``Content-Location``,
    evaluation.views._next_item_page), else where it redirected (the same item's form after a refusal, the queue's
    page, a feedback page)."""
    if response.status_code == 200:
        return response["Content-Location"]
    assert response.status_code == 302, response.status_code
    return response["Location"]
