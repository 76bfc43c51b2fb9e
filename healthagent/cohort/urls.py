from django.urls import path

from healthagent.cohort import views

app_name = "cohort"
urlpatterns = [
    path("", views.cohort_index, name="cohort_list"),
    path("<int:cohort_id>/", views.cohort_detail, name="cohort_detail"),
    path("days/", views.find_days, name="find_days"),
    path("participants/<int:participant_id>/", views.participant_detail, name="participant_detail"),
    path("participants/<int:participant_id>/minutes.json", views.participant_minutes, name="participant_minutes"),
]
