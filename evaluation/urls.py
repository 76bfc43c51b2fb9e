from django.urls import path

from evaluation import views

app_name = "evaluation"
urlpatterns = [
    path("queue/", views.queue, name="queue"),
    path("studies/", views.study_list, name="study_list"),
]
