"""Clinicians' queue and rating pages; researchers' study pages. Views only translate: the
services and selectors do the work and check access."""

import logging
from collections.abc import Callable
from functools import wraps
from typing import Any, cast

from django.contrib import messages
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import Count, Q
from django.http import Http404, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.middleware.gzip import re_accepts_gzip
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.cache import get_conditional_response, patch_vary_headers
from django.views.decorators.http import require_POST

from evaluation.access import access_assignment_as_session_user, access_turn_as_session_user
from evaluation.assignment import assignment_next, items_waiting_for_answers
from evaluation.chart_links import chart_etag, chart_link
from evaluation.dashboard import figures_as_data, study_dashboard
from evaluation.exports import DATA_DICTIONARY, FORMATS, export_bytes, export_filename
from evaluation.forms import StudyForm
from evaluation.item_page import item_page_context
from evaluation.missing_answers import study_item_drop, study_item_regenerate
from evaluation.models import HARM_QUESTIONS, Assignment, Study, StudyRater
from evaluation.raters import (
    QUEUE_PURPOSES,
    qualification_result,
    rater_gate,
)
from evaluation.selectors import (
    access_study,
    access_study_for_change,
    clinician_studies,
    rater_progress,
    rater_ratings,
    studies_visible_to,
    study_changeable_by,
    study_overview,
    study_quality_items,
    study_raters,
)
from evaluation.services import (
    DRAFT_MAX_CHARS,
    EvaluationError,
    NotInQueue,
    StudySpec,
    access_assignment,
    assignment_save_draft,
    assignment_skip,
    rating_submit_turn,
    study_create,
    study_set_status,
)
from evaluation.triage import adjudicator_choices
from healthagent.cohort.charts import (
    ChartError,
    minute_figure_file,
    minute_figure_json,
    minute_figure_key,
    minute_figure_path,
)
from healthagent.cohort.days import shown_days
from healthagent.jsonlimits import json_loads_bounded
from healthagent.models import Participant
from healthagent.roles import Role, adjudicator_flag_required, role_refusal, role_required
from healthagent.templatetags.fixed_urls import url_with_id

RESEARCH_ROLES = (Role.RESEARCHER, Role.ADMIN)

logger = logging.getLogger(__name__)


# --- Clinicians ---------------------------------------------------------------------------------


@role_required(Role.CLINICIAN)
def queue(request):
    """The clinician's start page: their studies, how far they are, where to continue, and their ratings so far."""
    # Adjudicators: the incidents waiting in their triage queue (one count per study they adjudicate, one query).
    waiting = list(
        request.user.adjudicated_studies.annotate(
            waiting=Count("incidents", filter=Q(incidents__decision=""))
        ).values_list("waiting", flat=True)
    )
    return render(
        request,
        "evaluation/queue.html",
        {
            "studies": clinician_studies(rater=request.user),
            "ratings": rater_ratings(rater=request.user),
            "adjudicates": bool(waiting),
            "triage_open": sum(waiting),
        },
    )


def enrolled_study(request, study_id: int) -> Study:
    study = Study.objects.filter(pk=study_id, clinicians=request.user).exclude(status=Study.Status.DRAFT).first()
    if study is None:
        raise Http404("no such study in your queue")
    return study


GATE_TITLES = {
    "declined": "You declined to take part",
    "failed": "Qualification not passed",
    "paused": "Your queue is paused",
}


@role_required(Role.CLINICIAN)
def study_next(request, study_id: int):
    study = enrolled_study(request, study_id)
    assignment = assignment_next(study=study, rater=request.user)
    if assignment is None:
        gate = rater_gate(study=study, rater=request.user)
        if gate.step == "consent" and study.status == Study.Status.OPEN:
            return redirect("evaluation:onboarding", study_id=study.pk)
        if gate.step in GATE_TITLES and study.status == Study.Status.OPEN:
            return render(
                request,
                "evaluation/rater_gate.html",
                {"study": study, "gate": gate, "title": GATE_TITLES[gate.step], "retries": study.qualification_retries},
            )
        return render(
            request,
            "evaluation/queue_done.html",
            {
                "study": study,
                "progress": rater_progress(study=study, rater=request.user),
                "ratings": rater_ratings(rater=request.user, study=study),
                "waiting": items_waiting_for_answers(study),
            },
        )
    return redirect("evaluation:assignment", assignment_id=assignment.pk)


def own_assignment(request, assignment_id: int, *, with_progress: bool = False) -> Assignment:
    try:
        return access_assignment(assignment_id=assignment_id, rater=request.user, with_progress=with_progress)
    except EvaluationError as error:
        raise Http404(str(error)) from error


def clinician_item_view(*, with_progress: bool = False) -> Callable:
    """``role_required(Role.CLINICIAN)`` for a view of the clinician's own assignment, which the view receives read
    (someone else's is a 404, as ``own_assignment``): read with the request's user and their roles in one statement
    when the user is not read yet (evaluation.access.access_assignment_as_session_user), else as any view does."""

    def decorator(view: Callable) -> Callable:
        @role_required(Role.CLINICIAN)
        def checked(request, assignment_id: int, assignment: Assignment | None):
            if assignment is None:
                assignment = own_assignment(request, assignment_id, with_progress=with_progress)
            return view(request, assignment)

        @wraps(view)
        def wrapped(request, assignment_id: int):
            # Before the role check, which reads the user: the read authenticates the request with the user it holds.
            ahead = access_assignment_as_session_user(request, assignment_id=assignment_id, with_progress=with_progress)
            return checked(request, assignment_id, ahead)

        cast(Any, wrapped).allowed_roles = cast(Any, checked).allowed_roles
        return wrapped

    return decorator


def _window(assignment: Assignment, participant: Participant) -> tuple[int, int]:
    """The study's window of the participant's minute-level data: its last ``window_days`` days, in minutes."""
    days = shown_days(participant, assignment.study.window_days)
    return days.minutes


@clinician_item_view(with_progress=True)  # the page's progress, in the same read
def assignment_detail(request, assignment: Assignment):
    return _item_page(request, assignment)


def _item_page(request, assignment: Assignment) -> HttpResponse:
    """The rating page of the clinician's own ``assignment``, read with its progress (access checked)."""
    context = item_page_context(assignment, rater=request.user)
    context["minute_chart_url"] = _chart_link(request, assignment)
    return render(request, "evaluation/assignment.html", context)


def _chart_link(request, assignment: Assignment) -> str:
    """The item's chart address, with a link the web server answers from the chart's file for this session
    (evaluation.chart_links): the access the page's read just checked. Minted whether the file is built or not (a
    link to a file not built yet goes to the view, which builds it): whether a page has a link must not tell a
    clinician whether anyone has seen this participant's chart before (a repeat)."""
    participant = assignment.item.participant
    start, end = _window(assignment, participant)
    key = minute_figure_key(participant=participant, start_minute=start, end_minute=end)
    return chart_link(
        url=url_with_id("evaluation:assignment_chart", assignment.pk),
        file=minute_figure_path(key=key, participant_pk=participant.pk),
        etag=chart_etag(key=key, salt=f"assignment:{assignment.pk}", compressed=True),
        session_key=request.session.session_key,
    )


@clinician_item_view()
def assignment_chart(request, assignment: Assignment):
    """The minute chart of the study's window of the clinician's own item. Addressed by the item, never by the
    participant: a clinician must not tell from URLs (or ETags) that two items, in one study or two, show the same
    person (a hidden repeat, or the same participant in another study)."""
    participant = assignment.item.participant
    start, end = _window(assignment, participant)
    return chart_response(request, participant=participant, start=start, end=end, salt=f"assignment:{assignment.pk}")


def chart_response(request, *, participant: Participant, start: int, end: int, salt: str = "") -> HttpResponseBase:
    """The minute chart of ``[start, end)`` of a participant: ETag and gzip (the callers check access). Not cached by
    the browser: participant data is no-store (healthagent.middleware); the server keeps the figure cached."""
    # Compressed when the browser takes gzip (every browser does), from a cached compressed copy. The figure is
    # anonymized sensor data with no secret and nothing the request supplies, so compression leaks nothing (BREACH).
    compressed = bool(re_accepts_gzip.search(request.headers.get("Accept-Encoding", "")))
    key = minute_figure_key(participant=participant, start_minute=start, end_minute=end)
    etag = chart_etag(key=key, salt=salt, compressed=compressed)
    response: HttpResponseBase | None = get_conditional_response(request, etag=etag)
    if response is None and compressed:
        # The figure's file, built once (healthagent.cohort.charts.minute_figure_file), read in one piece (~80 KB for
        # 14 days): a body of one piece goes to the server in one hand-over (healthagent.wsgi), where a FileResponse's
        # pieces are handed over one by one. Named "chart.json" here: the file's own name would tell two items' data
        # apart.
        path = minute_figure_file(participant=participant, start_minute=start, end_minute=end)
        response = HttpResponse(path.read_bytes(), content_type="application/json")
        response["Content-Disposition"] = 'inline; filename="chart.json"'
        response["Content-Encoding"] = "gzip"
    elif response is None:
        response = HttpResponse(
            minute_figure_json(participant=participant, start_minute=start, end_minute=end),
            content_type="application/json",
        )
    assert response is not None
    response["ETag"] = etag
    patch_vary_headers(response, ("Accept-Encoding",))
    return response


@role_required(Role.CLINICIAN)
def assignment_minutes(request, assignment_id: int):
    """Zoomed chart data for the clinician's own item only, within the study's window."""
    assignment = own_assignment(request, assignment_id)
    participant = assignment.item.participant
    low, high = _window(assignment, participant)
    return minutes_response(request, participant=participant, low=low, high=high)


def minutes_response(request, *, participant: Participant, low: int, high: int) -> HttpResponse:
    """Zoomed chart data for ``?start=&end=`` clipped to ``[low, high)`` (the callers check access)."""
    try:
        start, end = max(int(request.GET["start"]), low), min(int(request.GET["end"]), high)
        return HttpResponse(
            minute_figure_json(participant=participant, start_minute=start, end_minute=end),
            content_type="application/json",
        )
    except (KeyError, ValueError):
        return JsonResponse({"error": "start and end must be whole numbers of minutes"}, status=400)
    except ChartError as error:
        return JsonResponse({"error": str(error)}, status=400)


@require_POST
@role_required(Role.CLINICIAN)
def assignment_draft(request, assignment_id: int):
    own_assignment(request, assignment_id)  # someone else's item is a 404, as on every other item URL
    try:
        draft = json_loads_bounded(request.body or b"{}", max_chars=DRAFT_MAX_CHARS)
    except ValueError as error:
        return JsonResponse({"error": f"the draft is not valid: {error}"}, status=400)
    try:
        assignment_save_draft(assignment_id=assignment_id, rater=request.user, draft=draft)
    except EvaluationError as error:
        return JsonResponse({"error": str(error)}, status=400)
    return JsonResponse({"saved": True})


def _posted_rating(request) -> dict:
    """The form's fields; rating_submit checks the scores against the rubric (a missing or unknown one is an error)."""
    return {
        "scores": {
            name.removeprefix("score-"): value for name, value in request.POST.items() if name.startswith("score-")
        },
        "preference": request.POST.get("preference", ""),
        # A browser posts a textarea's line breaks as CRLF, but counts each as one character against maxlength.
        "comment": request.POST.get("comment", "").replace("\r\n", "\n"),
        "unsafe": request.POST.get("unsafe") == "on",
        "unsafe_reason": request.POST.get("unsafe_reason", "").replace("\r\n", "\n"),
        "harm": {key: request.POST.get(f"harm_{key}", "") for key in HARM_QUESTIONS},
        "criteria": {
            name.removeprefix("criterion-"): value
            for name, value in request.POST.items()
            if name.startswith("criterion-")
        },
        "evidence": request.POST.get("evidence", ""),  # JSON text, read by rating_submit
        "time_spent_s": request.POST.get("time_spent_s") or 0,
    }


@require_POST
def assignment_submit(request, assignment_id: int):
    """The rating of the clinician's own item (``role_required(Role.CLINICIAN)``, checked before anything is
    written), then their next item's page."""
    posted = _posted_rating(request)
    try:
        with transaction.atomic():
            # The item checked as the clinician's own under the lock it is written with, in one read, which also
            # reads the session's user (and authenticates the request with them) when the user is not read yet.
            ahead = access_turn_as_session_user(request, assignment_id=assignment_id)
            refused = role_refusal(request, Role.CLINICIAN)
            if refused is not None:
                return refused
            rating, turn = rating_submit_turn(assignment_id=assignment_id, rater=request.user, read=ahead, **posted)
        assignment = rating.assignment
    except NotInQueue as error:
        raise Http404(str(error)) from error
    except (ValueError, EvaluationError) as error:
        assignment = own_assignment(request, assignment_id)
        # Keep what was entered as the draft the page is rebuilt from: a score typed just before an incomplete
        # submit would otherwise be lost with the autosave that had not run yet.
        draft = {
            key: posted[key]
            for key in ("scores", "preference", "comment", "unsafe", "unsafe_reason", "harm", "criteria")
        }
        try:  # the windows as posted, if they are JSON a database can keep (no infinities, not too deep)
            draft["evidence"] = json_loads_bounded(posted["evidence"] or "[]", max_chars=DRAFT_MAX_CHARS)
        except ValueError:
            draft["evidence"] = []
        note = ""
        try:
            assignment_save_draft(assignment_id=assignment.pk, rater=request.user, draft=draft)
        except EvaluationError:
            # A closed study keeps no drafts, and the refusal already says so; anything else (a draft too big to
            # keep) must be said: the page shows what was typed, but only until this tab is closed.
            if assignment.study.status == Study.Status.OPEN:
                note = " What you entered is shown again below but could not be kept as a draft: shorten it before you leave this page."
        messages.error(request, f"Not saved: {error}.{note}")
        return redirect("evaluation:assignment", assignment_id=assignment.pk)
    except (OperationalError, InterfaceError):
        # The connection died mid-transaction: the database rolled it back whole, and a retry is
        # safe because rating_submit is idempotent. Say so rather than show a bare server error.
        response = HttpResponse(
            "Not saved: the database connection was lost, so nothing of this rating was recorded. "
            "Go back and submit again.",
            status=503,
            content_type="text/plain; charset=utf-8",
        )
        response["Retry-After"] = "1"
        return response
    if assignment.purpose == Assignment.Purpose.TRAINING:
        return redirect("evaluation:training_feedback", assignment_id=assignment.pk)
    if assignment.purpose == Assignment.Purpose.QUALIFICATION:
        result = qualification_result(study=assignment.study, rater=request.user, attempt=assignment.attempt)
        if result is not None:
            (messages.success if result.passed else messages.warning)(
                request,
                f"Qualification {'passed' if result.passed else 'not passed'}: {result.correct} of {result.total} "
                f"within the reference (the study asks for {assignment.study.pass_threshold * 100:.0f} %).",
            )
    elif assignment.purpose in QUEUE_PURPOSES:
        # Straight to the next item: the queue's own request (study_next) would read the session, the user, the
        # study and the open assignment again. Anything else (the queue is done, a gate) is study_next's to say.
        try:
            following = assignment_next(study=assignment.study, rater=request.user, turn=turn)
        except Exception:
            # The rating is committed: say so with the redirect, and let the queue's page try again.
            logger.exception("no next item could be handed out after the rating of assignment #%s", assignment.pk)
            following = None
        if following is not None:
            return _next_item_page(request, following)
    return redirect("evaluation:study_next", study_id=assignment.study_id)


def _next_item_page(request, following: Assignment) -> HttpResponseBase:
    """The page of the item handed out after a rating, as the submit's answer: the page its redirect would lead to,
    without the second request (one round trip for the clinician, and less server work per rated item, issue 27).
    ``Content-Location`` names the page's own address (RFC 9110: the answer is that resource's representation), and
    the page's first script (static/js/own-address.js) puts that address in the browser's bar and history, so that a
    reload or a return asks for the page, not the submit again. (Before it runs, or without JavaScript, a reload posts the same rating again:
    unchanged, it saves nothing new and answers with the page of the item now open.) The rating is committed: if
    the page cannot be made here, the redirect to it says the rating was saved, and the page's own request says the
    rest."""
    address = url_with_id("evaluation:assignment", following.pk)
    try:
        page = access_assignment(assignment_id=following.pk, rater=request.user, with_progress=True)
        response = _item_page(request, page)
    except Exception:
        logger.exception("the page of assignment #%s could not answer the submit before it", following.pk)
        return redirect(address)
    response["Content-Location"] = address
    return response


cast(Any, assignment_submit).allowed_roles = frozenset({Role.CLINICIAN})  # role_refusal's, in the view


@require_POST
@role_required(Role.CLINICIAN)
def assignment_skip_view(request, assignment_id: int):
    assignment = own_assignment(request, assignment_id)
    try:
        assignment_skip(assignment_id=assignment.pk, rater=request.user, reason=request.POST.get("skip_reason", ""))
    except EvaluationError as error:
        messages.error(request, f"Not skipped: {error}.")
        return redirect("evaluation:assignment", assignment_id=assignment.pk)
    return redirect("evaluation:study_next", study_id=assignment.study_id)


# --- Researchers ---------------------------------------------------------------------------------


@role_required(*RESEARCH_ROLES)
def study_list(request):
    studies = (
        studies_visible_to(user=request.user)
        .select_related("rubric")
        .annotate(paused=Count("standings", filter=Q(standings__state=StudyRater.State.PAUSED)))
        .order_by("-created_at")
    )
    return render(request, "evaluation/study_list.html", {"studies": studies})


@role_required(*RESEARCH_ROLES)
def study_new(request):
    form = StudyForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        spec = StudySpec(
            name=data["name"],
            mode=data["mode"],
            rubric=data["rubric"],
            cohort=data["cohort"],
            variants=list(data["variants"]),
            raters_per_item=data["raters_per_item"],
            clinicians=list(data["clinicians"]),
            instructions=data["instructions"],
            participants=data["participants"],
            window_days=data["window_days"],
            seed=data["seed"],
            restricted=data["restricted"],
            researchers=list(data["researchers"]),
            show_captions=data["show_captions"],
            rater_settings=form.rater_settings(),
        )
        try:
            study = study_create(spec=spec, user=request.user)
        except EvaluationError as error:
            form.add_error(None, str(error))
        else:
            messages.success(request, f"Study {study.name!r} created as a draft with {study.items.count()} items.")
            return redirect("evaluation:study_detail", study_id=study.pk)
    return render(request, "evaluation/study_form.html", {"form": form})


@role_required(*RESEARCH_ROLES)
def study_detail(request, study_id: int):
    study = access_study(user=request.user, study_id=study_id)
    return render(
        request,
        "evaluation/study_detail.html",
        {
            "study": study,
            "overview": study_overview(study=study),
            "can_change": study_changeable_by(study=study, user=request.user),
            "raters": study_raters(study=study),
            "quality_items": study_quality_items(study=study),
            "adjudicators": list(study.adjudicators.all()),
            "adjudicator_choices": adjudicator_choices(study),
            "adjudicators_from_sso": adjudicator_flag_required(),
            "open_incidents": study.incidents.filter(decision="").count(),
        },
    )


@role_required(*RESEARCH_ROLES)
def study_dashboard_view(request, study_id: int):
    """The live dashboard; ``?partial=1`` returns only its body, which the page swaps in when a rating commits."""
    study = access_study(user=request.user, study_id=study_id)
    exclude = frozenset(request.GET.getlist("exclude"))
    stratify = request.GET.get("stratify", "")
    dashboard = study_dashboard(study, exclude=exclude, stratify=stratify)
    # The live refresh keeps the switches: the partial is asked with the page's own query.
    query = request.GET.copy()
    query.pop("partial", None)
    context = {
        "study": study,
        "dashboard": dashboard,
        "figures": figures_as_data(dashboard),
        "exclude": exclude,
        "stratify": stratify,
        "query": query.urlencode(),
    }
    template = "evaluation/partials/dashboard_body.html" if request.GET.get("partial") else "evaluation/dashboard.html"
    return render(request, template, context)


@role_required(*RESEARCH_ROLES)
def study_export(request, study_id: int, fmt: str):
    study = access_study(user=request.user, study_id=study_id)
    if fmt not in FORMATS:
        raise Http404("unknown export format")
    response = HttpResponse(export_bytes(study, fmt), content_type=FORMATS[fmt])
    response["Content-Disposition"] = f'attachment; filename="{export_filename(study, fmt, now=timezone.now())}"'
    return response


@role_required(*RESEARCH_ROLES)
def data_dictionary(request):
    return JsonResponse({"columns": DATA_DICTIONARY})


@require_POST
@role_required(*RESEARCH_ROLES)
def study_status(request, study_id: int):
    """Open, close or reopen. Closing asks first (on a page saying what it ends); reopening needs a note."""
    study = access_study_for_change(user=request.user, study_id=study_id)
    status = request.POST.get("status", "")
    if status == Study.Status.CLOSED and study.status == Study.Status.OPEN and request.POST.get("confirmed") != "yes":
        overview = study_overview(study=study)
        return render(
            request,
            "evaluation/study_close_confirm.html",
            {"study": study, "overview": overview, "missing": overview["ratings_needed"] - overview["ratings_done"]},
        )
    try:
        study_set_status(study=study, status=status, user=request.user, note=request.POST.get("note", ""))
    except EvaluationError as error:
        messages.error(request, str(error).capitalize() + ".")
    else:
        messages.success(request, f"The study is now {study.get_status_display().lower()}.")
    return redirect("evaluation:study_detail", study_id=study.pk)


@require_POST
@role_required(*RESEARCH_ROLES)
def study_item_drop_view(request, study_id: int, item_id: int):
    study = access_study_for_change(user=request.user, study_id=study_id)
    try:
        item = study_item_drop(study=study, item_id=item_id, note=request.POST.get("note", ""), user=request.user)
    except EvaluationError as error:
        messages.error(request, f"Not dropped: {error}.")
    else:
        messages.success(request, f"Item {item.position + 1} was dropped from the study; your note is kept with it.")
    return redirect("evaluation:study_detail", study_id=study.pk)


@require_POST
@role_required(*RESEARCH_ROLES)
def study_item_regenerate_view(request, study_id: int, item_id: int):
    study = access_study_for_change(user=request.user, study_id=study_id)
    try:
        job = study_item_regenerate(study=study, item_id=item_id, user=request.user)
    except EvaluationError as error:
        messages.error(request, f"Not queued: {error}.")
    else:
        messages.success(request, f"Job #{job.pk} is generating the missing answers again; the item waits for it.")
    return redirect("evaluation:study_detail", study_id=study.pk)
