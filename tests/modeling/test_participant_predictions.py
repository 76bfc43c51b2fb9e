"""The researcher's participant page shows the newest foundation model's estimates (a panel the modeling room
registers on the cohort room's page)."""

import pytest

from modeling.models import Checkpoint, Prediction

pytestmark = pytest.mark.django_db


def test_the_participant_page_shows_the_newest_model_s_estimates(client, researcher, tiny_cohort):
    participant = tiny_cohort.participants.order_by("pk").first()
    client.force_login(researcher)
    assert (
        "The foundation model's estimates"
        not in client.get(f"/cohorts/participants/{participant.pk}/").content.decode()
    )

    older = Checkpoint.objects.create(family="lsm", size="tiny", path="/nowhere/old")
    newer = Checkpoint.objects.create(family="lsm", size="tiny", path="/nowhere/new")
    Prediction.objects.create(
        participant=participant,
        checkpoint=older,
        task="hypertension",
        kind="binary",
        label="yes",
        estimate=0.11,
        low=0.05,
        high=0.2,
        details={"description": "Old hypertension guess"},
    )
    Prediction.objects.create(
        participant=participant,
        checkpoint=newer,
        task="hypertension",
        kind="binary",
        label="yes",
        estimate=0.62,
        low=0.41,
        high=0.8,
        details={"description": "Hypertension", "quality": {"auroc": 0.81}},
    )
    Prediction.objects.create(
        participant=participant,
        checkpoint=newer,
        task="systolic_bp",
        kind="regression",
        estimate=131.46,
        low=118.2,
        high=144.9,
        details={"description": "Systolic blood pressure", "unit": "mmHg", "quality": {"pearson_r": 0.55}},
    )
    page = client.get(f"/cohorts/participants/{participant.pk}/").content.decode()
    assert "The foundation model's estimates" in page and f"lsm-tiny #{newer.pk}" in page
    assert "yes: 62 %" in page and "41 – 80 %" in page and "AUROC 0.81" in page
    assert "131.5 mmHg" in page and "118.2 – 144.9" in page and "Pearson r 0.55" in page
    assert "Old hypertension guess" not in page  # only the newest model's
