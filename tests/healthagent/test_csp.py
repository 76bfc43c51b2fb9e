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
