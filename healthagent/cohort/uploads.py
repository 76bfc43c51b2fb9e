"""Cohort exports uploaded from the browser, resumably, in chunks: a small protocol of our own (tus would be the
standard, but no maintained Django server of it installs beside our pins, and ours needs three verbs).

1. ``POST /cohorts/uploads/`` with ``{"size": bytes, "suffix": ".csv"}`` makes an upload; the answer names its id,
   the chunk size and the offset (0).
2. ``PUT /cohorts/uploads/<id>/?offset=N`` with at most ``chunk_bytes`` raw bytes appends them when ``N`` is what
   the server holds; otherwise 409 with the offset it does hold, from which the client carries on. ``GET`` of the
   same address tells the offset too (a browser reloaded, a connection lost).
3. When every byte is there, the import form names the uploads and queues the import job, which reads them and
   deletes them when it ends, whatever the outcome (or when it is cancelled before it starts). An upload never
   imported is deleted after ``UPLOAD_KEEP_HOURS``; one whose owner's account is deleted goes with it.

Nothing of the file's name is kept: the bytes are in ``UPLOAD_ROOT/<id><suffix>``.
"""

import os
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from healthagent.models import CohortUpload

SUFFIXES = (".csv", ".parquet", ".zip", ".xml", ".json")
CHUNK_BYTES = 512 * 1024  # under DATA_UPLOAD_MAX_MEMORY_SIZE (1 MiB), the largest body the site reads


class UploadError(Exception):
    """An upload refused; the message says why."""


class OffsetMismatch(UploadError):
    def __init__(self, offset: int):
        super().__init__(f"the server holds {offset} bytes: carry on from there")
        self.offset = offset


def upload_path(upload: CohortUpload) -> Path:
    return upload.path


def upload_create(*, owner: User, size_bytes: int, suffix: str) -> CohortUpload:
    suffix = (suffix or "").lower()
    if suffix not in SUFFIXES:
        raise UploadError(f"a cohort export is {', '.join(SUFFIXES)}; not {suffix or 'a file without a type'}")
    if not 0 < size_bytes <= settings.COHORT_IMPORT_MAX_BYTES:
        raise UploadError(
            f"{size_bytes:,} bytes: a file must have 1 to {settings.COHORT_IMPORT_MAX_BYTES:,} bytes "
            "(COHORT_IMPORT_MAX_BYTES)"
        )
    uploads_abandoned_delete()
    upload = CohortUpload.objects.create(owner=owner, size_bytes=size_bytes, suffix=suffix)
    path = upload_path(upload)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    return upload


def upload_append(*, upload_id: str, owner: User, offset: int, data: bytes) -> CohortUpload:
    """Append ``data`` at ``offset`` (locks the upload row: two copies of one chunk are written once)."""
    with transaction.atomic():
        upload = access_upload(upload_id=upload_id, owner=owner, for_update=True)
        if upload.job_id is not None:
            raise UploadError("this file is already being imported")
        if offset != upload.received_bytes:
            raise OffsetMismatch(upload.received_bytes)
        if len(data) > CHUNK_BYTES or offset + len(data) > upload.size_bytes:
            raise UploadError(f"a chunk is at most {CHUNK_BYTES} bytes and ends by the file's size")
        path = upload_path(upload)
        with path.open("r+b") as file:
            file.truncate(offset)  # what a failed earlier write may have left past the offset
            file.seek(offset)
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        upload.received_bytes = offset + len(data)
        upload.save(update_fields=["received_bytes"])
    return upload


def access_upload(*, upload_id: str, owner: User, for_update: bool = False) -> CohortUpload:
    uploads = CohortUpload.objects.select_for_update() if for_update else CohortUpload.objects
    try:
        upload = uploads.filter(pk=upload_id, owner=owner).first()
    except Exception:  # not a UUID
        upload = None
    if upload is None:
        raise UploadError("no such upload of yours")
    return upload


def uploads_delete(*, upload_ids: list[str]) -> None:
    """The bytes and the rows of these uploads, gone (an import job's last act, whatever its outcome)."""
    for upload in CohortUpload.objects.filter(pk__in=upload_ids):
        upload_path(upload).unlink(missing_ok=True)
        upload.delete()


def uploads_abandoned_delete() -> int:
    """Uploads never handed to an import within ``UPLOAD_KEEP_HOURS`` of being started (a closed tab, a file given up
    on), deleted: run as each new upload starts. Rows another request holds (an import being queued, a chunk being
    written) are skipped, and the ones taken are checked again under their lock. Returns how many."""
    cutoff = timezone.now() - timedelta(hours=settings.UPLOAD_KEEP_HOURS)
    with transaction.atomic():
        abandoned = list(
            CohortUpload.objects.select_for_update(skip_locked=True).filter(job_id__isnull=True, created_at__lt=cutoff)
        )
        paths = [upload.path for upload in abandoned]
        for upload in abandoned:
            upload.delete()
    for path in paths:  # the rows are gone: their bytes too (post_delete would, after the outermost commit)
        path.unlink(missing_ok=True)
    return len(abandoned)
