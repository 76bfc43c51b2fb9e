"""An expected refusal (403, 404) is one line in the log; a server error keeps its traceback."""

import logging

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


def request_log_lines(caplog) -> list[str]:
    formatter = logging.Formatter("%(levelname)s %(name)s: %(message)s")
    return [formatter.format(record) for record in caplog.records if record.name == "django.request"]


def test_a_page_outside_the_role_logs_one_line_without_a_traceback(client, clinician, caplog):
    client.force_login(clinician)
    with caplog.at_level(logging.WARNING, logger="django.request"):
        assert client.get(reverse("system_status")).status_code == 403
        assert client.get("/modeling/jobs/999999/").status_code == 403
    assert request_log_lines(caplog) == [
        "WARNING django.request: Forbidden (Permission denied): /system/",
        "WARNING django.request: Forbidden (Permission denied): /modeling/jobs/999999/",
    ]


def test_a_missing_page_logs_one_line(client, admin_user, caplog):
    client.force_login(admin_user)
    with caplog.at_level(logging.WARNING, logger="django.request"):
        assert client.get("/modeling/jobs/999999/").status_code == 404
    assert request_log_lines(caplog) == ["WARNING django.request: Not Found: /modeling/jobs/999999/"]


def test_a_server_error_keeps_its_traceback(client, admin_user, caplog, monkeypatch):
    from modeling import views

    def broken(*args, **kwargs):
        raise RuntimeError("the job registry is broken")

    monkeypatch.setattr(views, "job_kind", broken)
    client.raise_request_exception = False
    client.force_login(admin_user)
    with caplog.at_level(logging.WARNING, logger="django.request"):
        assert client.get("/modeling/jobs/").status_code == 500
    [line] = request_log_lines(caplog)
    assert (
        line.startswith("ERROR django.request: Internal Server Error: /modeling/jobs/\nTraceback")
        and "the job registry is broken" in line
    )
