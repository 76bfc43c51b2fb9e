from django.urls import path

from modeling import views

app_name = "modeling"
urlpatterns = [
    path("jobs/", views.job_list, name="job_list"),
]
