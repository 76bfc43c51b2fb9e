"""Admins' job pages: queue a job from its kind's form, follow it live, cancel or retry it."""

from django.contrib import messages
from django.http import Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from healthagent.models import Participant
from healthagent.roles import Role, role_required
from modeling.jobs import (
    REGISTRY,
    JobError,
    job_cancel,
    job_kind,
    job_payload,
    job_pending,
    job_progress_payload,
    job_queue,
    job_queue_place,
    job_retry,
    jobs_queue_places,
)
from modeling.models import Checkpoint, Job
from modeling.selectors import job_config_named
from modeling.templatetags.job_format import queue_place_words


@role_required(Role.ADMIN)
def job_list(request):
    jobs = Job.objects.select_related("queued_by")
    state, kind = request.GET.get("state", ""), request.GET.get("kind", "")
    if state:
        jobs = jobs.filter(state=state)
    if kind:
        jobs = jobs.filter(kind=kind)
    job_kind("generate_recommendations")  # loads the registry
    jobs = list(jobs[:200])
    places = jobs_queue_places(jobs)
    for job in jobs:
        job.queue_place = queue_place_words(places.get(job.pk), job.queue)  # "" unless queued
    return render(
        request,
        "modeling/job_list.html",
        {
            "jobs": jobs,
            "kinds": sorted(REGISTRY.values(), key=lambda k: k.title),
            "states": Job.State.choices,
            "state": state,
            "kind": kind,
        },
    )


@role_required(Role.ADMIN)
def job_new(request, kind: str):
    from modeling.forms import JobPriorityForm

    try:
        spec = job_kind(kind)
    except JobError as error:
        raise Http404(str(error)) from error
    form = spec.form(request.POST or None)
    priority_form = JobPriorityForm(request.POST or None, prefix="job")
    if request.method == "POST" and form.is_valid() and priority_form.is_valid():
        try:
            job = job_queue(
                kind_name=spec.name,
                config=request.POST,
                user=request.user,
                priority=priority_form.cleaned_data["priority"] or 0,
            )
        except JobError as error:
            form.add_error(None, str(error))
        else:
            messages.success(request, f"Queued {spec.title.lower()} as job #{job.pk}.")
            return redirect("modeling:job_detail", job_id=job.pk)
    return render(request, "modeling/job_form.html", {"form": form, "priority_form": priority_form, "spec": spec})


@role_required(Role.ADMIN)
def job_detail(request, job_id: int):
    job = get_object_or_404(Job, pk=job_id)
    result = dict(job.result or {})
    tables = result.pop("tables", [])  # evaluation tables a job reports are shown as tables, the rest as data
    searches = result.pop("searches", [])  # a head search's leaderboards, drawn as charts
    return render(
        request,
        "modeling/job_detail.html",
        {
            "job": job,
            "config": job_config_named(job),
            "payload": job_payload(job, with_curve=True),
            "checkpoints": job.checkpoints.all(),
            "follow_ups": job.follow_ups.order_by("pk"),
            "result": result,
            "tables": tables,
            "searches": searches,
            "queue_place": queue_place_words(job_queue_place(job), job.queue),
        },
    )


@role_required(Role.ADMIN)
def job_status(request, job_id: int):
    """The job as JSON: what the page polls when its websocket is down (and in the embedded mode,
    where a worker's events cannot reach the web process)."""
    job = get_object_or_404(Job, pk=job_id)
    return JsonResponse(
        {
            **job_payload(job, with_curve=True),
            "log_tail": job.log_tail[-4000:],
            "queue_place": queue_place_words(job_queue_place(job), job.queue),
        }
    )


@require_POST
@role_required(Role.ADMIN)
def job_cancel_view(request, job_id: int):
    try:
        job_cancel(job=get_object_or_404(Job, pk=job_id), user=request.user)
        messages.success(
            request,
            "Cancelled."
            if Job.objects.get(pk=job_id).state == "cancelled"
            else "Cancelling: the job stops at its next progress report.",
        )
    except JobError as error:
        messages.error(request, str(error).capitalize() + ".")
    return redirect("modeling:job_detail", job_id=job_id)


@require_POST
@role_required(Role.ADMIN)
def job_retry_view(request, job_id: int):
    try:
        job = job_retry(job=get_object_or_404(Job, pk=job_id), user=request.user)
    except JobError as error:
        messages.error(request, str(error).capitalize() + ".")
        return redirect("modeling:job_detail", job_id=job_id)
    messages.success(request, f"Queued again as job #{job.pk}.")
    return redirect("modeling:job_detail", job_id=job.pk)


@role_required(Role.ADMIN)
def checkpoint_list(request):
    return render(
        request, "modeling/checkpoint_list.html", {"checkpoints": Checkpoint.objects.select_related("job")[:200]}
    )


TWIN_ROLES = (Role.RESEARCHER, Role.ADMIN)


@role_required(*TWIN_ROLES)
def twin_page(request):
    """Choose a participant and interventions, queue a simulation, see fan charts with and without."""
    from modeling.forms import TwinRequestForm
    from modeling.selectors import simulation_latest, simulations_visible_to, twin_checkpoint_latest, twin_page_data

    participant_id, job_id = request.GET.get("participant", ""), request.GET.get("job", "")
    participant = Participant.objects.filter(pk=participant_id).first() if participant_id.isdigit() else None
    job = simulations_visible_to(request.user).filter(pk=job_id).first() if job_id.isdigit() else None
    # Nothing ticked unless the page shows a simulation that was asked for: then the form says what it asked.
    asked = job.config if job is not None else {}
    form = TwinRequestForm(
        initial={
            "participant": participant,
            "interventions": asked.get("interventions", []),
            **{key: asked[key] for key in ("horizon_days", "samples") if key in asked},
        },
        user=request.user,
    )
    run = None
    if participant is not None:
        runs = participant.simulations.select_related("checkpoint")
        run = runs.filter(job=job).first() if job is not None else simulation_latest(participant=participant)
    return render(
        request,
        "modeling/twin.html",
        {
            "form": form,
            "participant": participant,
            "job": job,
            "run": run,
            "checkpoint": twin_checkpoint_latest(),
            "training": job_pending(kind_name="twin_train"),
            "queue_place": queue_place_words(job_queue_place(job), job.queue) if job else "",
            "page_data": twin_page_data(run=run) if run else None,
        },
    )


@require_POST
@role_required(*TWIN_ROLES)
def twin_simulate(request):
    from modeling.forms import TwinRequestForm
    from modeling.services import TwinError, simulation_request_queue

    form = TwinRequestForm(request.POST, user=request.user)
    if not form.is_valid():
        problems = "; ".join(" ".join(errors) for errors in form.errors.values())
        messages.error(request, f"Could not queue the simulation: {problems}.")
        return redirect("modeling:twin")
    participant = form.cleaned_data["participant"]
    try:
        job = simulation_request_queue(
            user=request.user,
            participant=participant,
            interventions=form.cleaned_data["interventions"],
            horizon_days=form.cleaned_data["horizon_days"],
            samples=form.cleaned_data["samples"],
        )
    except TwinError as error:
        messages.error(request, f"Could not queue the simulation: {error}.")
        return redirect(f"{reverse('modeling:twin')}?participant={participant.pk}")
    return redirect(f"{reverse('modeling:twin')}?participant={participant.pk}&job={job.pk}")


@role_required(*TWIN_ROLES)
def twin_status(request, job_id: int):
    """A simulate job's progress, for the twin page (researchers cannot open the admins' job pages): what it
    polls when no event arrives over its websocket (modeling.consumers.SimulationJobConsumer). The researcher's own
    simulations only (every one for admins)."""
    from modeling.selectors import simulations_visible_to

    job = get_object_or_404(simulations_visible_to(request.user), pk=job_id)
    return JsonResponse(
        job_progress_payload({**job_payload(job), "queue_place": queue_place_words(job_queue_place(job), job.queue)})
    )
