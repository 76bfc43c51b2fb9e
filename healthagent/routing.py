from django.urls import path

from evaluation.consumers import StudyDashboardConsumer
from modeling.consumers import JobConsumer, JobListConsumer, SimulationJobConsumer

websocket_urlpatterns = [
    path("ws/jobs/", JobListConsumer.as_asgi(), name="ws_jobs"),
    path("ws/jobs/<int:job_id>/", JobConsumer.as_asgi(), name="ws_job"),
    path("ws/twin/jobs/<int:job_id>/", SimulationJobConsumer.as_asgi(), name="ws_twin_job"),
    path("ws/studies/<int:study_id>/", StudyDashboardConsumer.as_asgi(), name="ws_study"),
]
