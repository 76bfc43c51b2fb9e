"""The webhooks page: researchers register endpoints for the studies they may read, admins for any study or the
whole site; each endpoint's secret, its recent deliveries with their status codes, a test event and a retry. The
work is in healthagent.webhooks."""

from django.contrib import messages
from django.contrib.auth.models import User
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from evaluation.forms import WebhookEndpointForm
from evaluation.models import Study
from evaluation.selectors import studies_visible_to
from healthagent.models import WebhookDelivery, WebhookEndpoint
from healthagent.roles import Role, role_required, user_has_role
from healthagent.webhooks import (
    WebhookError,
    webhook_deliveries_recent,
    webhook_delivery_retry,
    webhook_endpoint_create,
    webhook_endpoint_delete,
    webhook_endpoints_managed_by,
    webhook_send_test,
)

WEBHOOK_ROLES = (Role.RESEARCHER, Role.ADMIN)


def _access_endpoint(user: User, endpoint_id: int) -> WebhookEndpoint:
    endpoint = webhook_endpoints_managed_by(user=user).filter(pk=endpoint_id).first()
    if endpoint is None:
        raise Http404("no such webhook endpoint of yours")
    return endpoint


def _form(user: User, data=None) -> WebhookEndpointForm:
    studies = list(studies_visible_to(user=user).order_by("name"))
    return WebhookEndpointForm(data, studies=studies, site_wide=user_has_role(user, Role.ADMIN))


@role_required(*WEBHOOK_ROLES)
def webhooks(request):
    """The endpoints the user manages with their recent deliveries, and the form for a new one (kept on an error)."""
    form = _form(request.user, request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            endpoint = webhook_endpoint_create(
                owner=request.user,
                url=form.cleaned_data["url"],
                study_id=form.study_id(),
                event_types=form.cleaned_data["event_types"],
                description=form.cleaned_data["description"],
            )
        except WebhookError as error:
            form.add_error(None, str(error))
        else:
            messages.success(request, f"Webhook #{endpoint.pk} registered: give its secret to the receiver.")
            return redirect("evaluation:webhooks")
    endpoints = list(webhook_endpoints_managed_by(user=request.user))
    study_names = dict(
        Study.objects.filter(pk__in={e.study_id for e in endpoints if e.study_id}).values_list("pk", "name")
    )
    rows = [
        {
            "endpoint": endpoint,
            "study_name": study_names.get(endpoint.study_id, "") if endpoint.study_id else "",
            "deliveries": webhook_deliveries_recent(endpoint=endpoint),
        }
        for endpoint in endpoints
    ]
    return render(request, "evaluation/webhooks.html", {"form": form, "rows": rows}, status=400 if form.errors else 200)


@role_required(*WEBHOOK_ROLES)
@require_POST
def webhook_test(request, endpoint_id: int):
    endpoint = _access_endpoint(request.user, endpoint_id)
    delivery = webhook_send_test(endpoint=endpoint)
    messages.success(request, f"Test event {delivery.message_id} queued for webhook #{endpoint.pk}.")
    return redirect("evaluation:webhooks")


@role_required(*WEBHOOK_ROLES)
@require_POST
def webhook_delete(request, endpoint_id: int):
    endpoint = _access_endpoint(request.user, endpoint_id)
    webhook_endpoint_delete(endpoint=endpoint, user=request.user)
    messages.success(request, f"Webhook #{endpoint_id} removed.")
    return redirect("evaluation:webhooks")


@role_required(*WEBHOOK_ROLES)
@require_POST
def webhook_delivery_retry_view(request, delivery_id: int):
    delivery = WebhookDelivery.objects.filter(
        pk=delivery_id, endpoint__in=webhook_endpoints_managed_by(user=request.user)
    ).first()
    if delivery is None:
        raise Http404("no such delivery of your webhooks")
    try:
        webhook_delivery_retry(delivery=delivery)
    except WebhookError as error:
        messages.error(request, f"Not sent again: {error}.")
    else:
        messages.success(request, f"Event {delivery.message_id} queued again.")
    return redirect("evaluation:webhooks")
