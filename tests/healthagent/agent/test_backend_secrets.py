"""Nothing leaks, even to insiders (issue 23): an agent variant's or a judge's language-model config can send no
secret of the site to a server, reach only allowed hosts, store no key, and keep no server response body."""

import pytest
from django.core.exceptions import ValidationError

from healthagent.agent.backends.base import BackendConfigError, BackendError
from healthagent.agent.backends.openai_http import OpenAIHTTPBackend
from healthagent.models import AgentVariant, llm_server_problem
from tests.healthagent.agent.test_backends import FakeChatServer

pytestmark = pytest.mark.django_db


@pytest.fixture
def chat_server():
    server = FakeChatServer()
    yield server
    server.close()


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ({"api_key_env": "SECRET_KEY"}, "one of the site's own secrets"),
        ({"api_key_env": "ANONYMIZATION_KEY"}, "one of the site's own secrets"),
        ({"api_key_env": "DATABASE_URL"}, "one of the site's own secrets"),
        ({"api_key_env": "HOME"}, "starting with HEALTHAGENT_LLM_"),
        ({"api_key_env": "healthagent_llm_lower"}, "starting with HEALTHAGENT_LLM_"),
        ({"api_key": "sk-plain"}, "must not be written into a config"),
        ({"language_model": {"backend": "openai_http", "config": {"api_key_env": "SECRET_KEY"}}}, "site's own"),
    ],
)
def test_a_config_that_would_send_a_secret_is_refused_everywhere(config, problem, chat_server, monkeypatch):
    monkeypatch.setenv("SECRET_KEY", "the-site-secret")
    assert problem in llm_server_problem(config)
    variant = AgentVariant(name="leaky", backend="openai_http", config={"base_url": chat_server.url, **config})
    with pytest.raises(ValidationError, match="config"):
        variant.full_clean()  # the Django admin's form runs this
    if "language_model" not in config:
        with pytest.raises(BackendConfigError, match=problem):
            OpenAIHTTPBackend({"base_url": chat_server.url, "model": "m", **config})
    assert chat_server.requests == []


def test_a_key_from_an_allowed_variable_is_sent(chat_server, monkeypatch):
    monkeypatch.setenv("HEALTHAGENT_LLM_HOSPITAL", "sk-hospital")
    backend = OpenAIHTTPBackend({"base_url": chat_server.url, "model": "m", "api_key_env": "HEALTHAGENT_LLM_HOSPITAL"})
    backend.complete([{"role": "user", "content": "hi"}], timeout_s=10)
    assert chat_server.requests[0]["auth"] == "Bearer sk-hospital"


def test_only_allowed_hosts_are_called(chat_server, settings):
    settings.LLM_ALLOWED_HOSTS = ["gpu.hospital.example"]
    with pytest.raises(BackendConfigError, match="not among the allowed hosts"):
        OpenAIHTTPBackend({"base_url": chat_server.url, "model": "m"})
    settings.LLM_ALLOWED_HOSTS = ["gpu.hospital.example", "127.0.0.1"]
    OpenAIHTTPBackend({"base_url": chat_server.url, "model": "m"}).complete([], timeout_s=10)
    assert len(chat_server.requests) == 1


def test_a_refusal_keeps_the_status_not_the_body(chat_server):
    chat_server.script = [("status", 401)]
    backend = OpenAIHTTPBackend({"base_url": chat_server.url, "model": "m", "retries": 0})
    with pytest.raises(BackendError) as error:
        backend.complete([], timeout_s=10)
    assert "HTTP 401" in str(error.value) and "scripted" not in str(error.value)  # the body said {"error": "scripted"}


def test_the_judge_form_refuses_a_site_secret(grounded_study):
    from evaluation.judge_jobs import JudgeForm

    form = JudgeForm(
        data={
            "study": grounded_study.pk,
            "backend": "openai_http",
            "base_url": "http://127.0.0.1:9/v1",
            "model": "m",
            "api_key_env": "SECRET_KEY",
            "max_new_tokens": 100,
            "timeout_s": 10,
        }
    )
    assert not form.is_valid() and "one of the site's own secrets" in form.non_field_errors()[0]


def test_changes_of_variants_and_checkpoints_in_the_admin_are_audited(admin_user, client):
    from django.contrib.auth.models import User

    from healthagent.models import AuditEntry
    from modeling.models import Checkpoint

    User.objects.filter(pk=admin_user.pk).update(is_superuser=True, is_staff=True)
    client.force_login(admin_user)
    variant = AgentVariant.objects.get(name="grounded agent")
    response = client.post(
        f"/django-admin/healthagent/agentvariant/{variant.pk}/change/",
        {"name": "grounded agent", "backend": "grounded", "config": '{"days": 7}', "description": "changed"},
    )
    assert response.status_code == 302
    entry = AuditEntry.objects.get(action="variant.changed")
    assert entry.details["config"] == {"days": 7} and entry.actor == admin_user
    # A config that would send the site's secret is refused by the form, and nothing is audited or saved.
    response = client.post(
        f"/django-admin/healthagent/agentvariant/{variant.pk}/change/",
        {"name": "grounded agent", "backend": "openai_http", "config": '{"api_key_env": "SECRET_KEY"}'},
    )
    assert response.status_code == 200 and "one of the site" in response.content.decode()
    assert AuditEntry.objects.filter(action="variant.changed").count() == 1
    checkpoint = Checkpoint.objects.create(family="lsm", size="tiny", path="/tmp/a")
    client.post(f"/django-admin/modeling/checkpoint/{checkpoint.pk}/delete/", {"post": "yes"})
    assert AuditEntry.objects.filter(action="checkpoint.deleted", object_id=str(checkpoint.pk)).exists()


def test_backups_never_carry_a_key_written_into_a_config(grounded_study, tmp_path):
    import json

    from django.core.management import call_command

    # A key written in before configs refused them (the check runs in full_clean, which an update bypasses).
    AgentVariant.objects.filter(name="grounded agent").update(
        config={"api_key": "sk-live-123", "language_model": {"config": {"token": "tok-456"}}}
    )
    call_command("export_studies", "--output", str(tmp_path))
    text = (tmp_path / "studies.json").read_text()
    assert "sk-live-123" not in text and "tok-456" not in text
    exported = next(v for v in json.loads(text)["variants"] if v["name"] == "grounded agent")
    assert exported["config"]["api_key"] == "[redacted]"
