"""Configs, results and audit details read as labelled tables with numbers in words, not Python dicts."""

import pytest

from healthagent.templatetags.readable_data import data_rows, readable_number
from modeling.jobs import job_queue
from modeling.models import Job

DEMO = {
    "task": "hypertension",
    "participants": 40,
    "days": 2,
    "steps": 2000,
    "checkpoint_every": 50,
    "learning_rate": 0.003,
    "step_delay_s": 0.05,
    "seed": 1,
}


def test_numbers_and_nested_data_as_labelled_rows():
    assert [readable_number(value) for value in (162364, 0.731245, 1234.5678, 3.0, True, None)] == [
        "162,364",
        "0.7312",
        "1,234.6",
        "3",
        "True",
        "",
    ]
    assert data_rows(
        {
            "parameters": 162364,
            "step_delay_s": 0.05,
            "metrics": {"val_auroc": 0.81234},
            "generative": False,
            "variants": [3, 4],
            "note": None,
        }
    ) == [
        ("Parameters", "162,364"),
        ("Step delay (s)", "0.05"),
        ("Metrics · Validation AUROC", "0.8123"),
        ("Generative", "no"),
        ("Variants", "3, 4"),
        ("Note", "—"),
    ]


@pytest.mark.django_db
def test_the_job_page_and_the_audit_log_show_tables_not_dicts(client, admin_user, monkeypatch):
    from modeling import jobs

    monkeypatch.setattr(jobs, "_send", lambda job_id, queue: None)
    job = job_queue(kind_name="demo_training", config=DEMO, user=admin_user)
    Job.objects.filter(pk=job.pk).update(
        state="succeeded", result={"parameters": 162364, "metrics": {"val_auroc": 0.8}}
    )
    client.force_login(admin_user)
    page = client.get(f"/modeling/jobs/{job.pk}/").content.decode()
    assert f"<h1>Job #{job.pk}: Demo training run</h1>" in page and "CPU queue" in page
    assert (
        '<th scope="row">Steps</th><td>2,000</td>' in page
        and '<th scope="row">Step delay (s)</th><td>0.05</td>' in page
    )
    assert (
        '<th scope="row">Parameters</th><td>162,364</td>' in page
        and '<th scope="row">Metrics · Validation AUROC</th><td>0.8</td>' in page
    )
    assert "{&#x27;" not in page and "{'" not in page
    audit = client.get("/system/audit/").content.decode()
    assert (
        '<th scope="row">Kind</th><td>demo_training</td>' in audit
        and '<th scope="row">Config · Steps</th><td>2,000</td>' in audit
    )
    assert "{&#x27;" not in audit
