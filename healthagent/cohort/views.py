import json

from django.core.paginator import Paginator
from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render

from healthagent.cohort.charts import ChartError, chart_channels, daily_figure, minute_figure_json
from healthagent.cohort.days import wearable_day
from healthagent.cohort.find_days import FindDaysError, days_matching
from healthagent.cohort.panels import participant_panels
from healthagent.cohort.selectors import (
    BROWSE_ROLES,
    access_participant,
    cohort_list,
    participant_height_cm,
    participant_list,
    participant_profile,
)
from healthagent.cohort.store import TrajectoryError
from healthagent.models import Cohort, Participant
from healthagent.roles import role_required
from modeling.ml.data.spec import MINUTES_PER_DAY

FIND_DAYS_LIMIT = 8
FIND_DAYS_CHANNELS = (
    "heart_rate",
    "steps",
    "sleep_stage",
    "stress_score",
)  # a day card's chart: the panels a search is about
FIND_DAYS_EXAMPLES = (
    "fragmented sleep and a morning run",
    "a long hike",
    "stress episodes in the afternoon",
    "a short night",
)


@role_required(*BROWSE_ROLES)
def cohort_index(request):
    return render(request, "cohort/cohort_list.html", {"cohorts": cohort_list()})


@role_required(*BROWSE_ROLES)
def cohort_detail(request, cohort_id: int):
    cohort = get_object_or_404(Cohort, pk=cohort_id)
    page = Paginator(participant_list(cohort=cohort), 50).get_page(request.GET.get("page"))
    return render(request, "cohort/cohort_detail.html", {"cohort": cohort, "page": page})


@role_required(*BROWSE_ROLES)
def participant_detail(request, participant_id: int):
    participant = access_participant(user=request.user, participant_id=participant_id)
    context = {
        "participant": participant,
        "profile": participant_profile(participant),
        "height_cm": participant_height_cm(participant),
        "minute_chart_json": minute_figure_json(participant=participant),
        "daily_chart": daily_figure(participant=participant),
        "events": [
            {"day": wearable_day(participant, event.day_index), "event": event}
            for event in participant.events.exclude(kind__in=["sleep", "stress"]).order_by("day_index", "start_minute")[
                :200
            ]
        ],
        "recommendations": _with_context_json(
            participant.recommendations.select_related("variant").order_by("variant__name", "question")
        ),
        "panels": participant_panels(participant),
    }
    return render(request, "cohort/participant_detail.html", context)


@role_required(*BROWSE_ROLES)
def participant_minutes(request, participant_id: int):
    """The minute chart for a window (``start`` and ``end`` in minutes, optional ``channels``): what zooming fetches."""
    participant = access_participant(user=request.user, participant_id=participant_id)
    try:
        start, end = int(request.GET["start"]), int(request.GET["end"])
        text = minute_figure_json(
            participant=participant,
            start_minute=start,
            end_minute=end,
            channels=chart_channels(request.GET.get("channels")),
        )
    except (KeyError, ValueError):
        return JsonResponse({"error": "start and end must be whole numbers of minutes"}, status=400)
    except ChartError as error:
        return JsonResponse({"error": str(error)}, status=400)
    return HttpResponse(text, content_type="application/json")


def _with_context_json(recommendations):
    rows = list(recommendations)
    for row in rows:
        row.context_json = json.dumps(row.context, indent=2)
    return rows


@role_required(*BROWSE_ROLES)
def find_days(request):
    """“Find days like …”: participant-days ranked by how well a SensorLM model matches them to the typed text."""
    query = request.GET.get("q", "").strip()[:300]
    results, error = [], None
    if query:
        try:
            matches = days_matching(query=query, limit=FIND_DAYS_LIMIT)
        except FindDaysError as problem:
            error = str(problem)
        else:
            participants = Participant.objects.select_related("cohort").in_bulk(
                [match["participant_id"] for match in matches]
            )
            for position, match in enumerate(matches):
                participant = participants.get(match["participant_id"])
                if participant is None:  # deleted since the index was built
                    continue
                start = match["day_index"] * MINUTES_PER_DAY
                chart_json, chart_error = None, ""
                try:
                    chart_json = minute_figure_json(
                        participant=participant,
                        start_minute=start,
                        end_minute=start + MINUTES_PER_DAY,
                        channels=FIND_DAYS_CHANNELS,
                    )
                except (
                    TrajectoryError,
                    ChartError,
                ) as problem:  # e.g. the trajectory file is gone: the caption still helps
                    chart_error = str(problem)
                results.append(
                    {
                        **match,
                        "participant": participant,
                        "chart_id": f"day-chart-{position}",
                        "chart_json": chart_json,
                        "chart_error": chart_error,
                    }
                )
    return render(
        request,
        "cohort/find_days.html",
        {"query": query, "results": results, "error": error, "examples": FIND_DAYS_EXAMPLES},
    )
