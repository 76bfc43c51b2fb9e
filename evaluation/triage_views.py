"""The safety triage lane's pages: the adjudicator's queue, an incident (decided there), the study's adjudicators and
its incident log export. The work is in evaluation.triage."""

from django.contrib import messages
from django.contrib.auth.models import User
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from evaluation.models import Incident, Study
from evaluation.selectors import access_study, access_study_for_change
from evaluation.services import EvaluationError
from evaluation.triage import (
    TRIGGERS,
    access_incident,
    incident_decide,
    incident_log_bytes,
    incident_ratings,
    incident_viewed,
    item_variants,
    study_adjudicators_set,
    triage_queue,
)
from evaluation.views import chart_response, minutes_response
from healthagent.agent.record import participant_record
from healthagent.cohort.days import shown_days
from healthagent.roles import Role, role_required

INCIDENT_LOG_FORMATS = {"csv": "text/csv", "json": "application/json"}


@role_required(Role.CLINICIAN)
def triage(request):
    """The adjudicator's queue: the incidents of the studies they adjudicate, open ones first."""
    waiting, decided = triage_queue(user=request.user)
    return render(
        request,
        "evaluation/triage.html",
        {
            "open": waiting,
            "decided": decided,
            "adjudicates": request.user.adjudicated_studies.exists(),
            "triggers": TRIGGERS,
        },
    )


def _window(incident: Incident) -> tuple[int, int]:
    days = shown_days(incident.item.participant, incident.study.window_days)
    return days.minutes


@role_required(Role.CLINICIAN, Role.RESEARCHER, Role.ADMIN)
def incident_detail(request, incident_id: int):
    """An incident: the item, the chart, every rating of the item with its rater (audited), and the decision form for
    the study's adjudicators."""
    incident, can_decide = access_incident(user=request.user, incident_id=incident_id)
    if request.method == "POST":
        try:
            incident_decide(
                incident_id=incident.pk,
                user=request.user,
                decision=request.POST.get("decision", ""),
                note=request.POST.get("note", "").replace("\r\n", "\n"),
            )
        except EvaluationError as error:
            messages.error(request, f"Not decided: {error}.")
            return _incident_page(request, incident, can_decide, posted=request.POST)
        messages.success(request, f"Incident #{incident.pk} decided.")
        return redirect(
            "evaluation:triage" if can_decide else "evaluation:incident", *([] if can_decide else [incident.pk])
        )
    return _incident_page(request, incident, can_decide)


def _incident_page(request, incident: Incident, can_decide: bool, posted=None) -> HttpResponse:
    incident_viewed(incident=incident, user=request.user)
    item = incident.item
    shown = shown_days(item.participant, incident.study.window_days)
    ratings = incident_ratings(incident)
    return render(
        request,
        "evaluation/incident.html",
        {
            "incident": incident,
            "study": incident.study,
            "item": item,
            "variants": item_variants(incident),
            "ratings": ratings,
            "reasons": [TRIGGERS[reason] for reason in incident.reasons],
            "can_decide": can_decide,
            "decisions": [choice for choice in Incident.Decision.choices if choice[0]],
            "posted": posted or {},
            "record": participant_record(participant=item.participant, shown_days=shown),
            "minute_chart_url": reverse("evaluation:incident_chart", args=[incident.pk]),
            "minutes_url": reverse("evaluation:incident_minutes", args=[incident.pk]),
        },
    )


@role_required(Role.CLINICIAN, Role.RESEARCHER, Role.ADMIN)
def incident_chart(request, incident_id: int):
    incident, _ = access_incident(user=request.user, incident_id=incident_id)
    start, end = _window(incident)
    return chart_response(request, participant=incident.item.participant, start=start, end=end)


@role_required(Role.CLINICIAN, Role.RESEARCHER, Role.ADMIN)
def incident_minutes(request, incident_id: int):
    incident, _ = access_incident(user=request.user, incident_id=incident_id)
    low, high = _window(incident)
    return minutes_response(request, participant=incident.item.participant, low=low, high=high)


@require_POST
@role_required(Role.RESEARCHER, Role.ADMIN)
def study_adjudicators(request, study_id: int):
    study = access_study_for_change(user=request.user, study_id=study_id)
    ids = [value for value in request.POST.getlist("adjudicators") if value.isdigit()]
    users = list(User.objects.filter(pk__in=ids, is_active=True))
    try:
        study_adjudicators_set(study=study, users=users, by=request.user)
    except EvaluationError as error:
        messages.error(request, f"Adjudicators not changed: {error}.")
    else:
        names = ", ".join(sorted(user.get_username() for user in users)) or "none"
        messages.success(request, f"Safety adjudicators: {names}.")
    return redirect(reverse("evaluation:study_detail", args=[study.pk]) + "#adjudicators")


@role_required(Role.RESEARCHER, Role.ADMIN)
def study_incident_log(request, study_id: int, fmt: str):
    """The incident log for an ethics board: every incident, its ratings and decision (CSV or JSON)."""
    study: Study = access_study(user=request.user, study_id=study_id)
    if fmt not in INCIDENT_LOG_FORMATS:
        raise Http404("unknown format")
    response = HttpResponse(incident_log_bytes(study, fmt), content_type=INCIDENT_LOG_FORMATS[fmt])
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    response["Content-Disposition"] = f'attachment; filename="study-{study.pk}-incidents-{stamp}.{fmt}"'
    return response
