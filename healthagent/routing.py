from django.urls import path

from evaluation.consumers import StudyDashboardConsumer
from modeling.consumers import JobConsumer, JobListConsumer

websocket_urlpatterns = [
    path("ws/jobs/", JobListConsumer.as_asgi(), name="ws_jobs"),
    path("ws/jobs/<int:job_id>/", JobConsumer.as_asgi(), name="ws_job"),
    path("ws/studies/<int:study_id>/", StudyDashboardConsumer.as_asgi(), name="ws_study"),
]
