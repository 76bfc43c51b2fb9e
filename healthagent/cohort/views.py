import json

from django.core.paginator import Paginator
from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render

from healthagent.cohort.charts import ChartError, daily_figure, minute_figure_json
from healthagent.cohort.selectors import BROWSE_ROLES, access_participant, cohort_list, participant_list
from healthagent.models import Cohort
from healthagent.roles import role_required


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
        "minute_chart_json": minute_figure_json(participant=participant),
        "daily_chart": daily_figure(participant=participant),
        "events": participant.events.exclude(kind__in=["sleep", "stress"]).order_by("day_index", "start_minute")[:200],
        "recommendations": _with_context_json(participant.recommendations.select_related("variant").order_by("variant__name", "question")),
    }
    return render(request, "cohort/participant_detail.html", context)


@role_required(*BROWSE_ROLES)
def participant_minutes(request, participant_id: int):
    """The minute chart for a window (``start`` and ``end`` in minutes): what zooming fetches."""
    participant = access_participant(user=request.user, participant_id=participant_id)
    try:
        start, end = int(request.GET["start"]), int(request.GET["end"])
        text = minute_figure_json(participant=participant, start_minute=start, end_minute=end)
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
