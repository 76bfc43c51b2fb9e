"""Cohort exports uploaded in the browser: the chunked, resumable protocol; the import job with the same
anonymization as the command line; a failed import keeps nothing; the uploaded bytes are gone when the job ends; and
the page in Chromium with a real worker."""

from pathlib import Path

import pytest
from django.urls import reverse

from healthagent.cohort.uploads import CHUNK_BYTES, upload_path
from healthagent.models import Cohort, CohortUpload
from modeling.models import Job
from modeling.tasks import run_job
from tests.cohort_files import PLANTED, write_csv_long
from tests.factories import DEFAULT_PASSWORD, UserFactory
from tests.test_browser_login import log_in


def send(client, path: Path, *, chunk: int = CHUNK_BYTES) -> str:
    """Upload ``path`` as the page's script does; the upload's id."""
    data = path.read_bytes()
    made = client.post(
        reverse("cohort:uploads_create"), {"size": len(data), "suffix": path.suffix}, content_type="application/json"
    )
    assert made.status_code == 201, made.content
    upload_id, offset = made.json()["id"], 0
    while offset < len(data):
        answer = client.put(
            reverse("cohort:upload_detail", args=[upload_id]) + f"?offset={offset}",
            data[offset : offset + chunk],
            content_type="application/octet-stream",
        )
        assert answer.status_code == 200, answer.content
        offset = answer.json()["offset"]
    return upload_id


@pytest.fixture
def researcher_client(client, db):
    user = UserFactory(role="admin")  # admins may import with k below the minimum, which these small files need
    client.force_login(user)
    client.user = user
    return client


def test_a_lost_answer_is_resumed_from_the_servers_offset_and_nothing_is_written_twice(researcher_client, tmp_path):
    client = researcher_client
    data = bytes(range(256)) * 10
    made = client.post(
        reverse("cohort:uploads_create"), {"size": len(data), "suffix": ".csv"}, content_type="application/json"
    )
    url = reverse("cohort:upload_detail", args=[made.json()["id"]])
    assert made.json()["offset"] == 0 and made.json()["chunk_bytes"] == CHUNK_BYTES
    first = client.put(url + "?offset=0", data[:1000], content_type="application/octet-stream")
    assert first.json()["offset"] == 1000
    again = client.put(url + "?offset=0", data[:1000], content_type="application/octet-stream")  # its answer was lost
    assert again.status_code == 409 and again.json()["offset"] == 1000
    assert client.get(url).json()["offset"] == 1000  # a reloaded page asks
    rest = client.put(url + "?offset=1000", data[1000:], content_type="application/octet-stream")
    assert rest.json()["offset"] == len(data)
    upload = CohortUpload.objects.get()
    assert upload.complete and upload_path(upload).read_bytes() == data
    past = client.put(url + f"?offset={len(data)}", b"x", content_type="application/octet-stream")
    assert past.status_code == 400 and "ends by the file's size" in past.json()["error"]


def test_uploads_are_checked_and_each_is_its_owners_alone(researcher_client, client, settings):
    refused = researcher_client.post(
        reverse("cohort:uploads_create"), {"size": 10, "suffix": ".exe"}, content_type="application/json"
    )
    assert refused.status_code == 400 and "a cohort export is .csv" in refused.json()["error"]
    settings.COHORT_IMPORT_MAX_BYTES = 100
    too_big = researcher_client.post(
        reverse("cohort:uploads_create"), {"size": 101, "suffix": ".csv"}, content_type="application/json"
    )
    assert too_big.status_code == 400 and "COHORT_IMPORT_MAX_BYTES" in too_big.json()["error"]
    made = researcher_client.post(
        reverse("cohort:uploads_create"), {"size": 10, "suffix": ".csv"}, content_type="application/json"
    )
    url = reverse("cohort:upload_detail", args=[made.json()["id"]])
    researcher_client.force_login(UserFactory(role="researcher"))
    assert researcher_client.get(url).status_code == 404
    assert researcher_client.put(url + "?offset=0", b"x", content_type="application/octet-stream").status_code == 404
    researcher_client.force_login(UserFactory(role="clinician"))
    assert researcher_client.get(url).status_code == 403


def test_the_import_job_anonymizes_and_deletes_the_uploads(researcher_client, tmp_path):
    client = researcher_client
    files = write_csv_long(tmp_path / "export")
    ids = {name: send(client, path, chunk=4096) for name, path in files.items()}
    paths = [upload_path(upload) for upload in CohortUpload.objects.all()]
    queued = client.post(
        reverse("modeling:cohort_import"),
        {"source": "csv", "name": "Uploaded", "k": 1, "allow_k_below_minimum": "on", **ids},
    )
    assert queued.status_code == 201, queued.content
    job = Job.objects.get(pk=queued.json()["job"])
    assert job.queue == "quick" and job.queued_by == client.user
    late = client.put(
        reverse("cohort:upload_detail", args=[ids["signals"]]) + "?offset=0",
        b"x",
        content_type="application/octet-stream",
    )
    assert late.status_code in (400, 409)  # the file can no longer change
    assert run_job.apply(kwargs={"job_id": job.pk}).get() == "succeeded"
    status = client.get(queued.json()["status"]).json()
    cohort = Cohort.objects.get(name="Uploaded")
    assert status["state"] == "succeeded" and status["imported"] == 2 == cohort.participants.count()
    assert status["cohort_url"] == reverse("cohort:cohort_detail", args=[cohort.pk])
    assert not CohortUpload.objects.exists() and not any(path.exists() for path in paths)
    pseudonyms = " ".join(cohort.participants.values_list("pseudonym", flat=True))
    assert PLANTED["participant_id"] not in pseudonyms


def test_a_failed_import_keeps_nothing_and_still_deletes_the_upload(researcher_client, tmp_path):
    client = researcher_client
    bad = tmp_path / "signals.csv"
    bad.write_text("participant_id,timestamp,channel,value\nP1,not-a-time,heart_rate,60\n")
    upload_id = send(client, bad)
    path = upload_path(CohortUpload.objects.get())
    queued = client.post(reverse("modeling:cohort_import"), {"source": "csv", "name": "Broken", "signals": upload_id})
    job = Job.objects.get(pk=queued.json()["job"])
    assert run_job.apply(kwargs={"job_id": job.pk}).get() == "failed"
    status = client.get(queued.json()["status"]).json()
    assert status["state"] == "failed" and "nothing was kept" in status["error"]
    assert not Cohort.objects.filter(name="Broken").exists()
    assert not CohortUpload.objects.exists() and not path.exists()
    other = UserFactory(role="researcher")
    client.force_login(other)
    assert client.get(queued.json()["status"]).status_code == 404  # another researcher's import


def test_uploads_go_with_a_cancelled_import_an_abandoned_upload_and_a_deleted_owner(
    researcher_client, tmp_path, settings, django_capture_on_commit_callbacks
):
    from datetime import timedelta

    from django.utils import timezone

    from healthagent.cohort.uploads import upload_create
    from modeling.jobs import job_cancel

    client = researcher_client
    files = write_csv_long(tmp_path / "export")
    ids = {name: send(client, path, chunk=4096) for name, path in files.items()}
    paths = [upload_path(upload) for upload in CohortUpload.objects.all()]
    queued = client.post(
        reverse("modeling:cohort_import"),
        {"source": "csv", "name": "Never run", "k": 1, "allow_k_below_minimum": "on", **ids},
    )
    with django_capture_on_commit_callbacks(execute=True):
        job_cancel(job=Job.objects.get(pk=queued.json()["job"]), user=client.user)
    assert not CohortUpload.objects.exists() and not any(path.exists() for path in paths)  # its run never comes

    settings.UPLOAD_KEEP_HOURS = 24
    given_up = CohortUpload.objects.get(pk=send(client, files["signals"]))
    recent = CohortUpload.objects.get(pk=send(client, files["signals"]))
    CohortUpload.objects.filter(pk=given_up.pk).update(created_at=timezone.now() - timedelta(hours=25))
    send(client, files["signals"])  # the next upload sweeps what was never imported in a day
    assert not CohortUpload.objects.filter(pk=given_up.pk).exists() and not upload_path(given_up).exists()
    assert upload_path(recent).exists()

    leaving = UserFactory(role="researcher")
    theirs = upload_create(owner=leaving, size_bytes=10, suffix=".csv")
    with django_capture_on_commit_callbacks(execute=True):
        leaving.delete()
    assert not CohortUpload.objects.filter(pk=theirs.pk).exists() and not upload_path(theirs).exists()


def test_a_researcher_adds_to_no_one_elses_cohort_and_keeps_the_minimum_k(client, tiny_cohort, tmp_path):
    researcher = UserFactory(role="researcher")
    client.force_login(researcher)
    upload_id = send(client, write_csv_long(tmp_path / "export")["signals"])
    taken = client.post(
        reverse("modeling:cohort_import"), {"source": "csv", "name": tiny_cohort.name, "signals": upload_id}
    )
    assert taken.status_code == 400 and "exists and is not yours" in taken.json()["error"]
    low_k = client.post(
        reverse("modeling:cohort_import"),
        {"source": "csv", "name": "Mine", "signals": upload_id, "k": 1, "allow_k_below_minimum": "on"},
    )
    assert low_k.status_code == 400 and "only admins" in low_k.json()["error"] and not Job.objects.exists()


def test_an_incomplete_upload_is_not_imported(researcher_client):
    made = researcher_client.post(
        reverse("cohort:uploads_create"), {"size": 10, "suffix": ".csv"}, content_type="application/json"
    )
    refused = researcher_client.post(
        reverse("modeling:cohort_import"), {"source": "csv", "name": "Early", "signals": made.json()["id"]}
    )
    assert refused.status_code == 400 and "not all there yet (0 of 10 bytes)" in refused.json()["error"]
    assert not Job.objects.exists()


@pytest.mark.browser
@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_a_researcher_uploads_an_export_in_the_browser_and_watches_it_import(worker, page, live_server, tmp_path):
    admin = UserFactory(role="admin")  # these two-person files need k below the minimum, an admin's override
    files = write_csv_long(tmp_path / "export")
    log_in(page, admin.username, DEFAULT_PASSWORD)
    page.wait_for_url(f"{live_server.url}/modeling/jobs/")
    page.goto("/cohorts/")
    page.get_by_role("link", name="Import a cohort").click()
    page.get_by_label("Cohort name").fill("From the browser")
    page.get_by_label("k of the k-anonymity").fill("1")
    page.get_by_label("Allow k below minimum").check()
    page.locator("#file-signals").set_input_files(str(files["signals"]))
    page.locator("#file-demographics").set_input_files(str(files["demographics"]))
    page.get_by_role("button", name="Upload and import").click()
    page.get_by_role("link", name="Open the cohort").wait_for(timeout=60_000)
    assert page.locator("[data-progress=signals]").evaluate("bar => bar.value") == 1
    assert "2 participants imported" in page.locator("[data-job-message]").inner_text()
    page.get_by_role("link", name="Open the cohort").click()
    page.get_by_role("heading", name="From the browser").wait_for()
    assert not CohortUpload.objects.exists()

    bad = tmp_path / "bad.csv"  # a file that is not an export: a clear failure, nothing kept
    bad.write_text("participant_id,timestamp,channel,value\nP1,yesterday,heart_rate,60\n")
    page.goto("/modeling/imports/")
    page.get_by_label("Cohort name").fill("Never")
    page.locator("#file-signals").set_input_files(str(bad))
    page.get_by_role("button", name="Upload and import").click()
    alert = page.locator("[data-import-error]")
    alert.wait_for(timeout=60_000)
    assert "The import failed" in alert.inner_text() and "nothing was imported" in alert.inner_text()
    assert not Cohort.objects.filter(name="Never").exists() and not CohortUpload.objects.exists()
