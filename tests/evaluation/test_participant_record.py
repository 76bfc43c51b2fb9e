"""The participant's record beside the answer on the rating page: the numbers an answer cites can be
checked there, nothing the agent did not see is shown, and every day is numbered as the chart numbers it."""

import gzip
import json
import re
from datetime import UTC, datetime

import pytest
from django.urls import reverse

from evaluation.assignment import assignment_next
from evaluation.models import Rubric
from evaluation.services import StudySpec, assignment_skip, study_create, study_set_status
from healthagent.models import AgentVariant, Event, Measurement, Participant
from healthagent.roles import Role
from tests.factories import UserFactory, synthetic_cohort

pytestmark = pytest.mark.django_db


def rating_pages(client, study, clinician):
    """Every item the clinician can be given, as (assignment, page HTML): each is skipped to reach the next."""
    client.force_login(clinician)
    pages = []
    while (assignment := assignment_next(study=study, rater=clinician)) is not None:
        pages.append((assignment, client.get(reverse("evaluation:assignment", args=[assignment.pk])).content.decode()))
        assignment_skip(assignment_id=assignment.pk, rater=clinician, reason="seen")
    return pages


def measurement_row(page: str, name: str) -> str:
    match = re.search(rf'<tr data-measurement="{name}">(.*?)</tr>', page, re.S)
    assert match, f"no row for {name}"
    return match.group(1)


def cell(html: str, attribute: str) -> str:
    match = re.search(rf"<td {attribute}>(.*?)</td>", html, re.S)
    assert match, attribute
    return " ".join(match.group(1).split())


def average_cell(page: str, key: str, field: str) -> str:
    row = re.search(rf'<tr data-average="{key}">(.*?)</tr>', page, re.S)
    assert row, f"no {key} average"
    return cell(row.group(1), f'data-column="{field}"')


def test_every_number_the_answer_cites_from_the_record_is_in_the_panel(client, grounded_study):
    """The measurements (value and age) and the averages an answer quotes can be read off the panel beside it."""
    checked = {"measurements": 0, "metrics": 0}
    for assignment, page in rating_pages(client, grounded_study, grounded_study.clinicians.order_by("pk").first()):
        assert "The numbers the answer may cite" in page
        for item in assignment.item.recommendation_a.items:
            for citation in item["citations"]:
                source, display = citation["source"].split("."), citation["display"]
                assert display in assignment.item.answer_a
                if source[0] == "measurements":
                    row = measurement_row(page, source[1])
                    assert display == (
                        cell(row, "data-days-before-last")
                        if source[2] == "days_ago"
                        else cell(row, "data-latest").split()[0]
                    )
                    checked["measurements"] += 1
                elif source[0] == "metrics" and source[2] in ("recent", "baseline"):
                    assert average_cell(page, source[2], source[1]) == display, citation
                    checked["metrics"] += 1
    assert checked["measurements"] >= 2 and checked["metrics"] >= 2, checked  # the fixture's answers cite both kinds


def test_the_panel_shows_nothing_the_agent_did_not_see_and_no_identity(client, grounded_study):
    clinician = grounded_study.clinicians.order_by("pk").first()
    participant = grounded_study.items.order_by("pk").first().participant
    # Outside what the agent saw or the study shows: a measurement the agent is not given, and an event before the wearable data.
    Measurement.objects.create(
        participant=participant,
        day_index=participant.minute_start_day,
        name="crp",
        value=7.77,
        unit="mg/L",
        modality="lab",
    )
    Event.objects.create(
        participant=participant, kind="medication", name="zz_outside_marker", day_index=participant.minute_start_day - 3
    )
    last_index = participant.minute_start_day + participant.minute_days - 1
    Event.objects.create(participant=participant, kind="diet", name="zz_inside_marker", day_index=last_index)
    pages = [
        page
        for assignment, page in rating_pages(client, grounded_study, clinician)
        if assignment.item.participant_id == participant.pk
    ]
    assert pages
    for page in pages:
        panel = page[
            page.index("data-participant-record") : page.index("</details>", page.index("data-participant-record"))
        ]
        assert "zz inside marker" in panel  # an event of a shown day is there
        assert "zz outside marker" not in panel and "7.77" not in panel and "CRP" not in panel
        days = [int(day) for day in re.findall(r'<th scope="row">Day (-?\d+)', panel)]
        assert days and all(1 <= day <= participant.minute_days for day in days)
        for identity in (
            participant.pseudonym,
            participant.cohort.name,
            *AgentVariant.objects.values_list("name", flat=True),
        ):
            assert identity.lower() not in page.lower(), identity
        assert not re.search(r"\b20\d\d-\d\d-\d\d\b", panel)  # no calendar dates


@pytest.fixture
def fortnight_study(db):
    """A study showing 7 days of a participant with 14 days of wearable data, with captions."""
    from healthagent.agent.generate import cohort_generate
    from tests.factories import ensure_reference_data

    ensure_reference_data()
    cohort = synthetic_cohort("Fortnight", participants=1, days=14, seed=11, history_days=40)
    grounded = AgentVariant.objects.get(name="grounded agent")
    cohort_generate(cohort=cohort, variants=[grounded])
    spec = StudySpec(
        name="A week shown",
        mode="absolute",
        rubric=Rubric.objects.get(name__endswith="(1-5)"),
        cohort=cohort,
        variants=[grounded],
        raters_per_item=1,
        clinicians=[UserFactory(role=Role.CLINICIAN)],
        window_days=7,
        show_captions=True,
    )
    return study_set_status(study=study_create(spec=spec, user=UserFactory(role=Role.RESEARCHER)), status="open")


def chart_day_labels(figure: dict) -> tuple[int, int]:
    """The first and last "Day N" the chart's x axis prints (charts.AXIS_FORMAT prints the day of the year)."""
    start_ms, end_ms = figure["layout"]["xaxis"]["range"]
    day = lambda ms: datetime.fromtimestamp(ms / 1000, tz=UTC).timetuple().tm_yday  # noqa: E731
    return day(start_ms), day(end_ms - 60_000)


def test_a_shorter_window_is_numbered_alike_in_chart_captions_record_and_agent_context(client, fortnight_study):
    clinician = fortnight_study.clinicians.get()
    client.force_login(clinician)
    assignment = assignment_next(study=fortnight_study, rater=clinician)
    participant = assignment.item.participant
    assert participant.minute_days == 14
    page = client.get(reverse("evaluation:assignment", args=[assignment.pk])).content.decode()

    chart = client.get(reverse("evaluation:assignment_chart", args=[assignment.pk]), HTTP_ACCEPT_ENCODING="gzip")
    assert chart_day_labels(json.loads(gzip.decompress(chart.content))) == (8, 14)
    captions = [int(day) for day in re.findall(r"<strong>Day (\d+)\.</strong>", page)]
    assert captions == list(range(8, 15))
    statement = " ".join(
        re.search(r"<p class=\"record-window\" data-record-window>(.*?)</p>", page, re.S).group(1).split()
    )
    assert "The chart shows days 8–14; the answer was written from days 1–14" in statement
    assert "last 7 days of data" in page
    summaries = page[page.index("data-record-summaries") : page.index("</tbody>", page.index("data-record-summaries"))]
    assert [int(day) for day in re.findall(r'<th scope="row">Day (\d+)', summaries)] == list(
        range(1, 15)
    )  # every day the agent averaged
    assert [int(day) for day in re.findall(r'<th scope="row">Day (\d+) \*', summaries)] == list(
        range(1, 8)
    )  # those off the chart marked

    windows = assignment.item.recommendation_a.context["windows"]
    assert (windows["first_day"], windows["last_day"], windows["recent_first_day"]) == (1, 14, 8)
    assert "day 1 is the first day of wearable data" in windows["numbering"]


def test_a_suppressed_age_band_and_sex_are_said_to_be_withheld(client, grounded_study):
    clinician = grounded_study.clinicians.order_by("pk").first()
    Participant.objects.filter(pk__in=grounded_study.items.values("participant")).update(age_band="*", sex="unknown")
    _assignment, page = rating_pages(client, grounded_study, clinician)[0]
    header = " ".join(re.search(r'<p class="muted">Participant ·(.*?)</p>', page, re.S).group(1).split())
    assert header.startswith("age band withheld for anonymity · sex withheld for anonymity")
    assert "age *" not in page and "Unknown" not in header


def test_a_withheld_age_band_beside_a_kept_sex_reads_as_such(client, grounded_study):
    clinician = grounded_study.clinicians.order_by("pk").first()
    Participant.objects.filter(pk__in=grounded_study.items.values("participant")).update(age_band="*", sex="male")
    _, page = rating_pages(client, grounded_study, clinician)[0]
    assert "Participant · age band withheld for anonymity · Male · last" in page


def test_the_header_shows_the_age_band_and_sex_the_record_has(client, grounded_study):
    clinician = grounded_study.clinicians.order_by("pk").first()
    Participant.objects.filter(pk__in=grounded_study.items.values("participant")).update(age_band="40-44", sex="female")
    _, page = rating_pages(client, grounded_study, clinician)[0]
    assert "Participant · age 40–44 · Female · last" in page


def test_units_are_written_as_people_write_them_on_the_chart(client, grounded_study):
    clinician = grounded_study.clinicians.order_by("pk").first()
    client.force_login(clinician)
    assignment = assignment_next(study=grounded_study, rater=clinician)
    chart = client.get(reverse("evaluation:assignment_chart", args=[assignment.pk])).content.decode("utf-8")
    titles = " ".join(
        axis["title"]["text"] for name, axis in json.loads(chart)["layout"].items() if name.startswith("yaxis")
    )
    hovers = " ".join(trace["hovertemplate"] for trace in json.loads(chart)["data"])
    assert "(°C)" in titles and "(µS)" in titles and "°C" in hovers and "µS" in hovers
    assert "degC" not in titles + hovers and "uS" not in titles + hovers


def test_a_participant_without_wearable_data_gets_the_measurements_and_a_plain_statement(tiny_cohort):
    from django.template.loader import render_to_string

    from healthagent.agent.record import participant_record
    from healthagent.cohort.days import shown_days

    participant = Participant.objects.create(
        cohort=tiny_cohort, pseudonym="P-NOWEARABLE", age_band="50-54", sex="male", history_days=30
    )
    Measurement.objects.create(
        participant=participant, day_index=20, name="ldl", value=141.2, unit="mg/dL", modality="lab"
    )
    record = participant_record(participant=participant, shown_days=shown_days(participant, 14))
    html = render_to_string("evaluation/partials/participant_record.html", {"record": record})
    assert "no wearable data: the answer was written from the measurements alone" in html and "days 1–0" not in html
    assert "141 mg/dL" in measurement_row(html, "ldl") and "No daily summaries." in html
