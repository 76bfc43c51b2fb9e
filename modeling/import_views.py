"""The cohort import page: researchers and admins upload an export in the browser (chunked and resumable,
static/js/cohort_upload.js), then queue its import as a job and watch it here."""

from django.http import Http404, JsonResponse
from django.shortcuts import render
from django.urls import reverse

from healthagent.cohort.uploads import UploadError
from healthagent.roles import Role, role_required, user_has_role
from modeling.jobs import JobError
from modeling.models import Job

IMPORT_ROLES = (Role.RESEARCHER, Role.ADMIN)


@role_required(*IMPORT_ROLES)
def cohort_import_page(request):
    """GET: the page. POST (from its script, once every file is up): queue the import; JSON with the job's status
    address, or the reason it was refused (400), the uploads kept so nothing is sent twice."""
    # Imported here: modeling.kinds registers every job kind, whose modules import torch and transformers (4 s), which
    # every management command would otherwise pay through the URL configuration's checks.
    from modeling.kinds.cohort_import import CohortImportForm, cohort_import_queue

    if request.method != "POST":
        return render(request, "modeling/cohort_import.html", {"form": CohortImportForm()})
    try:
        job = cohort_import_queue(user=request.user, config=request.POST.dict())
    except (JobError, UploadError) as error:
        return JsonResponse({"error": str(error).replace("invalid cohort_import config: ", "")}, status=400)
    return JsonResponse({"job": job.pk, "status": reverse("modeling:cohort_import_status", args=[job.pk])}, status=201)


@role_required(*IMPORT_ROLES)
def cohort_import_status(request, job_id: int):
    """The import job's state and progress, for the one who queued it (and admins)."""
    job = Job.objects.filter(pk=job_id, kind="cohort_import").first()
    if job is None or not (job.queued_by_id == request.user.pk or user_has_role(request.user, Role.ADMIN)):
        raise Http404("no such import of yours")
    result = job.result or {}
    return JsonResponse(
        {
            "state": job.state,
            "progress": job.progress,
            "message": job.message,
            "error": job.error,
            "cohort_url": reverse("cohort:cohort_detail", args=[result["cohort_id"]]) if "cohort_id" in result else "",
            "imported": result.get("imported"),
            "dropped": result.get("dropped"),
        }
    )
