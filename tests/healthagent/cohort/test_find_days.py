"""The “Find days” page: ranked participant-days with their caption and chart, or a sentence saying why not."""

import json
from pathlib import Path

import pytest
from django.urls import reverse

from healthagent.cohort.captions import participant_day_captions
from modeling.find_days import day_index_build
from tests.factories import UserFactory, committed_sensorlm_checkpoint_create, sensorlm_checkpoint_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def indexed_cohort(tiny_cohort, tmp_path):
    """The tiny cohort indexed by an untrained tiny SensorLM (the page's behaviour does not depend on its quality)."""
    day_index_build(checkpoint=sensorlm_checkpoint_create(tmp_path / "sensorlm"), cohort=tiny_cohort)
    return tiny_cohort


def test_days_come_ranked_with_caption_chart_and_a_link_to_the_participant(client, indexed_cohort):
    client.force_login(UserFactory(role="researcher"))
    response = client.get(reverse("cohort:find_days"), {"q": "fragmented sleep and a morning run"})
    assert response.status_code == 200
    results = response.context["results"]
    assert len(results) == sum(
        participant.minute_days for participant in indexed_cohort.participants.all()
    )  # every worn day, 6 < 8
    assert [result["score"] for result in results] == sorted((result["score"] for result in results), reverse=True)
    page = response.content.decode()
    assert "its caption holds “" in page  # each card says which of the query's words its caption holds
    assert page.count("data-day-result") == len(results) and page.count('id="day-chart-') == len(results)
    first = results[0]
    assert reverse("cohort:participant_detail", args=[first["participant"].pk]) in page
    assert first["caption"] in page
    # The card's caption is that participant-day's own (the index stores what the captioner says of it).
    day = first["day_index"]
    assert (
        first["caption"]
        == participant_day_captions(participant=first["participant"], start_day=day, end_day=day + 1)[0]["caption"]
    )
    assert [panel["yaxis"] for panel in json.loads(first["chart_json"])["data"]] == ["y", "y2", "y3", "y4"]
    assert "data-read-by-model" not in page  # the cohort's event log states its activities


def test_without_an_event_log_a_card_says_its_activities_are_the_model_s_reading(client, tiny_cohort, tmp_path):
    """A cohort without an event log, indexed by the committed model (which has an activity tagger): each caption
    opens with the activities the model reads from the wearable data, and the card says that is what they are."""

    from healthagent.models import Event

    Event.objects.filter(participant__cohort=tiny_cohort).delete()
    checkpoint = committed_sensorlm_checkpoint_create(tmp_path / "sensorlm")
    day_index_build(checkpoint=checkpoint, cohort=tiny_cohort)
    client.force_login(UserFactory(role="researcher"))
    response = client.get(reverse("cohort:find_days"), {"q": "a walk in the morning"})
    results = response.context["results"]
    read = [result for result in results if result["read_by_model"]]
    assert read and all(result["caption"].startswith("Activities: a") for result in read)
    # a day it read no activity on says none: "No exercise or commute recorded." would be a record nobody kept
    assert not any("No exercise" in result["caption"] for result in results)
    page = response.content.decode()
    assert page.count("data-read-by-model") == len(read) and "not a record" in page


def test_without_an_index_the_page_says_how_to_get_one(client, tiny_cohort):
    client.force_login(UserFactory(role="admin"))
    response = client.get(reverse("cohort:find_days"), {"q": "a long hike"})
    assert response.status_code == 200 and not response.context["results"]
    assert "No day index yet" in response.content.decode() and "an admin queues" in response.content.decode()
    assert "Find days" in client.get(reverse("cohort:cohort_list")).content.decode()  # the navigation entry


def test_while_the_model_trains_the_page_says_so_instead_of_asking_for_one(client, tiny_cohort):
    from modeling.models import Job

    job = Job.objects.create(kind="sensorlm_train", config={}, state=Job.State.RUNNING, progress=0.4)
    client.force_login(UserFactory(role="researcher"))
    page = client.get(reverse("cohort:find_days"), {"q": "a long hike"}).content.decode()
    assert f"being trained (job #{job.pk}, running, 40%)" in page and "an admin queues" not in page


def test_a_query_of_words_no_caption_uses_finds_nothing_and_says_which_words_work(client, indexed_cohort):
    """A ``<script>`` query once ranked days above the best real match; it is not run as a search at all now."""
    client.force_login(UserFactory(role="researcher"))
    response = client.get(reverse("cohort:find_days"), {"q": "<script>alert(1)</script>"})
    assert response.status_code == 200 and not response.context["results"]
    page = response.content.decode()
    assert "None of these words occur in the day captions" in page and "walk, run" in page
    assert "<script>alert(1)</script>" not in page  # shown escaped in the search box, never as markup


def test_a_day_whose_trajectory_file_is_gone_keeps_its_caption_without_a_chart(client, indexed_cohort, settings):

    gone = indexed_cohort.participants.exclude(trajectory_path="").order_by("pk").first()
    (Path(settings.TRAJECTORY_ROOT) / gone.trajectory_path).unlink()
    client.force_login(UserFactory(role="researcher"))
    response = client.get(reverse("cohort:find_days"), {"q": "a morning walk"})
    assert response.status_code == 200
    cards = [result for result in response.context["results"] if result["participant"] == gone]
    assert cards and all(card["chart_json"] is None and card["caption"] and card["chart_error"] for card in cards)
    assert "chart cannot be drawn" in response.content.decode()
    assert any(result["chart_json"] for result in response.context["results"])  # the other days keep theirs


def test_a_missing_model_is_a_sentence_not_a_server_error(client, indexed_cohort, tmp_path):
    (tmp_path / "sensorlm" / "model.safetensors").unlink()
    client.force_login(UserFactory(role="researcher"))
    response = client.get(reverse("cohort:find_days"), {"q": "a long hike"})
    assert response.status_code == 200 and "missing" in response.content.decode()


def test_zooming_a_day_card_fetches_the_same_panels(client, indexed_cohort):
    """A card draws FIND_DAYS_CHANNELS; its figure names them, and the zoom URL takes and checks them."""
    from healthagent.cohort.views import FIND_DAYS_CHANNELS

    client.force_login(UserFactory(role="researcher"))
    first = client.get(reverse("cohort:find_days"), {"q": "a morning walk"}).context["results"][0]
    channels = json.loads(first["chart_json"])["layout"]["meta"]["channels"]
    assert channels == list(FIND_DAYS_CHANNELS)
    url = reverse("cohort:participant_minutes", args=[first["participant"].pk])
    zoomed = client.get(url, {"start": 60, "end": 600, "channels": ",".join(channels)})
    assert zoomed.status_code == 200
    assert [trace["name"] for trace in zoomed.json()["data"]] == [
        trace["name"] for trace in json.loads(first["chart_json"])["data"]
    ]
    assert zoomed.json()["layout"]["meta"]["channels"] == channels
    for bad in ("heart_rate,not_a_channel", "", ",".join(["heart_rate"] * 2)):
        assert client.get(url, {"start": 60, "end": 600, "channels": bad}).status_code == 400, bad
    assert (
        len(client.get(url, {"start": 60, "end": 600}).json()["data"]) == 8
    )  # without the parameter: the default panels
