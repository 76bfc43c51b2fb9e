"""Job kind: import a cohort export uploaded from the browser (healthagent.cohort.uploads), with the same
anonymization, checks and report as ``manage.py import_cohort``. The uploaded bytes are deleted when the job ends,
whatever the outcome; a failed import keeps nothing (cohort_import is one transaction)."""

from django import forms
from django.contrib.auth.models import User
from django.db import transaction

from healthagent.cohort.importing import CohortImportError, cohort_import
from healthagent.cohort.sources import source_participants
from healthagent.cohort.uploads import UploadError, access_upload, upload_path, uploads_delete
from healthagent.models import Cohort, CohortUpload
from healthagent.roles import Role, user_has_role
from modeling.jobs import JobContext, JobKind, check_config, job_kind, job_queue, register
from modeling.models import Job

UPLOAD_FIELDS = ("signals", "demographics", "measurements")


class CohortImportForm(forms.Form):
    source = forms.ChoiceField(
        choices=[("csv", "CSV or Parquet"), ("fitbit", "Fitbit export (zip)"), ("apple", "Apple Health export")]
    )
    name = forms.CharField(
        max_length=120, label="Cohort name", help_text="A new cohort, or an existing one of the same source to add to."
    )
    description = forms.CharField(max_length=500, required=False)
    k = forms.IntegerField(
        min_value=1, required=False, label="k of the k-anonymity", help_text="Default: the site's minimum."
    )
    allow_k_below_minimum = forms.BooleanField(required=False, help_text="Recorded in the audit log.")
    timezone = forms.CharField(max_length=64, required=False, help_text="CSV: the participants' time zone.")
    signals = forms.UUIDField(help_text="The upload of the signals file, or of the whole export (Fitbit, Apple).")
    demographics = forms.UUIDField(required=False)
    measurements = forms.UUIDField(required=False)

    def clean(self):
        cleaned = super().clean()
        for name in UPLOAD_FIELDS:  # stored as text in the job's JSON config
            cleaned[name] = str(cleaned[name]) if cleaned.get(name) else ""
        if cleaned.get("source") != "csv" and (cleaned.get("demographics") or cleaned.get("measurements")):
            raise forms.ValidationError("only a CSV import takes demographics and measurements files")
        return cleaned


def _upload_ids(config: dict) -> list[str]:
    return [config[name] for name in UPLOAD_FIELDS if config.get(name)]


def import_check_allowed(*, user: User | None, config: dict) -> None:
    """Adding to an existing cohort is for its creator and admins; so is a k below the site's minimum (the command
    line's override, audited). Raises UploadError saying which."""
    admin = user is not None and user_has_role(user, Role.ADMIN)
    existing = Cohort.objects.filter(name=config.get("name", "")).first()
    if existing is not None and not admin and (user is None or existing.created_by_id != user.pk):
        raise UploadError(f"a cohort named {existing.name!r} exists and is not yours: choose another name")
    if config.get("allow_k_below_minimum") and not admin:
        raise UploadError("only admins import with k below the site's minimum")


def cohort_import_queue(*, user: User, config: dict) -> Job:
    """Queue the import of ``user``'s complete uploads (they can no longer change). Raises JobError for a bad form,
    UploadError for a file that is not there."""
    cleaned = check_config(job_kind("cohort_import"), config)
    import_check_allowed(user=user, config=cleaned)
    with transaction.atomic():
        uploads = []
        for upload_id in _upload_ids(cleaned):
            upload = access_upload(upload_id=upload_id, owner=user, for_update=True)
            if not upload.complete:
                raise UploadError(
                    f"a file is not all there yet ({upload.received_bytes:,} of {upload.size_bytes:,} bytes)"
                )
            if upload.job_id is not None:
                raise UploadError("a file is already being imported")
            uploads.append(upload)
        job = job_queue(kind_name="cohort_import", config=cleaned, user=user, via="cohort upload", queue="quick")
        CohortUpload.objects.filter(pk__in=[upload.pk for upload in uploads]).update(job_id=job.pk)
    return job


def run_cohort_import(context: JobContext) -> dict:
    config = context.config
    owner = context.job.queued_by
    if owner is None:  # the account was deleted since: its uploads went with it
        raise CohortImportError("import failed, nothing was kept: the account that uploaded the files is gone")
    try:
        import_check_allowed(user=owner, config=config)  # again: the cohort may have been made since it was queued
        paths = {}
        for name in UPLOAD_FIELDS:
            if config.get(name):
                upload = access_upload(upload_id=config[name], owner=owner)
                paths[name] = str(upload_path(upload))
        context.progress(0.1, "reading the export")
        options = {
            "paths": [paths["signals"]],
            "demographics": paths.get("demographics"),
            "measurements": paths.get("measurements"),
            "timezone": config.get("timezone") or None,
        }
        participants, report = source_participants(config["source"], options)
        context.progress(0.3, "anonymizing and storing")
        summary = cohort_import(
            name=config["name"],
            source=config["source"],
            participants=participants,
            source_report=report,
            k=config.get("k"),
            allow_k_below_minimum=bool(config.get("allow_k_below_minimum")),
            description=config.get("description", ""),
            user=owner,
            via=f"upload, job #{context.job.pk}",
        )
    except (UploadError, CohortImportError) as error:
        raise CohortImportError(f"import failed, nothing was kept: {error}") from error
    finally:
        uploads_delete(upload_ids=_upload_ids(config))
    context.progress(1.0, f"{summary.imported} participants imported")
    return {
        "cohort_id": summary.cohort.pk,
        "cohort": summary.cohort.name,
        "imported": summary.imported,
        "already_present": summary.already_present,
        "dropped": summary.report["k_anonymity"]["dropped"],
    }


register(
    JobKind(
        "cohort_import",
        "Import an uploaded cohort export",
        CohortImportForm,
        run_cohort_import,
        lambda config: "quick",
        "The files a researcher uploaded on the cohort import page, anonymized at the door; deleted when it ends.",
        summary=lambda config: f"{config.get('source', '')} · {config.get('name', '')}",
        cancelled_before_start=lambda config: uploads_delete(upload_ids=_upload_ids(config)),
    )
)
