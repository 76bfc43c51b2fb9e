"""The Content-Security-Policy header (healthagent.middleware.ContentSecurityPolicyMiddleware): the policy of the
settings, as django-csp's middleware would send it, on pages and errors alike."""

import pytest
from csp.middleware import CSPMiddleware
from django.http import HttpResponse
from django.test import RequestFactory

from healthagent.middleware import ContentSecurityPolicyMiddleware

pytestmark = pytest.mark.django_db


def test_every_response_carries_the_policy_django_csp_would_send(client):
    request = RequestFactory().get("/")
    theirs = CSPMiddleware(lambda request: HttpResponse("ok"))(request)["Content-Security-Policy"]
    assert "default-src 'self'" in theirs and "object-src 'none'" in theirs
    for path in ("/accounts/login/", "/no-such-page/"):
        assert client.get(path)["Content-Security-Policy"] == theirs


def test_a_response_that_set_its_own_policy_keeps_it():
    def view(request):
        response = HttpResponse("ok")
        response["Content-Security-Policy"] = "default-src 'none'"
        return response

    response = ContentSecurityPolicyMiddleware(view)(RequestFactory().get("/"))
    assert response["Content-Security-Policy"] == "default-src 'none'"


def test_a_changed_policy_is_sent_at_once_and_none_is_sent_without_one(client, settings):
    settings.CONTENT_SECURITY_POLICY = {"DIRECTIVES": {"default-src": ["'none'"]}}
    assert client.get("/accounts/login/")["Content-Security-Policy"] == "default-src 'none'"
    settings.CONTENT_SECURITY_POLICY = None
    assert "Content-Security-Policy" not in client.get("/accounts/login/")


def test_a_report_only_policy_is_refused_rather_than_ignored(settings):
    from django.core.exceptions import ImproperlyConfigured

    from healthagent.middleware import content_security_policy

    settings.CONTENT_SECURITY_POLICY_REPORT_ONLY = {"DIRECTIVES": {"default-src": ["'self'"]}}
    with pytest.raises(ImproperlyConfigured, match="report-only"):
        content_security_policy()
