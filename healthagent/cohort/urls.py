from django.urls import path

from healthagent.cohort import upload_views, views

app_name = "cohort"
urlpatterns = [
    path("", views.cohort_index, name="cohort_list"),
    path("<int:cohort_id>/", views.cohort_detail, name="cohort_detail"),
    path("days/", views.find_days, name="find_days"),
    path("uploads/", upload_views.uploads_create, name="uploads_create"),
    path("uploads/<str:upload_id>/", upload_views.upload_detail, name="upload_detail"),
    path("participants/<int:participant_id>/", views.participant_detail, name="participant_detail"),
    path("participants/<int:participant_id>/minutes.json", views.participant_minutes, name="participant_minutes"),
]
