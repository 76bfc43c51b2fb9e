from django.urls import path

from modeling import import_views, views

app_name = "modeling"
urlpatterns = [
    path("jobs/", views.job_list, name="job_list"),
    path("jobs/new/<str:kind>/", views.job_new, name="job_new"),
    path("jobs/<int:job_id>/", views.job_detail, name="job_detail"),
    path("jobs/<int:job_id>/status.json", views.job_status, name="job_status"),
    path("jobs/<int:job_id>/cancel/", views.job_cancel_view, name="job_cancel"),
    path("jobs/<int:job_id>/retry/", views.job_retry_view, name="job_retry"),
    path("checkpoints/", views.checkpoint_list, name="checkpoint_list"),
    path("imports/", import_views.cohort_import_page, name="cohort_import"),
    path("imports/<int:job_id>/status.json", import_views.cohort_import_status, name="cohort_import_status"),
    path("twin/", views.twin_page, name="twin"),
    path("twin/simulate/", views.twin_simulate, name="twin_simulate"),
    path("twin/jobs/<int:job_id>/status.json", views.twin_status, name="twin_status"),
]
