"""The “Find days” page: ranked participant-days with their caption and chart, or a sentence saying why not."""

import json

import pytest
import torch
from django.urls import reverse

from modeling.day_search import day_index_build
from modeling.models import Checkpoint
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def indexed_cohort(tiny_cohort, tmp_path):
    """The tiny cohort indexed by an untrained tiny SensorLM (the page's behaviour does not depend on its quality)."""
    from modeling.ml.data.cohort import make_cohort
    from modeling.ml.sensorlm.captions import caption_days
    from modeling.ml.sensorlm.model import SensorLMConfig, SensorLMModel, save_sensorlm
    from modeling.ml.sensorlm.tokenizer import train_tokenizer

    minutes = [make_cohort(participants=4, days=2, seed=1).participant(index).minutes for index in range(4)]
    tokenizer = train_tokenizer([caption for record in minutes for caption in caption_days(record.values, record.mask, record.events)])
    torch.manual_seed(0)
    model = SensorLMModel(SensorLMConfig.named("tiny", vocabulary_size=tokenizer.get_vocab_size(), max_text_tokens=64))
    save_sensorlm(model, tokenizer, {"mean": [0.0] * 27, "std": [50.0] * 27}, tmp_path / "sensorlm")
    checkpoint = Checkpoint.objects.create(family="sensorlm", size="tiny", path=str(tmp_path / "sensorlm"))
    day_index_build(checkpoint=checkpoint, cohort=tiny_cohort)
    return tiny_cohort


def test_days_come_ranked_with_caption_chart_and_a_link_to_the_participant(client, indexed_cohort):
    client.force_login(UserFactory(role="researcher"))
    response = client.get(reverse("cohort:find_days"), {"q": "fragmented sleep and a morning run"})
    assert response.status_code == 200
    results = response.context["results"]
    assert len(results) == sum(participant.minute_days for participant in indexed_cohort.participants.all())  # every worn day, 6 < 8
    assert [result["score"] for result in results] == sorted((result["score"] for result in results), reverse=True)
    page = response.content.decode()
    assert page.count("data-day-result") == len(results) and page.count('id="day-chart-') == len(results)
    first = results[0]
    assert reverse("cohort:participant_detail", args=[first["participant"].pk]) in page
    assert first["caption"] in page and ("Slept" in first["caption"] or "sleep" in first["caption"])
    assert [panel["yaxis"] for panel in json.loads(first["chart_json"])["data"]] == ["y", "y2", "y3", "y4"]


def test_without_an_index_the_page_says_how_to_get_one(client, tiny_cohort):
    client.force_login(UserFactory(role="admin"))
    response = client.get(reverse("cohort:find_days"), {"q": "a long hike"})
    assert response.status_code == 200 and not response.context["results"]
    assert "No day index yet" in response.content.decode()
    assert "Find days" in client.get(reverse("cohort:cohort_list")).content.decode()  # the navigation entry
