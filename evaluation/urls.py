from django.urls import path

from evaluation import (
    criteria_views,
    invitation_views,
    protocol_views,
    rater_views,
    triage_views,
    views,
    webhook_views,
)

app_name = "evaluation"
urlpatterns = [
    path("queue/", views.queue, name="queue"),
    path("queue/<int:study_id>/next/", views.study_next, name="study_next"),
    path("queue/<int:study_id>/onboarding/", rater_views.onboarding, name="onboarding"),
    path("items/<int:assignment_id>/", views.assignment_detail, name="assignment"),
    path("items/<int:assignment_id>/chart.json", views.assignment_chart, name="assignment_chart"),
    path("items/<int:assignment_id>/minutes.json", views.assignment_minutes, name="assignment_minutes"),
    path("items/<int:assignment_id>/draft/", views.assignment_draft, name="assignment_draft"),
    path("items/<int:assignment_id>/submit/", views.assignment_submit, name="assignment_submit"),
    path("items/<int:assignment_id>/skip/", views.assignment_skip_view, name="assignment_skip"),
    path("items/<int:assignment_id>/feedback/", rater_views.training_feedback, name="training_feedback"),
    path("triage/", triage_views.triage, name="triage"),
    path("incidents/<int:incident_id>/", triage_views.incident_detail, name="incident"),
    path("incidents/<int:incident_id>/chart.json", triage_views.incident_chart, name="incident_chart"),
    path("incidents/<int:incident_id>/minutes.json", triage_views.incident_minutes, name="incident_minutes"),
    path("studies/", views.study_list, name="study_list"),
    path("studies/new/", views.study_new, name="study_new"),
    path("studies/<int:study_id>/", views.study_detail, name="study_detail"),
    path("studies/<int:study_id>/status/", views.study_status, name="study_status"),
    path("studies/<int:study_id>/items/<int:item_id>/drop/", views.study_item_drop_view, name="study_item_drop"),
    path(
        "studies/<int:study_id>/items/<int:item_id>/regenerate/",
        views.study_item_regenerate_view,
        name="study_item_regenerate",
    ),
    path(
        "studies/<int:study_id>/items/<int:item_id>/reference/",
        rater_views.study_item_reference,
        name="study_item_reference",
    ),
    path(
        "studies/<int:study_id>/items/<int:item_id>/criteria/",
        criteria_views.study_item_criterion_add,
        name="study_item_criterion_add",
    ),
    path(
        "studies/<int:study_id>/items/<int:item_id>/criteria/<int:criterion_id>/delete/",
        criteria_views.study_item_criterion_delete,
        name="study_item_criterion_delete",
    ),
    path("studies/<int:study_id>/criteria/import/", criteria_views.study_criteria_import, name="study_criteria_import"),
    path(
        "studies/<int:study_id>/raters/<int:user_id>/reinstate/",
        rater_views.study_rater_reinstate,
        name="study_rater_reinstate",
    ),
    path("studies/<int:study_id>/protocol/", protocol_views.study_protocol, name="study_protocol"),
    path(
        "studies/<int:study_id>/protocol.json", protocol_views.study_protocol_manifest, name="study_protocol_manifest"
    ),
    path("studies/<int:study_id>/adjudicators/", triage_views.study_adjudicators, name="study_adjudicators"),
    path("studies/<int:study_id>/incidents.<str:fmt>", triage_views.study_incident_log, name="study_incident_log"),
    path("studies/<int:study_id>/dashboard/", views.study_dashboard_view, name="study_dashboard"),
    path("studies/<int:study_id>/export.<str:fmt>", views.study_export, name="study_export"),
    path("exports/data-dictionary.json", views.data_dictionary, name="data_dictionary"),
    path("invitations/", invitation_views.invitations, name="invitations"),
    path("webhooks/", webhook_views.webhooks, name="webhooks"),
    path("webhooks/<int:endpoint_id>/test/", webhook_views.webhook_test, name="webhook_test"),
    path("webhooks/<int:endpoint_id>/delete/", webhook_views.webhook_delete, name="webhook_delete"),
    path(
        "webhooks/deliveries/<int:delivery_id>/retry/",
        webhook_views.webhook_delivery_retry_view,
        name="webhook_delivery_retry",
    ),
]
