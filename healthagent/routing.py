from django.urls import path

from modeling.consumers import JobListConsumer

websocket_urlpatterns = [
    path("ws/jobs/", JobListConsumer.as_asgi(), name="ws_jobs"),
]
